//! Recipient addresses in their one stored form: E.164 phone numbers and
//! e-mail addresses, and the key an address has on suppression lists. Used
//! where messages are accepted and where replies and bounces come back.

use goniec_core::Problem;

use crate::accept::invalid::Invalid;

/// E.164-normalise a phone number; refuse invalid ones and, when `mobile_only`,
/// numbers that are not mobiles.
pub fn normalize_msisdn(
    raw: &str,
    region: Option<phonenumber::country::Id>,
    mobile_only: bool,
) -> Result<String, Invalid> {
    let bad = |why: &str| {
        Invalid::new(
            Problem::InvalidNumber,
            format!("`to` is not a valid phone number: {why}"),
        )
        .field("to")
    };
    if raw.trim().is_empty() {
        return Err(bad("empty"));
    }
    if raw.len() > 32
        || !raw
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return Err(bad("only digits, spaces, + - ( ) . are allowed"));
    }
    let num = phonenumber::parse(region, raw).map_err(|e| bad(&e.to_string()))?;
    if !num.is_valid() {
        return Err(bad("no such number range"));
    }
    if mobile_only {
        use phonenumber::Type;
        match num.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile => {}
            other => {
                return Err(Invalid::new(
                    Problem::NotMobile,
                    format!(
                        "`to` is a {other:?} number, not a mobile one; SMS and RCS need a mobile"
                    ),
                )
                .field("to"))
            }
        }
    }
    Ok(num.format().mode(phonenumber::Mode::E164).to_string())
}

/// Check an e-mail address (RFC 5321 shape: local part, domain of dotted labels).
pub fn normalize_email(raw: &str) -> Result<String, Invalid> {
    let bad = |why: &str| {
        Invalid::new(
            Problem::InvalidEmail,
            format!("`to` is not a valid e-mail address: {why}"),
        )
        .field("to")
    };
    let addr = raw.trim();
    if addr.len() > 254 {
        return Err(bad("longer than 254 characters"));
    }
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return Err(bad("no `@`"));
    };
    if local.is_empty() || local.len() > 64 {
        return Err(bad("the part before `@` must be 1 to 64 characters"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad("misplaced dot before `@`"));
    }
    if !local
        .chars()
        .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
    {
        return Err(bad("unsupported character before `@`"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(bad("the domain needs a dot"));
    }
    for l in &labels {
        if l.is_empty()
            || l.len() > 63
            || l.starts_with('-')
            || l.ends_with('-')
            || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
        {
            return Err(bad("the domain is not a valid host name"));
        }
    }
    Ok(format!("{local}@{}", domain.to_lowercase()))
}

/// The form an address has on suppression lists: case-insensitive as a whole (a
/// mailbox that bounced as `Jan@…` bounces as `jan@…` on any real server).
pub fn suppression_key(address: &str) -> String {
    address.trim().to_lowercase()
}
