//! `kind = "smpp"`: the settings of an SMPP 3.4 link, and their checks. The
//! config crate reads them from `[[connectors]]` and reports every problem
//! with its key path.

use std::time::Duration;

use goniec_core::check::Report;
use goniec_core::units::humantime_serde_compat;
use serde::Deserialize;

pub use crate::text::Concat;

/// How a connector binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindType {
    /// One connection both ways.
    Transceiver,
    /// Each bind is a transmitter for submits plus a receiver for receipts.
    TransmitterReceiver,
}

impl BindType {
    /// As written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            BindType::Transceiver => "transceiver",
            BindType::TransmitterReceiver => "transmitter_receiver",
        }
    }
}

/// How an SMSC writes the id in receipts relative to its `submit_sm_resp`
/// ids (`receipt_ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    Same,
    HexToDecimal,
    DecimalToHex,
}

impl IdFormat {
    /// As written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdFormat::Same => "same",
            IdFormat::HexToDecimal => "hex_to_decimal",
            IdFormat::DecimalToHex => "decimal_to_hex",
        }
    }
}

/// `kind = "smpp"`: an SMPP 3.4 link to a carrier's SMSC.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// SMSC host (IP or name). Default `127.0.0.1`.
    pub host: String,
    /// SMSC port. Default 2775.
    pub port: u16,
    /// Bind credentials. `system_id` default `goniec`; `password` required.
    pub system_id: String,
    pub password: String,
    /// Default empty.
    pub system_type: String,
    /// How to bind: `transceiver` (default; one connection both ways) or
    /// `transmitter_receiver` (each of the `binds` is a transmitter for submits
    /// plus a receiver for receipts, for SMSCs without transceiver support).
    pub bind_type: BindType,
    /// address_range sent in the bind (which MO/receipt addresses this ESME
    /// serves; at most 40 characters). Default empty.
    pub address_range: String,
    /// interface_version sent in the bind: 0x34 (52, SMPP 3.4, default), 0x33 or 0x50.
    pub interface_version: u8,
    /// Parallel transceiver binds; messages spread over the ready ones. Default 1.
    pub binds: usize,
    /// Most requests outstanding per bind. Default 100.
    pub window: usize,
    /// Longest wait for a response. Default `10s`.
    #[serde(with = "humantime_serde_compat")]
    pub response_timeout: Duration,
    /// Idle time before an enquire_link. Default `30s`.
    #[serde(with = "humantime_serde_compat")]
    pub enquire_link: Duration,
    /// A bind whose writes to the SMSC make no progress for this long (the SMSC
    /// stopped reading) is declared dead and reconnected; after a second of no
    /// progress it already takes no new submits and reports itself down. Default `15s`.
    #[serde(with = "humantime_serde_compat")]
    pub write_timeout: Duration,
    /// data_coding for GSM-7 text: 0 (SMSC default alphabet, unpacked septets) or
    /// 3 (Latin-1, when the SMSC's default is not GSM-7). UCS-2 text always uses 8.
    /// Default 0.
    pub data_coding: u8,
    /// Long messages: `udh8` (default), `udh16`, `sar` or `payload`.
    pub concat: Concat,
    /// Source TON/NPI override, e.g. `[5, 0]`; default derived from the sender.
    pub source_ton_npi: Option<[u8; 2]>,
    /// Default sender when a message has none. Default `Goniec`.
    pub default_sender: String,
    /// How receipt ids relate to submit_sm_resp ids: `same` (default; compared after
    /// trimming, lower-casing and dropping leading zeros), `hex_to_decimal` (the SMSC
    /// answers submits in hex and reports receipts in decimal) or `decimal_to_hex`.
    /// The declared form is tried first, and alone for a few seconds (a receipt can
    /// arrive before its submit is recorded). Only then, and only while most recent
    /// receipts of this connector do not match in the declared form, are the other
    /// spellings (decimal ↔ hex) tried, and used when exactly one of them matches:
    /// guessing while the declared form works would hand receipts of other messages
    /// (another bind's) to the wrong one.
    pub receipt_ids: IdFormat,
    /// Ask the SMSC with `query_sm` about a message whose receipt has not come this
    /// long after its submission, then again after twice the wait, and so on, at
    /// most `query_max` times, and once more at its deadline (see `receipt_grace`).
    /// `"0s"` never asks. Default `10m`.
    #[serde(with = "humantime_serde_compat")]
    pub query_after: Duration,
    /// Most `query_sm` for one message before its deadline. Default 5 (with
    /// `query_after = "10m"`: after 10, 30, 70, 150 and 310 minutes).
    pub query_max: u32,
    /// How long the SMSC is taken to keep trying a message that has no
    /// `valid_until` of its own: set it to your SMSC's default validity period.
    /// Default `48h`.
    #[serde(with = "humantime_serde_compat")]
    pub default_validity: Duration,
    /// A message still `submitted` this long after its validity ended (its
    /// `valid_until`, else submission + `default_validity`), with no receipt and no
    /// final answer to `query_sm`, becomes `expired` with reason `no_receipt`.
    /// Default `1h`.
    #[serde(with = "humantime_serde_compat")]
    pub receipt_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 2775,
            system_id: "goniec".into(),
            password: String::new(),
            system_type: String::new(),
            bind_type: BindType::Transceiver,
            address_range: String::new(),
            interface_version: 0x34,
            binds: 1,
            window: 100,
            response_timeout: Duration::from_secs(10),
            enquire_link: Duration::from_secs(30),
            write_timeout: Duration::from_secs(15),
            data_coding: 0,
            concat: Concat::Udh8,
            source_ton_npi: None,
            default_sender: "Goniec".into(),
            receipt_ids: IdFormat::Same,
            query_after: Duration::from_secs(10 * 60),
            query_max: 5,
            default_validity: Duration::from_secs(48 * 3600),
            receipt_grace: Duration::from_secs(3600),
        }
    }
}

impl Config {
    /// What a valid value of each key cannot say on its own.
    pub fn check(&self, r: &mut dyn Report) {
        if self.host.trim().is_empty() {
            r.error("host", "missing; the SMSC's host name or IP".into());
        }
        if self.port == 0 {
            r.error("port", "must be 1..=65535".into());
        }
        if self.system_id.is_empty() || self.system_id.len() > 15 {
            r.error("system_id", "must be 1 to 15 characters (SMPP 3.4)".into());
        }
        if self.password.len() > 8 {
            r.error("password", "must be at most 8 characters (SMPP 3.4)".into());
        }
        if self.system_type.len() > 12 {
            r.error(
                "system_type",
                "must be at most 12 characters (SMPP 3.4)".into(),
            );
        }
        if self.address_range.len() > 40 {
            r.error(
                "address_range",
                "must be at most 40 characters (SMPP 3.4)".into(),
            );
        }
        if ![0x33u8, 0x34, 0x50].contains(&self.interface_version) {
            r.error(
                "interface_version",
                "must be 0x33 (51), 0x34 (52) or 0x50 (80)".into(),
            );
        }
        if !(1..=64).contains(&self.binds) {
            r.error("binds", "must be 1..=64".into());
        }
        if !(1..=10_000).contains(&self.window) {
            r.error("window", "must be 1..=10000".into());
        }
        if ![0u8, 3].contains(&self.data_coding) {
            r.error(
                "data_coding",
                "must be 0 (SMSC default alphabet, GSM-7) or 3 (Latin-1); UCS-2 text always goes as 8"
                    .into(),
            );
        }
        r.positive("response_timeout", self.response_timeout);
        r.positive("enquire_link", self.enquire_link);
        r.positive("write_timeout", self.write_timeout);
        r.positive("default_validity", self.default_validity);
        if !(1..=20).contains(&self.query_max) {
            r.error("query_max", "must be 1..=20".into());
        }
    }
}
