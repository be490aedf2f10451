//! A message's lifecycle: its statuses and the one table of allowed transitions.
//!
//! `accepted → scheduled? → queued → submitted → delivered | undeliverable | expired | failed`,
//! plus `read` (RCS, also after `delivered`), `rejected` and `held` (before queueing) and
//! `cancelled` (before submission). Final states never change, except that a delivered
//! RCS message may still be read. `submitted → queued` is the SMS fallback of an RCS
//! message the platform withdrew (revoked) before it was delivered.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a message is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Accepted,
    Scheduled,
    Queued,
    Submitted,
    Delivered,
    Undeliverable,
    Expired,
    Failed,
    Read,
    Rejected,
    Held,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Accepted,
        Status::Scheduled,
        Status::Queued,
        Status::Submitted,
        Status::Delivered,
        Status::Undeliverable,
        Status::Expired,
        Status::Failed,
        Status::Read,
        Status::Rejected,
        Status::Held,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Accepted => "accepted",
            Status::Scheduled => "scheduled",
            Status::Queued => "queued",
            Status::Submitted => "submitted",
            Status::Delivered => "delivered",
            Status::Undeliverable => "undeliverable",
            Status::Expired => "expired",
            Status::Failed => "failed",
            Status::Read => "read",
            Status::Rejected => "rejected",
            Status::Held => "held",
            Status::Cancelled => "cancelled",
        }
    }

    /// A final status never changes again (`delivered → read` is the one exception).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Delivered
                | Status::Undeliverable
                | Status::Expired
                | Status::Failed
                | Status::Read
                | Status::Rejected
                | Status::Cancelled
        )
    }

    /// The statuses a message may be in for a move to `self` to be allowed.
    pub fn allowed_from(self) -> &'static [Status] {
        use Status::*;
        match self {
            Accepted => &[],
            Scheduled => &[Accepted, Held],
            // From `submitted` only to fall back: an RCS message the platform
            // withdrew (revoked) goes out again by SMS. The stores allow it once
            // per message.
            Queued => &[Accepted, Scheduled, Held, Submitted],
            Submitted => &[Queued],
            Delivered | Undeliverable => &[Submitted],
            Expired => &[Scheduled, Queued, Submitted, Held],
            Failed => &[Queued, Submitted],
            Read => &[Submitted, Delivered],
            Rejected => &[Accepted, Held],
            Held => &[Accepted],
            Cancelled => &[Accepted, Scheduled, Queued, Held],
        }
    }

    /// Whether a message in `self` may move to `to`.
    pub fn can_move_to(self, to: Status) -> bool {
        to.allowed_from().contains(&self)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    /// The full transition table: every (from, to) pair, checked against the
    /// lifecycle in DESIGN.md.
    #[test]
    fn transition_table() {
        let allowed: &[(Status, &[Status])] = &[
            (Accepted, &[Scheduled, Queued, Rejected, Held, Cancelled]),
            (Scheduled, &[Queued, Expired, Cancelled]),
            (Queued, &[Submitted, Expired, Failed, Cancelled]),
            (
                Submitted,
                &[Queued, Delivered, Undeliverable, Expired, Failed, Read],
            ),
            (Delivered, &[Read]),
            (Held, &[Scheduled, Queued, Expired, Rejected, Cancelled]),
            (Undeliverable, &[]),
            (Expired, &[]),
            (Failed, &[]),
            (Read, &[]),
            (Rejected, &[]),
            (Cancelled, &[]),
        ];
        for (from, tos) in allowed {
            for to in Status::ALL {
                assert_eq!(
                    from.can_move_to(to),
                    tos.contains(&to),
                    "{from} -> {to} should be {}",
                    if tos.contains(&to) {
                        "allowed"
                    } else {
                        "refused"
                    }
                );
            }
        }
    }

    #[test]
    fn final_states_only_move_to_read_from_delivered() {
        for from in Status::ALL.into_iter().filter(|s| s.is_final()) {
            for to in Status::ALL {
                if from.can_move_to(to) {
                    assert_eq!((from, to), (Delivered, Read));
                }
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for st in Status::ALL {
            assert_eq!(st.as_str().parse::<Status>().unwrap(), st);
            assert_eq!(serde_json::to_string(&st).unwrap(), format!("\"{st}\""));
        }
        assert!("bogus".parse::<Status>().is_err());
    }
}
