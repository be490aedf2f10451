//! SMPP 3.4: our own framing and session layer on the `rusmpp` PDU codec (see
//! `docs/smpp-crates.md` for why not `rusmppc` or `smpp-codec`). Bytes from the
//! network pass through bounded, panic-free pieces, bottom to top:
//!
//! * [`frame`]: splits a TCP byte stream into exactly one PDU per frame
//!   (16 ≤ command_length ≤ a configured maximum) and decodes only that frame.
//! * [`session`]: one bind (window, sequence numbers, timeouts, enquire_link,
//!   reconnect with backoff, unbind).
//! * [`connector`]: the [`Connector`](crate::Connector): binds, encoding and
//!   splitting, status mapping, receipts and `query_sm`.
//! * [`receipt`]: the lenient delivery-receipt text parser and id normalisation.
//! * [`status`]: command_status names.
//!
//! `hostile_tests` runs the session and the connector against small SMSCs that
//! misbehave on purpose (one fault each); the full SMSC simulator is
//! `goniec-sims`.

pub mod config;
pub mod connector;
pub mod frame;
#[cfg(test)]
mod hostile_tests;
pub mod receipt;
pub mod session;
pub mod status;
