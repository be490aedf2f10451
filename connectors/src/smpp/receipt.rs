//! Delivery receipts as text, and the ids that tie them to submits.
//!
//! This module owns three things the SMPP connector needs to apply a receipt:
//!
//! * [`parse`]: a lenient parser for the receipt text an SMSC puts in the
//!   `short_message` (or `message_payload`) of a receipt `deliver_sm`/`data_sm`,
//!   in the shape of SMPP 3.4 Appendix B:
//!   `id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...`.
//!   Appendix B is informative only and real SMSCs vary, so the parser accepts
//!   any key case, missing, extra and reordered fields, `submit_date`-style key
//!   spellings, dates with or without seconds, empty values and bytes that are
//!   not UTF-8. It never panics and never reads more than [`MAX_INPUT`] bytes.
//! * [`Stat`]: the receipt state words, and the mapping both from them and from
//!   the `message_state` TLV ([`stat_from_message_state`]) to our
//!   [`ReceiptState`].
//! * [`normalize_id`] and [`id_candidates`]: SMSCs are inconsistent about the
//!   message id (hex in `submit_sm_resp` and decimal in the receipt, leading
//!   zeros, case), so the id stored at submit time and the id from a receipt go
//!   through the same normalisation before they are compared.
//!
//! Which id to use (the `receipted_message_id` TLV first, the text `id:` as the
//! fallback) and how a receipt is stored are the session's business, not this
//! module's.

use std::borrow::Cow;

use crate::model::ReceiptState;

/// The most bytes [`parse`] looks at. A `short_message` is at most 254 bytes,
/// but a receipt may come in `message_payload` (up to 64 KiB); every field we
/// care about sits in the first few dozen bytes, and the cap bounds the work
/// and the allocations for whatever a peer sends.
pub const MAX_INPUT: usize = 1024;

/// The fields of a receipt text. Every field is optional: SMSCs leave fields
/// out, and a field that is present but unreadable (a date of `2413999999`, a
/// `sub` of `abc`) is `None` rather than a reason to drop the whole receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptText {
    /// The message id as written (trimmed, not normalised; see [`normalize_id`]).
    pub id: Option<String>,
    /// Number of messages originally submitted (`sub:`).
    pub sub: Option<u32>,
    /// Number of messages delivered (`dlvrd:`).
    pub dlvrd: Option<u32>,
    pub submit_date: Option<ReceiptDate>,
    pub done_date: Option<ReceiptDate>,
    /// The state word, when it is one we know.
    pub stat: Option<Stat>,
    /// The state word as written, kept even when [`Stat::parse`] does not know
    /// it so that the event history shows what the carrier said.
    pub stat_raw: Option<String>,
    /// The carrier's error code, raw (`000`, `0x1A`, `1`): its meaning is
    /// carrier-specific, so it is kept for the sender, not interpreted.
    pub err: Option<String>,
    /// The `text:` field: everything after it, since it is the last field and
    /// may hold spaces and colons (usually the first characters of the message).
    pub text: Option<String>,
}

/// A receipt date, `YYMMDDhhmm` or `YYMMDDhhmmss`, in the SMSC's local time
/// (the receipt says nothing about the zone). Only valid calendar values are
/// ever constructed by [`ReceiptDate::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiptDate {
    /// 2000 + YY: the format has a two-digit year and SMPP postdates 1999.
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// 0 when the SMSC sent the 10-digit form.
    pub second: u8,
}

impl ReceiptDate {
    /// Parse `YYMMDDhhmm` or `YYMMDDhhmmss` (surrounding whitespace allowed).
    /// Anything else, or an impossible date (month 13, 30 February, 24:00),
    /// is `None`.
    pub fn parse(s: &str) -> Option<ReceiptDate> {
        let b = s.trim_matches(is_sep).as_bytes();
        if !(b.len() == 10 || b.len() == 12) || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        // All bytes are ASCII digits, so this cannot overflow a u8 (max 99).
        let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
        let year = 2000 + u16::from(two(0));
        let (month, day, hour, minute) = (two(2), two(4), two(6), two(8));
        let second = if b.len() == 12 { two(10) } else { 0 };
        let valid = (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour <= 23
            && minute <= 59
            && second <= 59;
        valid.then_some(ReceiptDate {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// A receipt state, as in the `stat:` field (SMPP 3.4 §5.2.28 / Appendix B).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    Delivered,
    Undeliverable,
    Expired,
    Rejected,
    Deleted,
    Accepted,
    Unknown,
    Enroute,
}

impl Stat {
    /// The standard 7-letter words (`DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`,
    /// `DELETED`, `ACCEPTD`, `UNKNOWN`, `ENROUTE`) and the long forms some SMSCs
    /// write instead, in any case. An unknown word is `None`.
    pub fn parse(s: &str) -> Option<Stat> {
        const WORDS: &[(&str, Stat)] = &[
            ("DELIVRD", Stat::Delivered),
            ("DELIVERED", Stat::Delivered),
            ("UNDELIV", Stat::Undeliverable),
            ("UNDELIVERABLE", Stat::Undeliverable),
            ("UNDELIVERED", Stat::Undeliverable),
            ("EXPIRED", Stat::Expired),
            ("REJECTD", Stat::Rejected),
            ("REJECTED", Stat::Rejected),
            ("DELETED", Stat::Deleted),
            ("ACCEPTD", Stat::Accepted),
            ("ACCEPTED", Stat::Accepted),
            ("UNKNOWN", Stat::Unknown),
            ("ENROUTE", Stat::Enroute),
        ];
        let s = s.trim_matches(is_sep);
        WORDS
            .iter()
            .find(|(word, _)| word.eq_ignore_ascii_case(s))
            .map(|&(_, stat)| stat)
    }

    /// The standard word for this state (`DELIVRD`, ...), for logs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Stat::Delivered => "DELIVRD",
            Stat::Undeliverable => "UNDELIV",
            Stat::Expired => "EXPIRED",
            Stat::Rejected => "REJECTD",
            Stat::Deleted => "DELETED",
            Stat::Accepted => "ACCEPTD",
            Stat::Unknown => "UNKNOWN",
            Stat::Enroute => "ENROUTE",
        }
    }

    /// What this state means for the message.
    pub fn receipt_state(self) -> ReceiptState {
        match self {
            Stat::Delivered => ReceiptState::Delivered,
            Stat::Undeliverable => ReceiptState::Undeliverable,
            Stat::Expired => ReceiptState::Expired,
            Stat::Rejected => ReceiptState::Rejected,
            // Deleted by the SMSC (an operator or a cancel_sm): it will not be
            // delivered, and we have no closer status.
            Stat::Deleted => ReceiptState::Undeliverable,
            // Intermediate: the SMSC still holds the message.
            Stat::Accepted | Stat::Enroute => ReceiptState::Pending,
            Stat::Unknown => ReceiptState::Unknown,
        }
    }
}

/// SMPP `message_state` TLV value (1..=9) → [`Stat`].
///
/// 1..=8 are SMPP 3.4 (§5.2.28). 9 is SKIPPED from SMPP 5.0 (accepted but never
/// transmitted on the network): final and not delivered, so
/// [`Stat::Undeliverable`]. 0 (SCHEDULED in 5.0) and anything else is `None`.
pub fn stat_from_message_state(v: u8) -> Option<Stat> {
    Some(match v {
        1 => Stat::Enroute,
        2 => Stat::Delivered,
        3 => Stat::Expired,
        4 => Stat::Deleted,
        5 => Stat::Undeliverable,
        6 => Stat::Accepted,
        7 => Stat::Unknown,
        8 => Stat::Rejected,
        9 => Stat::Undeliverable,
        _ => return None,
    })
}

/// Field separators. NUL counts as one because SMSCs pad or terminate the
/// text with it (C strings copied into `short_message`).
fn is_sep(c: char) -> bool {
    c.is_whitespace() || c == '\0'
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
    /// A field we do not know (`imsi:`, `mcc:`, ...): recognised so that it
    /// ends the field before it, then ignored.
    Other,
}

impl Key {
    fn from_name(name: &str) -> Key {
        const NAMES: &[(&str, Key)] = &[
            ("id", Key::Id),
            ("sub", Key::Sub),
            ("dlvrd", Key::Dlvrd),
            ("submit_date", Key::SubmitDate),
            ("submit-date", Key::SubmitDate),
            ("submitdate", Key::SubmitDate),
            ("done_date", Key::DoneDate),
            ("done-date", Key::DoneDate),
            ("donedate", Key::DoneDate),
            ("stat", Key::Stat),
            ("err", Key::Err),
            ("text", Key::Text),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Key::Other, |&(_, k)| k)
    }
}

/// Whether token `i` starts a field. Returns the key, the byte offset in `s`
/// where its value starts, and the index of the first token after the key.
///
/// A key is `name:` at the start of a token, where `name` is a letter followed
/// by letters, digits, `_` or `-`; or the two-word keys `submit date:` and
/// `done date:`. Requiring a leading letter keeps values like `12:30` from
/// being taken for keys.
fn key_at(s: &str, toks: &[(usize, usize)], i: usize) -> Option<(Key, usize, usize)> {
    let (start, end) = *toks.get(i)?;
    let tok = &s[start..end];

    let two_word = if tok.eq_ignore_ascii_case("submit") {
        Some(Key::SubmitDate)
    } else if tok.eq_ignore_ascii_case("done") {
        Some(Key::DoneDate)
    } else {
        None
    };
    if let (Some(key), Some(&(next_start, next_end))) = (two_word, toks.get(i + 1)) {
        let next = &s.as_bytes()[next_start..next_end];
        if next.len() >= 5 && next[..5].eq_ignore_ascii_case(b"date:") {
            // "date:" is ASCII, so next_start + 5 is a char boundary.
            return Some((key, next_start + 5, i + 2));
        }
    }

    let colon = tok.find(':')?;
    let name = &tok[..colon];
    let first = name.bytes().next()?;
    if !first.is_ascii_alphabetic()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return None;
    }
    Some((Key::from_name(name), start + colon + 1, i + 1))
}

/// Fields seen so far; the first occurrence of a key wins.
#[derive(Default)]
struct Builder {
    out: ReceiptText,
    seen: [bool; 8],
}

impl Builder {
    /// Record `value` (the text between this key and the next) for `key`.
    fn set(&mut self, key: Key, value: &str) {
        let slot = match key {
            Key::Id => 0,
            Key::Sub => 1,
            Key::Dlvrd => 2,
            Key::SubmitDate => 3,
            Key::DoneDate => 4,
            Key::Stat => 5,
            Key::Err => 6,
            Key::Text => 7,
            Key::Other => return,
        };
        // First wins: a repeated key is more likely noise than a correction,
        // and it keeps the result independent of what follows.
        if std::mem::replace(&mut self.seen[slot], true) {
            return;
        }
        if key == Key::Text {
            let text = value.trim_matches(is_sep);
            self.out.text = (!text.is_empty()).then(|| text.to_owned());
            return;
        }
        // Structured values are one word: this also covers `id: 123` (a space
        // after the colon) and ignores stray words before the next key.
        let Some(word) = value.split(is_sep).find(|w| !w.is_empty()) else {
            return;
        };
        let out = &mut self.out;
        match key {
            Key::Id => out.id = Some(word.to_owned()),
            Key::Sub => out.sub = parse_count(word),
            Key::Dlvrd => out.dlvrd = parse_count(word),
            Key::SubmitDate => out.submit_date = ReceiptDate::parse(word),
            Key::DoneDate => out.done_date = ReceiptDate::parse(word),
            Key::Stat => {
                out.stat = Stat::parse(word);
                out.stat_raw = Some(word.to_owned());
            }
            Key::Err => out.err = Some(word.to_owned()),
            Key::Text | Key::Other => {}
        }
    }
}

/// `sub`/`dlvrd`: decimal digits only (`001` is 1). `str::parse` alone would
/// also take a leading `+`.
fn parse_count(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parse a receipt text. `None` only when nothing receipt-like is found: no
/// `id:` and no `stat:` key before `text:`. Otherwise every field that could be
/// read is filled in and the rest are `None`.
///
/// Only the first [`MAX_INPUT`] bytes are read; they are decoded as UTF-8,
/// lossily (receipts are ASCII in practice, and a stray byte must not cost us
/// the receipt).
pub fn parse(short_message: &[u8]) -> Option<ReceiptText> {
    let bytes = &short_message[..short_message.len().min(MAX_INPUT)];
    let s: Cow<'_, str> = String::from_utf8_lossy(bytes);
    let s: &str = &s;

    // Whitespace-separated tokens as byte ranges, so `text:` can be taken
    // verbatim (inner spacing kept) from the original string.
    let mut toks: Vec<(usize, usize)> = Vec::new();
    let mut tok_start = None;
    for (at, c) in s.char_indices() {
        match (is_sep(c), tok_start) {
            (true, Some(st)) => {
                toks.push((st, at));
                tok_start = None;
            }
            (false, None) => tok_start = Some(at),
            _ => {}
        }
    }
    if let Some(st) = tok_start {
        toks.push((st, s.len()));
    }

    let mut b = Builder::default();
    // The key being read and where its value starts.
    let mut open: Option<(Key, usize)> = None;
    let mut i = 0;
    while i < toks.len() {
        let Some((key, value_start, next)) = key_at(s, &toks, i) else {
            i += 1;
            continue;
        };
        if let Some((prev, prev_start)) = open.take() {
            b.set(prev, &s[prev_start..toks[i].0]);
        }
        if key == Key::Text {
            // `text:` is the last field and holds free text (often the start
            // of the message, which may itself contain `stat:` or `id:`), so
            // nothing after it is read as a key.
            b.set(Key::Text, &s[value_start..]);
            break;
        }
        open = Some((key, value_start));
        i = next;
    }
    if let Some((key, start)) = open {
        b.set(key, &s[start..]);
    }

    // seen[0] = id, seen[5] = stat (see Builder::set).
    (b.seen[0] || b.seen[5]).then_some(b.out)
}

/// Normalise a provider message id so the id from `submit_sm_resp` and the id
/// in a receipt compare equal: trim whitespace and NULs, lowercase (ASCII),
/// strip leading zeros (keeping one `0` if the id is all zeros).
///
/// SMSCs zero-pad ids to a fixed width in one place and not the other, and
/// change hex case, so exact comparison misses real receipts.
pub fn normalize_id(id: &str) -> String {
    let lower = id.trim_matches(is_sep).to_ascii_lowercase();
    let stripped = lower.trim_start_matches('0');
    if stripped.is_empty() && !lower.is_empty() {
        "0".to_owned()
    } else {
        stripped.to_owned()
    }
}

/// The normalised forms to try when matching a receipt id against stored
/// (normalised) submit ids: the id itself first; then, when it is all decimal
/// digits and fits a u64, its hex rendering; then, when it is all hex digits
/// and fits a u64, its decimal rendering. Some SMSCs return the id in hex in
/// `submit_sm_resp` and in decimal in the receipt (or the other way round).
///
/// An id made only of digits is also valid hex, so `255` yields `255`, `ff`
/// and `597`: the caller matches the candidates in order, so an exact match
/// always wins. Ids beyond u64 get only the as-is form. An empty id yields no
/// candidates: it must not match anything.
///
/// Never match a receipt against *all* candidates at once: while the receipt's own
/// id is not yet stored, another message's id can equal a candidate and take the
/// receipt. The SMPP connector converts ids as its `receipt_ids` setting declares;
/// the gateway tries the other candidates only after that form found nothing for
/// its whole parking time, only while that form fails for most of the connector's
/// recent receipts, and uses them only when exactly one message matches (see the
/// gateway's `receipts` module).
pub fn id_candidates(id: &str) -> Vec<String> {
    let n = normalize_id(id);
    if n.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(3);
    if n.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = n.parse::<u64>() {
            out.push(format!("{v:x}"));
        }
    }
    // Checked first because from_str_radix would also accept a leading `+`.
    if n.bytes().all(|b| b.is_ascii_hexdigit()) {
        if let Ok(v) = u64::from_str_radix(&n, 16) {
            out.push(v.to_string());
        }
    }
    out.retain(|c| *c != n);
    out.dedup();
    out.insert(0, n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> ReceiptDate {
        ReceiptDate {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn parses_receipt_variants() {
        struct Case {
            name: &'static str,
            input: &'static [u8],
            want: Option<ReceiptText>,
        }
        let cases = [
            Case {
                name: "SMPP 3.4 Appendix B example",
                input: b"id:0123456789 sub:001 dlvrd:001 submit date:0610191018 done date:0610191018 stat:DELIVRD err:000 text:Hello there",
                want: Some(ReceiptText {
                    id: Some("0123456789".into()),
                    sub: Some(1),
                    dlvrd: Some(1),
                    submit_date: Some(date(2006, 10, 19, 10, 18, 0)),
                    done_date: Some(date(2006, 10, 19, 10, 18, 0)),
                    stat: Some(Stat::Delivered),
                    stat_raw: Some("DELIVRD".into()),
                    err: Some("000".into()),
                    text: Some("Hello there".into()),
                }),
            },
            Case {
                name: "Kannel/Jasmin style: other order, underscores, hex id, extra field",
                input: b"id:1f2e3d4c-aa submit_date:2402291530 done_date:2403010001 stat:UNDELIV sub:001 dlvrd:000 err:0x1A imsi:260011234567890 text:Zam\xc3\xb3wienie: 12:30 ok",
                want: Some(ReceiptText {
                    id: Some("1f2e3d4c-aa".into()),
                    sub: Some(1),
                    dlvrd: Some(0),
                    submit_date: Some(date(2024, 2, 29, 15, 30, 0)),
                    done_date: Some(date(2024, 3, 1, 0, 1, 0)),
                    stat: Some(Stat::Undeliverable),
                    stat_raw: Some("UNDELIV".into()),
                    err: Some("0x1A".into()),
                    text: Some("Zamówienie: 12:30 ok".into()),
                }),
            },
            Case {
                name: "uppercase and mixed-case keys, long stat form",
                input: b"ID:ABC123 SUB:1 DLVRD:1 Submit Date:2501011200 DONE DATE:2501011201 Stat:delivered ERR:0 Text:x",
                want: Some(ReceiptText {
                    id: Some("ABC123".into()),
                    sub: Some(1),
                    dlvrd: Some(1),
                    submit_date: Some(date(2025, 1, 1, 12, 0, 0)),
                    done_date: Some(date(2025, 1, 1, 12, 1, 0)),
                    stat: Some(Stat::Delivered),
                    stat_raw: Some("delivered".into()),
                    err: Some("0".into()),
                    text: Some("x".into()),
                }),
            },
            Case {
                name: "missing dates and text",
                input: b"id:42 sub:001 dlvrd:001 stat:EXPIRED err:000",
                want: Some(ReceiptText {
                    id: Some("42".into()),
                    sub: Some(1),
                    dlvrd: Some(1),
                    stat: Some(Stat::Expired),
                    stat_raw: Some("EXPIRED".into()),
                    err: Some("000".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "12-digit dates (with seconds)",
                input: b"id:7 submit date:240101120059 done date:991231235958 stat:REJECTD",
                want: Some(ReceiptText {
                    id: Some("7".into()),
                    submit_date: Some(date(2024, 1, 1, 12, 0, 59)),
                    done_date: Some(date(2099, 12, 31, 23, 59, 58)),
                    stat: Some(Stat::Rejected),
                    stat_raw: Some("REJECTD".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "text: containing stat: and id: - the real fields win",
                input: b"id:1 stat:UNDELIV err:001 text:stat:DELIVRD id:2 sub:9",
                want: Some(ReceiptText {
                    id: Some("1".into()),
                    stat: Some(Stat::Undeliverable),
                    stat_raw: Some("UNDELIV".into()),
                    err: Some("001".into()),
                    text: Some("stat:DELIVRD id:2 sub:9".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "repeated key before text: first wins",
                input: b"id:1 stat:ACCEPTD stat:DELIVRD",
                want: Some(ReceiptText {
                    id: Some("1".into()),
                    stat: Some(Stat::Accepted),
                    stat_raw: Some("ACCEPTD".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "unknown stat word kept raw",
                input: b"id:5 stat:FAILEDX err:12",
                want: Some(ReceiptText {
                    id: Some("5".into()),
                    stat: None,
                    stat_raw: Some("FAILEDX".into()),
                    err: Some("12".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "id only",
                input: b"id:abc",
                want: Some(ReceiptText {
                    id: Some("abc".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "stat only",
                input: b"stat:ENROUTE",
                want: Some(ReceiptText {
                    stat: Some(Stat::Enroute),
                    stat_raw: Some("ENROUTE".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "surrounding whitespace, NUL terminator, space after colon, empty values",
                input: b"  \r\n id: 99\tsub: dlvrd:x submit date: done date:2413999999 stat:Delivrd err: text:   \0\0",
                want: Some(ReceiptText {
                    id: Some("99".into()),
                    sub: None,
                    dlvrd: None,
                    submit_date: None,
                    done_date: None,
                    stat: Some(Stat::Delivered),
                    stat_raw: Some("Delivrd".into()),
                    err: None,
                    text: None,
                }),
            },
            Case {
                name: "invalid calendar dates are None",
                input: b"id:1 submit date:2302291200 done date:2404312400",
                want: Some(ReceiptText {
                    id: Some("1".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "non-UTF-8 bytes decoded lossily",
                input: b"id:\xff12 stat:DELIVRD text:\xfe\xfd",
                want: Some(ReceiptText {
                    id: Some("\u{fffd}12".into()),
                    stat: Some(Stat::Delivered),
                    stat_raw: Some("DELIVRD".into()),
                    text: Some("\u{fffd}\u{fffd}".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "sub/dlvrd: leading zeros ok, sign or overflow not",
                input: b"id:1 sub:+1 dlvrd:99999999999",
                want: Some(ReceiptText {
                    id: Some("1".into()),
                    ..Default::default()
                }),
            },
            Case {
                name: "garbage bytes",
                input: b"\x00\x01\x02\xff\xfe garbage: 12:30 :id :stat",
                want: None,
            },
            Case {
                name: "empty",
                input: b"",
                want: None,
            },
            Case {
                name: "ordinary MO text",
                input: b"Hello, see you at 12:30",
                want: None,
            },
            Case {
                name: "id: only inside text: is not a receipt",
                input: b"text:id:1 stat:DELIVRD",
                want: None,
            },
        ];
        for case in cases {
            assert_eq!(parse(case.input), case.want, "case: {}", case.name);
        }
    }

    #[test]
    fn reads_at_most_max_input() {
        let mut long = b"id:1 stat:DELIVRD text:".to_vec();
        long.resize(100_000, b'a');
        let got = parse(&long).expect("receipt");
        assert_eq!(got.text.map(|t| t.len()), Some(MAX_INPUT - 23));

        // A key past the cap is not seen.
        let mut late = vec![b' '; MAX_INPUT];
        late.extend_from_slice(b"id:1");
        assert_eq!(parse(&late), None);
    }

    #[test]
    fn stat_words() {
        let cases = [
            ("DELIVRD", Some(Stat::Delivered)),
            ("delivered", Some(Stat::Delivered)),
            ("UNDELIV", Some(Stat::Undeliverable)),
            ("Undeliverable", Some(Stat::Undeliverable)),
            ("EXPIRED", Some(Stat::Expired)),
            ("REJECTD", Some(Stat::Rejected)),
            ("rejected", Some(Stat::Rejected)),
            ("DELETED", Some(Stat::Deleted)),
            ("ACCEPTD", Some(Stat::Accepted)),
            ("ACCEPTED", Some(Stat::Accepted)),
            ("UNKNOWN", Some(Stat::Unknown)),
            ("enroute", Some(Stat::Enroute)),
            (" DELIVRD\0", Some(Stat::Delivered)),
            ("DELIV", None),
            ("", None),
        ];
        for (word, want) in cases {
            assert_eq!(Stat::parse(word), want, "word {word:?}");
        }
        for stat in [
            Stat::Delivered,
            Stat::Undeliverable,
            Stat::Expired,
            Stat::Rejected,
            Stat::Deleted,
            Stat::Accepted,
            Stat::Unknown,
            Stat::Enroute,
        ] {
            assert_eq!(Stat::parse(stat.as_str()), Some(stat));
        }
    }

    #[test]
    fn stat_to_receipt_state() {
        let cases = [
            (Stat::Delivered, ReceiptState::Delivered),
            (Stat::Undeliverable, ReceiptState::Undeliverable),
            (Stat::Expired, ReceiptState::Expired),
            (Stat::Rejected, ReceiptState::Rejected),
            (Stat::Deleted, ReceiptState::Undeliverable),
            (Stat::Accepted, ReceiptState::Pending),
            (Stat::Enroute, ReceiptState::Pending),
            (Stat::Unknown, ReceiptState::Unknown),
        ];
        for (stat, want) in cases {
            assert_eq!(stat.receipt_state(), want, "{stat:?}");
        }
    }

    #[test]
    fn message_state_tlv() {
        let cases = [
            (0, None),
            (1, Some(Stat::Enroute)),
            (2, Some(Stat::Delivered)),
            (3, Some(Stat::Expired)),
            (4, Some(Stat::Deleted)),
            (5, Some(Stat::Undeliverable)),
            (6, Some(Stat::Accepted)),
            (7, Some(Stat::Unknown)),
            (8, Some(Stat::Rejected)),
            (9, Some(Stat::Undeliverable)),
            (10, None),
            (255, None),
        ];
        for (v, want) in cases {
            assert_eq!(stat_from_message_state(v), want, "message_state {v}");
        }
    }

    #[test]
    fn receipt_dates() {
        let cases = [
            ("2402291530", Some(date(2024, 2, 29, 15, 30, 0))),
            ("000101000000", Some(date(2000, 1, 1, 0, 0, 0))),
            ("0002290000", Some(date(2000, 2, 29, 0, 0, 0))),
            ("2302290000", None),
            ("2400010000", None),
            ("2413010000", None),
            ("2401320000", None),
            ("2404310000", None),
            ("2401012400", None),
            ("2401012360", None),
            ("240101235960", None),
            ("24010112", None),
            ("24010112000", None),
            ("24010112000000", None),
            ("24-1011200", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(ReceiptDate::parse(s), want, "date {s:?}");
        }
    }

    #[test]
    fn normalizes_ids() {
        let cases = [
            ("0001A2b", "1a2b"),
            ("  00FF\0\0", "ff"),
            ("000", "0"),
            ("0", "0"),
            ("", ""),
            (" \0 ", ""),
            ("abc-DEF", "abc-def"),
            ("10", "10"),
        ];
        for (id, want) in cases {
            assert_eq!(normalize_id(id), want, "id {id:?}");
        }
    }

    #[test]
    fn id_candidate_forms() {
        let cases: &[(&str, &[&str])] = &[
            ("255", &["255", "ff", "597"]),
            ("ff", &["ff", "255"]),
            ("00FF", &["ff", "255"]),
            ("0", &["0"]),
            ("000", &["0"]),
            ("1", &["1"]),
            ("10", &["10", "a", "16"]),
            ("msg-42", &["msg-42"]),
            ("", &[]),
            // u64::MAX in decimal: hex form; as hex it overflows.
            (
                "18446744073709551615",
                &["18446744073709551615", "ffffffffffffffff"],
            ),
            // One past u64::MAX, and 17 hex digits: as-is only, no panic.
            ("18446744073709551616999", &["18446744073709551616999"]),
            ("1ffffffffffffffff", &["1ffffffffffffffff"]),
            (
                "ffffffffffffffff",
                &["ffffffffffffffff", "18446744073709551615"],
            ),
        ];
        for (id, want) in cases {
            assert_eq!(id_candidates(id), *want, "id {id:?}");
        }
        // The two sides meet: decimal receipt id vs hex submit id and back.
        assert!(id_candidates("255").contains(&"ff".to_owned()));
        assert!(id_candidates("ff").contains(&"255".to_owned()));
    }
    use crate::test_rng::TestRng as XorShift;

    #[test]
    fn random_input_never_panics() {
        const SEEDS: &[&[u8]] = &[
            b"id:0123456789 sub:001 dlvrd:001 submit date:0610191018 done date:0610191018 stat:DELIVRD err:000 text:Hello",
            b"id:1f2e submit_date:240229153000 done_date:2403010001 stat:UNDELIV err:0x1A imsi:26001 text:a: b:",
            b"ID:ABC Stat:delivered TEXT:stat:DELIVRD",
        ];
        const PIECES: &[&[u8]] = &[
            b"id:",
            b"stat:",
            b"text:",
            b"submit date:",
            b"done",
            b"date:",
            b":",
            b" ",
            b"\0",
            b"\xff",
            b"\xe2\x82",
            b"9999999999999999999999",
            b"DELIVRD",
            b"sub:",
            b"0",
        ];
        let mut rng = XorShift::seeded(0x9E37_79B9_7F4A_7C15, "random_input_never_panics");
        for round in 0..20_000 {
            let mut buf: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(2000);
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                let mut b = SEEDS[rng.below(SEEDS.len())].to_vec();
                for _ in 0..1 + rng.below(8) {
                    match rng.below(5) {
                        0 if !b.is_empty() => {
                            let at = rng.below(b.len());
                            b[at] = rng.next() as u8;
                        }
                        1 => {
                            let at = rng.below(b.len() + 1);
                            b.insert(at, rng.next() as u8);
                        }
                        2 if !b.is_empty() => {
                            let at = rng.below(b.len());
                            let end = (at + rng.below(16)).min(b.len());
                            b.drain(at..end);
                        }
                        3 => {
                            let at = rng.below(b.len() + 1);
                            let piece = PIECES[rng.below(PIECES.len())];
                            b.splice(at..at, piece.iter().copied());
                        }
                        _ => {
                            let fill = rng.next() as u8;
                            let extra = rng.below(1500);
                            b.extend(std::iter::repeat_n(fill, extra));
                        }
                    }
                }
                b.truncate(1999);
                b
            };
            if round % 7 == 0 {
                buf.truncate(rng.below(buf.len() + 1));
            }

            if let Some(r) = parse(&buf) {
                // Bounded by the cap even after lossy decoding (≤ 3 bytes per input byte).
                let total: usize = [&r.id, &r.stat_raw, &r.err, &r.text]
                    .iter()
                    .map(|f| f.as_ref().map_or(0, |s| s.len()))
                    .sum();
                assert!(total <= 3 * MAX_INPUT, "round {round}");
                if let Some(id) = &r.id {
                    assert!(id_candidates(id).len() <= 3);
                }
            }
            let lossy = String::from_utf8_lossy(&buf[..buf.len().min(64)]);
            let _ = normalize_id(&lossy);
            let _ = id_candidates(&lossy);
            let _ = Stat::parse(&lossy);
            let _ = ReceiptDate::parse(&lossy);
        }
    }
}
