//! Goniec's vocabulary, shared by every other crate and depending on none of
//! them: what a message travels on ([`Channel`]), what identifies it
//! ([`id`]), where it is in its life ([`Status`] and the one transition
//! table), the units the config writes as strings ([`units`]), how a
//! recipient may appear in logs ([`mask`]), the API's problem codes
//! ([`Problem`]), and an error told with its causes ([`cause`]).

pub mod cause;
pub mod channel;
pub mod check;
pub mod cidr;
pub mod id;
pub mod mask;
pub mod problem;
pub mod status;
pub mod units;

pub use channel::Channel;
pub use problem::Problem;
pub use status::Status;
