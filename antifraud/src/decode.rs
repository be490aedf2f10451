//! What a browser makes of a text before it looks at a link's host.
//!
//! Phishing links are disguised with spellings that a person never sees but
//! a browser undoes, so the link scanner must undo them too:
//!
//! 1. **HTML character references** (`&#46;`, `&#x2E;`, `&period;`,
//!    `&shy;` …): an e-mail's HTML is parsed before its `href`s are, so
//!    `https://evil&#46;pl` opens `https://evil.pl`. Numeric references are
//!    decoded in full (with or without the `;`, as HTML does); named ones
//!    from [`named_reference`], a table of the punctuation that can build a
//!    URL, the invisible characters and the Polish letters (the blocklist
//!    has Polish IDNs). An unknown name is left as written.
//! 2. **Percent-encoding** (`%2E`, `%2e`, `%C5%82` as UTF-8): the WHATWG URL
//!    parser percent-decodes a host before mapping it, so
//!    `https://evil%2Epl` opens `https://evil.pl`. One round only, as in a
//!    browser (`%252E` stays `%2E`, which no browser opens as a dot).
//! 3. **Invisible characters**: every Unicode `Default_Ignorable_Code_Point`
//!    (soft hyphen, zero-width space, ZWNJ, ZWJ, word joiner, BOM, bidi
//!    controls, variation selectors, tags …) is removed. UTS #46 removes most
//!    of them from a host itself and refuses a few (a stray ZWJ); removing
//!    all errs towards finding the host. ASCII tab, CR and LF are removed
//!    inside a URL's authority (after `//`), as the URL parser strips them
//!    from a whole URL: `https://ev<LF>il.pl` opens `https://evil.pl`.
//!
//! The decoded text is scanned *in addition to* the text as written (see
//! [`crate::links`]), never instead of it, so decoding may err towards
//! finding more hosts: a host found in either reading is checked. Text that
//! needs no decoding — most SMS — costs one pass over its bytes and no
//! allocation.

use icu_properties::props::DefaultIgnorableCodePoint;
use icu_properties::{CodePointSetData, CodePointSetDataBorrowed};

/// Unicode's `Default_Ignorable_Code_Point` property, from the same ICU data
/// that the `idna` crate maps hosts with (compiled in; a lookup is a binary
/// search over a few dozen ranges).
const DEFAULT_IGNORABLE: CodePointSetDataBorrowed<'static> =
    CodePointSetData::new::<DefaultIgnorableCodePoint>();

/// Whether `c` is a `Default_Ignorable_Code_Point` (none is ASCII).
#[inline]
pub fn is_default_ignorable(c: char) -> bool {
    !c.is_ascii() && DEFAULT_IGNORABLE.contains(c)
}

/// Reusable buffers for [`Decoder::decode`].
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    /// The text after step 1 (character references).
    entities: String,
    /// The text after steps 2 and 3.
    out: String,
}

impl Decoder {
    /// The text as a browser reads it (see the module docs), or `None` when
    /// that is `text` itself.
    pub(crate) fn decode(&mut self, text: &str) -> Option<&str> {
        let entities_changed = decode_references(text, &mut self.entities);
        let mid: &str = if entities_changed {
            &self.entities
        } else {
            text
        };
        if decode_url_layer(mid, &mut self.out) {
            Some(&self.out)
        } else if entities_changed {
            Some(&self.entities)
        } else {
            None
        }
    }
}

/// Step 1: decodes HTML character references of `text` into `out`; returns
/// `false` (and leaves `out` alone) when there was none.
fn decode_references(text: &str, out: &mut String) -> bool {
    let bytes = text.as_bytes();
    let mut started = false;
    // `text[..copied]` is in `out` already (once started).
    let mut copied = 0;
    let mut pos = 0;
    while let Some(off) = bytes[pos..].iter().position(|&b| b == b'&') {
        let at = pos + off;
        match char_reference(&text[at + 1..]) {
            Some((c, len)) => {
                if !started {
                    out.clear();
                    started = true;
                }
                out.push_str(&text[copied..at]);
                out.push(c);
                copied = at + 1 + len;
                pos = copied;
            }
            None => pos = at + 1,
        }
    }
    if started {
        out.push_str(&text[copied..]);
    }
    started
}

/// The character a reference stands for, given the text after its `&`, and
/// how many bytes of that text it spans.
fn char_reference(s: &str) -> Option<(char, usize)> {
    if let Some(rest) = s.strip_prefix('#') {
        let (radix, skip) = match rest.as_bytes().first() {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = s[skip..]
            .bytes()
            .take_while(|b| char::from(*b).is_digit(radix))
            .count();
        if digits == 0 {
            return None;
        }
        let value = s[skip..skip + digits]
            .chars()
            .filter_map(|c| c.to_digit(radix))
            .fold(0u32, |v, d| v.saturating_mul(radix).saturating_add(d));
        let mut len = skip + digits;
        if s[len..].starts_with(';') {
            len += 1;
        }
        // As HTML does: NUL, surrogates and values past U+10FFFF become
        // U+FFFD (which no host contains).
        let c = match value {
            0 => char::REPLACEMENT_CHARACTER,
            v => char::from_u32(v).unwrap_or(char::REPLACEMENT_CHARACTER),
        };
        return Some((c, len));
    }
    let name_len = s.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let name = &s[..name_len];
    if s[name_len..].starts_with(';') {
        if let Some(c) = named_reference(name) {
            return Some((c, name_len + 1));
        }
    }
    // The legacy references HTML also decodes without the `;` (in text; in
    // an attribute only when no letter, digit or `=` follows — decoding them
    // everywhere errs towards finding hosts).
    LEGACY_REFERENCES
        .iter()
        .find(|legacy| name.starts_with(*legacy))
        .and_then(|legacy| Some((named_reference(legacy)?, legacy.len())))
}

/// Named references in [`named_reference`] that HTML decodes without `;`.
const LEGACY_REFERENCES: &[&str] = &[
    "amp", "AMP", "lt", "LT", "gt", "GT", "quot", "QUOT", "nbsp", "shy", "oacute", "Oacute",
];

/// The named character references that matter for finding a link's host
/// (names as in the HTML standard, case-sensitive).
fn named_reference(name: &str) -> Option<char> {
    Some(match name {
        // Punctuation that builds a URL.
        "period" => '.',
        "sol" => '/',
        "bsol" => '\\',
        "colon" => ':',
        "commat" => '@',
        "percnt" => '%',
        "num" => '#',
        "quest" => '?',
        "amp" | "AMP" => '&',
        "equals" => '=',
        "lowbar" | "UnderBar" => '_',
        "hyphen" | "dash" => '\u{2010}',
        "plus" => '+',
        "comma" => ',',
        "semi" => ';',
        "excl" => '!',
        "dollar" => '$',
        "ast" | "midast" => '*',
        "lpar" => '(',
        "rpar" => ')',
        "lsqb" | "lbrack" => '[',
        "rsqb" | "rbrack" => ']',
        "lcub" | "lbrace" => '{',
        "rcub" | "rbrace" => '}',
        "lt" | "LT" => '<',
        "gt" | "GT" => '>',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "Tab" => '\t',
        "NewLine" => '\n',
        "nbsp" | "NonBreakingSpace" => '\u{A0}',
        // Invisible characters (removed again in step 3).
        "shy" => '\u{AD}',
        "ZeroWidthSpace"
        | "NegativeVeryThinSpace"
        | "NegativeThinSpace"
        | "NegativeMediumSpace"
        | "NegativeThickSpace" => '\u{200B}',
        "zwnj" => '\u{200C}',
        "zwj" => '\u{200D}',
        "lrm" => '\u{200E}',
        "rlm" => '\u{200F}',
        "NoBreak" => '\u{2060}',
        "af" | "ApplyFunction" => '\u{2061}',
        "it" | "InvisibleTimes" => '\u{2062}',
        "ic" | "InvisibleComma" => '\u{2063}',
        // Polish letters (IDN entries on the blocklist).
        "aogon" => 'ą',
        "Aogon" => 'Ą',
        "cacute" => 'ć',
        "Cacute" => 'Ć',
        "eogon" => 'ę',
        "Eogon" => 'Ę',
        "lstrok" => 'ł',
        "Lstrok" => 'Ł',
        "nacute" => 'ń',
        "Nacute" => 'Ń',
        "oacute" => 'ó',
        "Oacute" => 'Ó',
        "sacute" => 'ś',
        "Sacute" => 'Ś',
        "zacute" => 'ź',
        "Zacute" => 'Ź',
        "zdot" => 'ż',
        "Zdot" => 'Ż',
        _ => return None,
    })
}

/// Steps 2 and 3: percent-decoding and removing invisible characters, from
/// `text` into `out`; returns `false` (and leaves `out` alone) when nothing
/// changed.
fn decode_url_layer(text: &str, out: &mut String) -> bool {
    let mut w = Writer {
        text,
        out,
        started: false,
        authority: false,
        prev: '\0',
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let Some((c, len)) = percent_char(&bytes[i..]) {
                w.change_at(i);
                w.put(c);
                i += len;
                continue;
            }
        }
        let c = if b.is_ascii() {
            char::from(b)
        } else {
            // `i` is a char boundary: it only ever advances by whole chars.
            text[i..]
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        if w.drops(c) {
            w.change_at(i);
        } else {
            w.put(c);
        }
        i += c.len_utf8();
    }
    w.started
}

/// Writes the decoded text lazily: nothing until the first change, then the
/// unchanged prefix and everything after it.
struct Writer<'t, 'o> {
    text: &'t str,
    out: &'o mut String,
    started: bool,
    /// Inside a URL authority: after `//` (or `:/`, or backslashes), until
    /// a character that ends it.
    authority: bool,
    /// The last character written (or that would have been).
    prev: char,
}

impl Writer<'_, '_> {
    /// The input differs from the output from byte `i` of the input on.
    fn change_at(&mut self, i: usize) {
        if !self.started {
            self.out.clear();
            self.out.push_str(&self.text[..i]);
            self.started = true;
        }
    }

    /// Whether `c` is removed here.
    fn drops(&self, c: char) -> bool {
        is_default_ignorable(c) || (self.authority && matches!(c, '\t' | '\n' | '\r'))
    }

    /// Writes `c` unless it is removed, and follows the URL structure.
    fn put(&mut self, c: char) {
        if self.drops(c) {
            return;
        }
        if self.started {
            self.out.push(c);
        }
        match c {
            '/' | '\\' => self.authority = matches!(self.prev, ':' | '/' | '\\'),
            '?' | '#' | '"' | '\'' | '<' | '>' | '`' => self.authority = false,
            c if c.is_whitespace() => self.authority = false,
            _ => {}
        }
        self.prev = c;
    }
}

/// The character that the percent-encoded UTF-8 at the start of `bytes`
/// (`%2E`, `%C5%82`) stands for, and how many bytes it spans; `None` when
/// `bytes` does not start with a whole, valid sequence.
pub(crate) fn percent_char(bytes: &[u8]) -> Option<(char, usize)> {
    let first = percent_byte(bytes, 0)?;
    if first.is_ascii() {
        return Some((char::from(first), 3));
    }
    let len = match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let mut utf8 = [first, 0, 0, 0];
    for (k, slot) in utf8.iter_mut().enumerate().take(len).skip(1) {
        *slot = percent_byte(bytes, 3 * k)?;
    }
    let c = std::str::from_utf8(&utf8[..len]).ok()?.chars().next()?;
    Some((c, 3 * len))
}

/// The byte `%XX` at `bytes[at..]` encodes.
fn percent_byte(bytes: &[u8], at: usize) -> Option<u8> {
    match bytes.get(at..at + 3)? {
        [b'%', hi, lo] => {
            let hi = char::from(*hi).to_digit(16)?;
            let lo = char::from(*lo).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Option<String> {
        Decoder::default().decode(text).map(str::to_owned)
    }

    #[test]
    fn plain_text_needs_no_decoding() {
        for text in [
            "",
            "Dzień dobry, zaległość 120,50 zł. Zapłać: https://pay.acme.pl/f/1",
            "Rabat 50% & więcej",
            "100%",
            "Kowalski & Syn; &unknown; &#; &#x;",
            "linia 1\nlinia 2\thttps://acme.pl/x",
            "żółć ĄĘ — “cudzysłów” €",
        ] {
            assert_eq!(decode(text), None, "{text:?}");
        }
    }

    #[test]
    fn decoding_table() {
        let cases: &[(&str, &str)] = &[
            // Character references: numeric, hex, named, without `;`.
            ("evil&#46;pl", "evil.pl"),
            ("evil&#x2E;pl", "evil.pl"),
            ("evil&#x2e;pl", "evil.pl"),
            ("evil&#X2e;pl", "evil.pl"),
            ("evil&#0046;pl", "evil.pl"),
            ("evil&#46pl", "evil.pl"),
            ("evil&period;pl", "evil.pl"),
            ("https&colon;&sol;&sol;evil.pl", "https://evil.pl"),
            ("a=1&amp;b=2", "a=1&b=2"),
            ("a=1&ampb=2", "a=1&b=2"),
            ("zap&lstrok;a&cacute;.pl", "zapłać.pl"),
            // Decoded once, as an HTML parser does.
            ("&amp;#46;", "&#46;"),
            // Then percent-decoding, again once.
            ("evil%2Epl", "evil.pl"),
            ("evil%2epl", "evil.pl"),
            ("%65vil.pl", "evil.pl"),
            ("zap%C5%82a%C4%87.pl", "zapłać.pl"),
            ("evil%252Epl", "evil%2Epl"),
            ("evil&#37;2Epl", "evil.pl"),
            // Invalid sequences stay as written.
            ("a%2Gb %C5 %FFx %2Epl", "a%2Gb %C5 %FFx .pl"),
            // Invisible characters, however written.
            ("ev\u{AD}il.pl", "evil.pl"),
            ("bit\u{200B}.ly", "bit.ly"),
            ("e\u{200C}v\u{200D}i\u{2060}l\u{FEFF}.\u{FE0F}pl", "evil.pl"),
            ("evil\u{202E}.pl\u{E0041}", "evil.pl"),
            ("ev&shy;il.pl", "evil.pl"),
            ("ev&shyil.pl", "evil.pl"),
            ("ev&ZeroWidthSpace;il.pl", "evil.pl"),
            ("ev&#x200b;il.pl", "evil.pl"),
            ("ev%C2%ADil.pl", "evil.pl"),
            ("ev%E2%80%8Bil.pl", "evil.pl"),
            // Tab and newline inside an authority, not elsewhere.
            ("https://ev\nil.pl/a\nb", "https://evil.pl/a\nb"),
            ("https://ev\r\n\til.pl ok\nnext", "https://evil.pl ok\nnext"),
            ("x https:/ev&#10;il.pl", "x https:/evil.pl"),
            ("<a href=\"//ev\nil.pl\">\nx", "<a href=\"//evil.pl\">\nx"),
        ];
        for (text, want) in cases {
            assert_eq!(decode(text).as_deref(), Some(*want), "{text:?}");
        }
    }

    #[test]
    fn default_ignorables_come_from_unicode() {
        for c in [
            '\u{AD}',
            '\u{34F}',
            '\u{61C}',
            '\u{115F}',
            '\u{180B}',
            '\u{200B}',
            '\u{200F}',
            '\u{202A}',
            '\u{2060}',
            '\u{2066}',
            '\u{3164}',
            '\u{FE00}',
            '\u{FEFF}',
            '\u{FFA0}',
            '\u{1BCA0}',
            '\u{1D173}',
            '\u{E0001}',
            '\u{E0100}',
        ] {
            assert!(is_default_ignorable(c), "U+{:04X}", u32::from(c));
        }
        for c in [
            'a', '.', ' ', '\t', '\u{A0}', 'ł', '\u{2010}', '\u{3002}', '\u{FF0E}',
        ] {
            assert!(!is_default_ignorable(c), "U+{:04X}", u32::from(c));
        }
    }
}
