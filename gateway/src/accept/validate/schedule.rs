//! When a message may go: `send_at` and `valid_until`.

use goniec_core::Problem;

use super::Rules;
use crate::accept::invalid::Invalid;

/// RFC 3339 timestamp → Unix ms.
pub fn parse_time(s: &str, field: &str) -> Result<i64, Invalid> {
    // RFC 3339 offsets are at most ±23:59; jiff also takes up to ±25:59:59.
    let offset_ok = s
        .rfind(['+', '-'])
        .filter(|&i| i > s.find('T').unwrap_or(usize::MAX))
        .and_then(|i| s.get(i + 1..i + 3))
        .is_none_or(|hours| hours.parse::<u8>().is_ok_and(|h| h <= 23));
    if !offset_ok {
        return Err(Invalid::new(
            Problem::InvalidTimestamp,
            format!("`{field}` has a UTC offset beyond ±23:59, which RFC 3339 does not allow"),
        )
        .field(field));
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            Invalid::new(
                Problem::InvalidTimestamp,
                format!(
                    "`{field}` must be an RFC 3339 time such as 2026-11-22T09:00:00+01:00: {e}"
                ),
            )
            .field(field)
        })
}

/// `send_at` and `valid_until` as Unix ms: `valid_until` in the future and
/// after `send_at`, `send_at` within the store's retention. A past `send_at`
/// means "now" (`None`).
pub(super) fn times(
    send_at: Option<&str>,
    valid_until: Option<&str>,
    now: i64,
    rules: &Rules,
) -> Result<(Option<i64>, Option<i64>), Invalid> {
    let send_at = send_at.map(|s| parse_time(s, "send_at")).transpose()?;
    let valid_until = valid_until
        .map(|s| parse_time(s, "valid_until"))
        .transpose()?;
    if let Some(v) = valid_until {
        if v <= now {
            return Err(
                Invalid::new(Problem::InvalidValue, "`valid_until` is in the past")
                    .field("valid_until"),
            );
        }
        if send_at.is_some_and(|s| s >= v) {
            return Err(Invalid::new(
                Problem::InvalidValue,
                "`valid_until` must be after `send_at`",
            )
            .field("valid_until"));
        }
    }
    if send_at.is_some_and(|s| s.saturating_sub(now) > rules.max_schedule_ms) {
        return Err(Invalid::new(
            Problem::InvalidValue,
            format!(
                "`send_at` is more than {} days ahead; messages are kept no longer",
                rules.max_schedule_ms / 86_400_000
            ),
        )
        .field("send_at"));
    }
    Ok((send_at.filter(|&s| s > now), valid_until))
}
