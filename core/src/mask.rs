//! Recipients as they may appear in logs: never a full phone number or
//! e-mail address at info level.

/// Mask a recipient for logs: phone numbers keep country code and last two digits
/// (`+48*******67`), e-mail addresses keep the first letter and the domain
/// (`j***@example.com`).
pub fn mask(to: &str) -> String {
    if let Some((local, domain)) = to.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = to.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let keep_head = 3.min(chars.len());
    let keep_tail = 2;
    let mut out: String = chars[..keep_head].iter().collect();
    out.extend(std::iter::repeat_n(
        '*',
        chars.len() - keep_head - keep_tail,
    ));
    out.extend(&chars[chars.len() - keep_tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_numbers_and_addresses() {
        assert_eq!(mask("+48501234567"), "+48*******67");
        assert_eq!(mask("jan.kowalski@example.com"), "j***@example.com");
        assert_eq!(mask("1234"), "****");
        assert!(!mask("+48501234567").contains("5012345"));
    }
}
