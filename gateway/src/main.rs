//! `goniec`: the gateway daemon and its tools ([`cli`]), and `goniec demo` ([`demo`]).

use std::process::ExitCode;

mod cli;
// `goniec demo` and the simulator commands; a production build can leave them
// out (`--no-default-features`).
#[cfg(feature = "sims")]
mod demo;
mod process;

// glibc malloc was ~12% of the gateway's CPU under load (many small, short-lived
// allocations across threads); mimalloc handles that pattern far better.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}
