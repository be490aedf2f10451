//! The peers Goniec talks to, simulated: what `goniec demo` runs, what the
//! integration tests and benches send to, and `goniec smsc-sim|rcs-sim|smtp-sink`.
//!
//! None of this is in the gateway's delivery path: the connectors
//! (`goniec-connectors`) never depend on this crate, and a connector is tested
//! against these peers over the real wire protocol, as against a carrier.
//!
//! * [`smsc`]: an SMSC, a real SMPP 3.4 server (binds, `submit_sm_resp`,
//!   delivery receipts with re-sends, throttling, faults on request).
//! * [`rbm`]: Google's RCS Business Messaging REST API (OAuth2 token endpoint,
//!   send, capabilities, revoke) posting signed webhook events, with the demo
//!   service-account key.
//! * [`smtp_sink`]: an ESMTP server that accepts mail (STARTTLS with a
//!   self-signed certificate, AUTH), fails a share on request and counts it.
//! * [`cli`]: each simulator's command-line arguments (flattened into the
//!   `goniec` CLI), its loopback HTTP control side, and its runner.

pub mod cli;
pub mod rbm;
pub mod smsc;
pub mod smtp_sink;
