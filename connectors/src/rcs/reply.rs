//! The platform's HTTP failures described for errors and logs: shared by
//! the token flow ([`super::auth`]) and the sender ([`super::connector`]).

/// A reqwest error with its causes (`error sending request: connection refused`).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    goniec_core::cause::chain(e)
}

/// The start of a body, as text, for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no details".into();
    }
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_short() {
        assert_eq!(snippet(b"  "), "no details");
        assert_eq!(snippet("ż".repeat(300).as_bytes()).chars().count(), 201);
    }
}
