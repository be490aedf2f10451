//! Opt-out keywords in inbound SMS.

/// The default opt-out keywords: `STOP` and the Polish `NIE` ("no").
pub const DEFAULT_STOP_KEYWORDS: &[&str] = &["STOP", "NIE"];

/// Whether an inbound message `text` is, as a whole, one of `keywords`:
/// compared case-insensitively, without diacritics (`NIÉ` = `nie`, `STÓP` =
/// `stop`), ignoring all whitespace (`" S T O P "`) and surrounding
/// punctuation (`"Stop!"`, `"'NIE.'"`). A keyword inside a longer message
/// (`"nie rozumiem"`) does not count.
///
/// ```
/// use goniec_antifraud::{is_stop_keyword, DEFAULT_STOP_KEYWORDS};
/// assert!(is_stop_keyword(" Stop! ", DEFAULT_STOP_KEYWORDS));
/// assert!(!is_stop_keyword("nie rozumiem", DEFAULT_STOP_KEYWORDS));
/// ```
pub fn is_stop_keyword<S: AsRef<str>>(text: &str, keywords: &[S]) -> bool {
    let folded = fold(text);
    !folded.is_empty() && keywords.iter().any(|k| fold(k.as_ref()) == folded)
}

/// Lower case, no diacritics, no whitespace, no leading/trailing punctuation.
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_whitespace() || is_combining_mark(c) {
            continue;
        }
        match strip_diacritic(c) {
            Some(base) => out.push(base),
            None => out.extend(c.to_lowercase()),
        }
    }
    let trimmed = out.trim_matches(|c: char| c.is_ascii_punctuation() || is_quote_or_mark(c));
    trimmed.to_owned()
}

fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}')
}

fn is_quote_or_mark(c: char) -> bool {
    matches!(c, '„' | '”' | '“' | '‘' | '’' | '«' | '»' | '¡' | '¿' | '…')
}

/// The lower-case base letter of a Latin letter with a diacritic.
fn strip_diacritic(c: char) -> Option<char> {
    let base = match c {
        'ą' | 'Ą' | 'á' | 'Á' | 'à' | 'À' | 'â' | 'Â' | 'ä' | 'Ä' | 'ã' | 'Ã' | 'å' | 'Å' | 'ă'
        | 'Ă' => 'a',
        'ć' | 'Ć' | 'č' | 'Č' | 'ç' | 'Ç' => 'c',
        'ď' | 'Ď' => 'd',
        'ę' | 'Ę' | 'é' | 'É' | 'è' | 'È' | 'ê' | 'Ê' | 'ë' | 'Ë' | 'ě' | 'Ě' => 'e',
        'í' | 'Í' | 'ì' | 'Ì' | 'î' | 'Î' | 'ï' | 'Ï' => 'i',
        'ł' | 'Ł' | 'ľ' | 'Ľ' | 'ĺ' | 'Ĺ' => 'l',
        'ń' | 'Ń' | 'ň' | 'Ň' | 'ñ' | 'Ñ' => 'n',
        'ó' | 'Ó' | 'ò' | 'Ò' | 'ô' | 'Ô' | 'ö' | 'Ö' | 'õ' | 'Õ' | 'ő' | 'Ő' => 'o',
        'ř' | 'Ř' | 'ŕ' | 'Ŕ' => 'r',
        'ś' | 'Ś' | 'š' | 'Š' | 'ș' | 'Ș' | 'ş' | 'Ş' => 's',
        'ť' | 'Ť' | 'ț' | 'Ț' => 't',
        'ú' | 'Ú' | 'ù' | 'Ù' | 'û' | 'Û' | 'ü' | 'Ü' | 'ů' | 'Ů' | 'ű' | 'Ű' => 'u',
        'ý' | 'Ý' | 'ÿ' => 'y',
        'ź' | 'Ź' | 'ż' | 'Ż' | 'ž' | 'Ž' => 'z',
        _ => return None,
    };
    Some(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_message_variants() {
        let k = DEFAULT_STOP_KEYWORDS;
        for yes in [
            "STOP",
            "stop",
            " Stop ",
            "S T O P",
            "Stop!",
            "stop.",
            "\"STOP\"",
            "NIE",
            "nie",
            "Nie.",
            "NIĘ",
            "níe",
            "ni\u{0301}e",
            "\tNIE\n",
            "„nie”",
            "STÓP",
        ] {
            assert!(is_stop_keyword(yes, k), "{yes:?}");
        }
        for no in [
            "",
            "   ",
            "!!",
            "STOPA",
            "nie rozumiem",
            "Nie, dziękuję, zapłacę jutro",
            "stopp",
            "NIEE",
            "tak",
            "STOP 123",
        ] {
            assert!(!is_stop_keyword(no, k), "{no:?}");
        }
    }

    #[test]
    fn custom_keywords_are_folded_too() {
        assert!(is_stop_keyword("wypisz", &["WYPISZ"]));
        assert!(is_stop_keyword("rezygnuję", &["REZYGNUJE"]));
        assert!(is_stop_keyword("REZYGNUJE", &["rezygnuję"]));
        assert!(!is_stop_keyword("stop", &["WYPISZ"]));
        assert!(!is_stop_keyword("stop", &[] as &[&str]));
    }
}
