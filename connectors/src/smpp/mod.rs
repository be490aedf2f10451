//! SMPP 3.4: our own framing and session layer on the `rusmpp` PDU codec (see
//! `shared/research/smpp-crates.md` for why not `rusmppc` or `smpp-codec`).
//!
//! Built bottom-up; today this module holds the pieces that take bytes from the
//! network, each bounded and panic-free:
//! * [`frame`]: splits a TCP byte stream into exactly one PDU per frame
//!   (16 ≤ command_length ≤ a configured maximum) and decodes only that frame.
//! * [`receipt`]: the lenient delivery-receipt text parser and id normalisation.
//! * [`sim`]: the SMSC simulator, a real SMPP 3.4 server (binds, submit_sm_resp,
//!   delivery receipts with re-sends, throttling) for `goniec demo`, tests and benches.
//!
//! The session (bind, window, enquire_link, reconnect), the connector and the
//! SMSC simulator build on these. `hostile_tests` runs the session and the
//! connector against small SMSCs that misbehave on purpose (one fault each).

pub mod connector;
pub mod frame;
#[cfg(test)]
mod hostile_tests;
pub mod receipt;
pub mod session;
pub mod status;
