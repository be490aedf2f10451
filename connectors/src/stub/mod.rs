//! `kind = "stub"`: a test double, selectable in any config but runnable only
//! in builds with the `stub` feature (never in release builds): it accepts after
//! `latency`, fails every n-th submit if told to, sends a receipt after
//! `receipt_delay`, and can log every submit to a file so tests can count
//! duplicates across a crash.

use std::path::PathBuf;
use std::time::Duration;

use goniec_core::check::Report;
use goniec_core::units::humantime_serde_compat;
use goniec_core::Channel;
use serde::Deserialize;

#[cfg(feature = "stub")]
mod connector;
#[cfg(feature = "stub")]
pub use connector::StubConnector;

/// The receipt a stub sends after a submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StubReceipt {
    Delivered,
    Undeliverable,
    /// No receipt at all.
    None,
}

impl StubReceipt {
    /// As written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            StubReceipt::Delivered => "delivered",
            StubReceipt::Undeliverable => "undeliverable",
            StubReceipt::None => "none",
        }
    }
}

/// `kind = "stub"`: the test double connector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StubConfig {
    /// Channels it serves. Default `["sms", "rcs", "email"]`.
    pub channels: Vec<Channel>,
    /// Time one submit takes. Default `0s`.
    #[serde(with = "humantime_serde_compat")]
    pub latency: Duration,
    /// Delay before the delivery receipt. Default `0s`.
    #[serde(with = "humantime_serde_compat")]
    pub receipt_delay: Duration,
    /// Receipt state sent after submit: `delivered`, `undeliverable` or `none`. Default `delivered`.
    pub receipt: StubReceipt,
    /// Every n-th submit fails transiently (0 = never). Default 0.
    pub transient_every: u64,
    /// Every n-th submit fails permanently (0 = never). Default 0.
    pub permanent_every: u64,
    /// Append one line per submit (`<message id>`) to this file, for tests counting duplicates.
    pub record_to: Option<PathBuf>,
}

impl Default for StubConfig {
    fn default() -> Self {
        StubConfig {
            channels: Channel::ALL.to_vec(),
            latency: Duration::ZERO,
            receipt_delay: Duration::ZERO,
            receipt: StubReceipt::Delivered,
            transient_every: 0,
            permanent_every: 0,
            record_to: None,
        }
    }
}

impl StubConfig {
    /// Nothing beyond what reading it checks (that it carries a channel is
    /// checked for every kind by the config crate).
    pub fn check(&self, _: &mut dyn Report) {}
}
