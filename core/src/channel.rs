//! The channel a message travels on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The channel a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// SMS; the recipient is an E.164 number.
    Sms,
    /// RCS Business Messaging; the recipient is an E.164 number.
    Rcs,
    /// E-mail; the recipient is an address.
    Email,
}

impl Channel {
    /// Every channel, in the order the API lists them.
    pub const ALL: [Channel; 3] = [Channel::Sms, Channel::Rcs, Channel::Email];

    /// `sms`, `rcs` or `email`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Rcs => "rcs",
            Channel::Email => "email",
        }
    }

    /// Whether the recipient is a phone number.
    pub const fn is_phone(self) -> bool {
        matches!(self, Channel::Sms | Channel::Rcs)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown channel `{s}` (expected sms, rcs or email)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{c}\""));
        }
        assert!("fax".parse::<Channel>().is_err());
    }
}
