//! A random source for the crate's randomized tests (SplitMix64), no dependency.
//!
//! The fuzz-style tests (framer + decoder, receipt text, text splitting) start from
//! [`TestRng::seeded`]: a fixed seed by default, so a plain `cargo test` is
//! repeatable, or `GONIEC_TEST_SEED=random` (what `.ci/run` sets) for a new seed
//! each run, so CI keeps exploring new inputs. The seed is printed and a failure
//! reproduces with `GONIEC_TEST_SEED=<seed>`.

pub struct TestRng(pub u64);

impl TestRng {
    /// `default`, or the seed `GONIEC_TEST_SEED` asks for (a number, or `random`).
    pub fn seeded(default: u64, test: &str) -> TestRng {
        let seed = match std::env::var("GONIEC_TEST_SEED").ok().as_deref() {
            None | Some("") => default,
            Some("random") => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(default, |d| {
                    d.as_nanos() as u64 ^ u64::from(std::process::id())
                }),
            Some(s) => s
                .strip_prefix("0x")
                .map_or_else(|| s.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("GONIEC_TEST_SEED={s:?} is not a number or `random`")),
        };
        // Shown with the failure output; reproduce with GONIEC_TEST_SEED=<seed>.
        eprintln!("{test}: seed {seed:#x}");
        TestRng(seed)
    }

    #[allow(clippy::should_implement_trait)] // an infinite stream; Iterator adds nothing
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    pub fn pick<T: Copy>(&mut self, pool: &[T]) -> T {
        pool[self.below(pool.len())]
    }
}
