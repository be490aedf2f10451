//! Recipient addresses in their one stored form: E.164 phone numbers and
//! e-mail addresses, and the key an address has on suppression lists. Used
//! where messages are accepted and where replies and bounces come back.

use goniec_core::Problem;

use crate::accept::invalid::Invalid;

mod ranges;
pub use ranges::number_type;

/// E.164-normalise a phone number; refuse invalid ones and, when `mobile_only`,
/// numbers that are not mobiles.
pub fn normalize_msisdn(
    raw: &str,
    region: Option<phonenumber::country::Id>,
    mobile_only: bool,
) -> Result<String, Invalid> {
    parse_msisdn(raw, region, mobile_only).map(|m| m.e164)
}

/// A phone number as validation read it, for anti-fraud to reuse instead of
/// parsing and typing it again (libphonenumber's regexes: about 16 µs).
#[derive(Debug, Clone)]
pub struct Msisdn {
    /// The E.164 form (`+48601234567`).
    pub e164: String,
    pub number: phonenumber::PhoneNumber,
    /// Its type, when a mobile-only channel needed it.
    pub number_type: Option<phonenumber::Type>,
}

/// [`normalize_msisdn`], keeping what it learnt of the number.
pub fn parse_msisdn(
    raw: &str,
    region: Option<phonenumber::country::Id>,
    mobile_only: bool,
) -> Result<Msisdn, Invalid> {
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
    ranges::size_phonenumber_cache();
    let num = phonenumber::parse(region, raw).map_err(|e| bad(&e.to_string()))?;
    // For a mobile-only channel the number's type is needed anyway, and without
    // leading zeros in the national number (which `is_valid` keeps and
    // `number_type` drops) "valid" is exactly "of a known type": one pass of
    // libphonenumber's regexes instead of two.
    let typed = (mobile_only && num.national().zeros() == 0).then(|| number_type(&num));
    let valid = match typed {
        Some(t) => t != phonenumber::Type::Unknown,
        None => ranges::is_valid(&num),
    };
    if !valid {
        return Err(bad("no such number range"));
    }
    let mut kind = None;
    if mobile_only {
        use phonenumber::Type;
        let t = typed.unwrap_or_else(|| number_type(&num));
        kind = Some(t);
        match t {
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
    Ok(Msisdn {
        e164: ranges::e164(&num),
        number: num,
        number_type: kind,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::{metadata::DATABASE, Type};

    /// What the check was before the one-pass shortcut: `is_valid`, then the
    /// number's type for mobile-only channels.
    fn two_pass(raw: &str, mobile_only: bool) -> Result<String, &'static str> {
        let num = phonenumber::parse(None, raw).map_err(|_| "invalid-number")?;
        if !num.is_valid() {
            return Err("invalid-number");
        }
        if mobile_only
            && !matches!(
                num.number_type(&DATABASE),
                Type::Mobile | Type::FixedLineOrMobile
            )
        {
            return Err("not-mobile");
        }
        Ok(num.format().mode(phonenumber::Mode::E164).to_string())
    }

    #[test]
    fn one_pass_mobile_check_answers_as_two_passes_did() {
        let numbers = [
            "+48601234567",    // PL mobile
            "+48 221 234 567", // PL fixed line
            "+48701234567",    // PL premium rate
            "+48123",          // too short
            "+390669812345",   // IT fixed line: a leading zero in the national number
            "+393123456789",   // IT mobile
            "+14155552671",    // US (fixed line or mobile)
            "+447911123456",   // GB mobile
            "+442079460000",   // GB fixed line
            "+4915112345678",  // DE mobile
            "+49301234567",    // DE fixed line
            "+8613812345678",  // CN mobile
            "+61412345678",    // AU mobile
            "+380501234567",   // UA mobile
            "+999123456",      // no such country code
            "+48000000000",    // no such range
        ];
        for raw in numbers {
            for mobile_only in [true, false] {
                let got = normalize_msisdn(raw, None, mobile_only).map_err(|e| e.code.as_str());
                assert_eq!(
                    got,
                    two_pass(raw, mobile_only),
                    "{raw} mobile_only={mobile_only}"
                );
            }
        }
        // Both branches are taken: a mobile, and a number with a leading zero.
        assert!(normalize_msisdn("+48601234567", None, true).is_ok());
        assert_eq!(
            normalize_msisdn("+390669812345", None, true).map_err(|e| e.code.as_str()),
            Err("not-mobile")
        );
    }

    /// What anti-fraud reuses is what it would compute itself: the number
    /// parsed from the E.164 form, and (mobile-only) libphonenumber's type.
    #[test]
    fn parsed_numbers_keep_their_type_for_anti_fraud() {
        for raw in [
            "+48601234567",
            "+393123456789",
            "+14155552671",
            "+4915112345678",
        ] {
            let m = parse_msisdn(raw, None, true).unwrap();
            let again = phonenumber::parse(None, &m.e164).unwrap();
            assert_eq!(m.number, again, "{raw}");
            assert_eq!(m.number_type, Some(again.number_type(&DATABASE)), "{raw}");
            assert_eq!(parse_msisdn(raw, None, false).unwrap().number_type, None);
        }
    }
}
