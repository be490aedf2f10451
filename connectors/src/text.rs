//! SMS text encoding: which alphabet a text goes out in, what it costs in
//! segments, and where it is cut into parts.
//!
//! This module owns the rules that the HTTP API (segment count returned at
//! acceptance, i.e. what the customer is billed) and the SMPP connector (the
//! actual split) must agree on. Both go through the same width functions and
//! the same greedy packer, so the count at acceptance is the number of parts
//! later submitted.
//!
//! # Encodings
//!
//! * [`Encoding::Gsm7`]: the GSM 03.38 / 3GPP TS 23.038 default alphabet plus
//!   its extension table (`^ { } \ [ ~ ] | €` and form feed). An extension
//!   character is sent as the escape `0x1B` followed by its code, so it costs
//!   two septets. No national language shift tables are used.
//! * [`Encoding::Ucs2`]: UTF-16BE. SMS calls it UCS-2 (data_coding 8), but
//!   handsets and SMSCs pass surrogate pairs through, so characters outside the
//!   BMP (emoji) are sent as two UTF-16 code units.
//!
//! A text is GSM-7 when every character is in the default or extension table,
//! otherwise UCS-2. [`transliterate`] can bring common Polish texts back into
//! GSM-7; whether to apply it is the caller's policy.
//!
//! # Segments
//!
//! * A single message holds 160 septets (GSM-7) or 70 UTF-16 units (UCS-2):
//!   140 octets of `short_message`.
//! * A longer text is concatenated; each part holds what [`Concat`] leaves
//!   after the concatenation header: 153/67 with an 8-bit-reference UDH (the
//!   default, used by [`analyze`]), 152/66 with a 16-bit-reference UDH,
//!   160/70 with SMPP SAR TLVs, and [`Concat::Payload`] is never split.
//! * An escape pair (`0x1B` + code) and a surrogate pair are never cut across
//!   two parts: a handset would render both halves as garbage. Parts are
//!   therefore packed greedily, character by character, and the count is *not*
//!   `ceil(units / capacity)`: 152 × `a` + `€` + 152 × `a` is 306 septets,
//!   which division would put in 2 parts, but the `€` cannot start at septet
//!   153, so it takes 3.
//! * Empty text is 0 chars, 0 units and **0 segments** and splits into no parts;
//!   the API rejects empty text before it gets here.
//!
//! Parts are cut at character boundaries, not grapheme clusters: an emoji with
//! a skin-tone modifier or a ZWJ sequence may be cut between its code points,
//! which handsets show as the separate symbols. Doing better needs Unicode
//! segmentation data this crate does not carry. Limits on the number of parts
//! (255 with a UDH reference) are the caller's to enforce.
//!
//! [`analyze`] runs for every accepted message, so it makes one pass over the
//! characters and does not allocate.

use std::fmt;
use std::str::Chars;

/// The alphabet a text is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet and extension table (data_coding 0).
    Gsm7,
    /// UTF-16BE, surrogate pairs allowed (data_coding 8).
    Ucs2,
}

impl Encoding {
    /// Stable lower-case name, used in API responses and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Units that fit one unconcatenated message (140 octets): 160 septets or
    /// 70 UTF-16 code units.
    pub const fn single_capacity(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a long text is concatenated; decides what each part can hold. Written
/// in the config as `udh8`, `udh16`, `sar` or `payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Concat {
    /// UDH with an 8-bit reference (IEI 0x00, 6 octets): 134 octets left,
    /// 153 septets (one fill bit) or 67 UTF-16 units per part.
    Udh8,
    /// UDH with a 16-bit reference (IEI 0x08, 7 octets): 133 octets left,
    /// 152 septets or 66 UTF-16 units per part.
    Udh16,
    /// SMPP `sar_*` TLVs carry the concatenation data outside `short_message`,
    /// so each part keeps all 140 octets: 160 septets or 70 units.
    Sar,
    /// The whole text goes in the `message_payload` TLV as one part; the SMSC
    /// splits it (and bills the segments [`analyze`] counted).
    Payload,
}

impl Concat {
    /// As written in the config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Concat::Udh8 => "udh8",
            Concat::Udh16 => "udh16",
            Concat::Sar => "sar",
            Concat::Payload => "payload",
        }
    }

    /// Units one part of a concatenated message holds; `None` for
    /// [`Concat::Payload`], which is never split.
    pub const fn part_capacity(self, encoding: Encoding) -> Option<usize> {
        match (self, encoding) {
            (Concat::Udh8, Encoding::Gsm7) => Some(153),
            (Concat::Udh8, Encoding::Ucs2) => Some(67),
            (Concat::Udh16, Encoding::Gsm7) => Some(152),
            (Concat::Udh16, Encoding::Ucs2) => Some(66),
            // The SMSC turns the SAR TLVs into a 6-byte UDH on the air interface, so
            // a part must leave room for it, as with `udh8`.
            (Concat::Sar, Encoding::Gsm7) => Some(153),
            (Concat::Sar, Encoding::Ucs2) => Some(67),
            (Concat::Payload, _) => None,
        }
    }
}

/// What a text costs as an SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextInfo {
    /// GSM-7 when every character is in the default or extension table.
    pub encoding: Encoding,
    /// Unicode scalar values.
    pub chars: usize,
    /// GSM-7 septets (escapes included) or UTF-16 code units.
    pub units: usize,
    /// Parts with [`Concat::Udh8`]; 0 for empty text.
    pub segments: u32,
}

/// Encoding, length and segment count (with [`Concat::Udh8`]) of `text`.
///
/// One pass over the characters, no allocation. While the text is GSM-7 only
/// the septet packer runs; at the first character outside the alphabet the
/// UTF-16 packer is started from the prefix (all of whose characters are in
/// the BMP, hence one unit each) and takes over.
pub fn analyze(text: &str) -> TextInfo {
    let mut gsm = Packer::new(Encoding::Gsm7, Concat::Udh8);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match gsm7_septet(c) {
            Some(septet) => {
                gsm.push(septet.width());
            }
            // Every GSM-7 character is one char, so `gsm.chars` is the prefix length.
            None => return analyze_ucs2(gsm.chars, c, chars),
        }
    }
    TextInfo {
        encoding: Encoding::Gsm7,
        chars: gsm.chars,
        units: gsm.total,
        segments: gsm.segments(),
    }
}

/// The UCS-2 tail of [`analyze`]: `prefix` GSM-7 characters seen, then
/// `first` (not GSM-7), then `rest`.
fn analyze_ucs2(prefix: usize, first: char, rest: Chars<'_>) -> TextInfo {
    let mut ucs = Packer::new(Encoding::Ucs2, Concat::Udh8);
    ucs.prefill_single_units(prefix);
    ucs.push(first.len_utf16());
    for c in rest {
        ucs.push(c.len_utf16());
    }
    TextInfo {
        encoding: Encoding::Ucs2,
        chars: ucs.chars,
        units: ucs.total,
        segments: ucs.segments(),
    }
}

/// True when every character is in the GSM-7 default or extension table
/// (true for empty text).
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm7_septet(c).is_some())
}

/// Length of `text` in `encoding`'s units: septets (escapes count 2) or UTF-16
/// code units.
///
/// With [`Encoding::Gsm7`] a character outside the alphabet counts as one
/// septet, the width of the `?` a lossy encoder would put in its place; pick the
/// encoding with [`analyze`] to avoid the question.
pub fn units(text: &str, encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gsm7 => text.chars().map(gsm7_width).sum(),
        Encoding::Ucs2 => text.chars().map(char::len_utf16).sum(),
    }
}

/// Number of parts [`split`] would return, without allocating.
///
/// `count_segments(t, analyze(t).encoding, Concat::Udh8) == analyze(t).segments`.
pub fn count_segments(text: &str, encoding: Encoding, concat: Concat) -> u32 {
    let mut packer = Packer::new(encoding, concat);
    for c in text.chars() {
        packer.push(char_width(c, encoding));
    }
    packer.segments()
}

/// `text` cut into the parts of a concatenated message, as text.
///
/// One part when the text fits a single message (or with
/// [`Concat::Payload`]); none for empty text. Parts are packed greedily and
/// never cut an escape pair or a surrogate pair. Concatenating the parts gives
/// `text` back. See [`units`] for GSM-7 with characters outside the alphabet.
pub fn split(text: &str, encoding: Encoding, concat: Concat) -> Vec<String> {
    parts(text, encoding, concat).map(str::to_owned).collect()
}

/// Like [`split`], but borrows the parts from `text`.
pub fn parts(text: &str, encoding: Encoding, concat: Concat) -> Parts<'_> {
    let capacity = match concat.part_capacity(encoding) {
        Some(part) if units(text, encoding) > encoding.single_capacity() => part,
        // Fits one message, or never split: the first part takes everything.
        _ => usize::MAX,
    };
    Parts {
        rest: text,
        encoding,
        capacity,
    }
}

/// Iterator over the parts of a text; see [`parts`].
#[derive(Debug, Clone)]
pub struct Parts<'a> {
    rest: &'a str,
    encoding: Encoding,
    capacity: usize,
}

impl<'a> Iterator for Parts<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let mut fill = 0usize;
        let mut end = self.rest.len();
        for (i, c) in self.rest.char_indices() {
            let width = char_width(c, self.encoding);
            // `i > 0`: a part always takes at least one character, so this
            // cannot loop forever even if a capacity were ever below 2.
            if i > 0 && width > self.capacity.saturating_sub(fill) {
                end = i;
                break;
            }
            fill = fill.saturating_add(width);
        }
        // `end` is a char boundary (from `char_indices`) or the length.
        let (part, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(part)
    }
}

/// Greedy packing of characters of known width into parts.
///
/// Counts both the single-message and the concatenated layout in one pass,
/// because which one applies is only known once the total is.
#[derive(Debug, Clone, Copy)]
struct Packer {
    single: usize,
    part: usize,
    chars: usize,
    total: usize,
    /// Units in the current (last) part of the concatenated layout.
    fill: usize,
    /// Parts in the concatenated layout, the current one included.
    parts: u32,
}

impl Packer {
    fn new(encoding: Encoding, concat: Concat) -> Self {
        Packer {
            single: encoding.single_capacity(),
            part: concat.part_capacity(encoding).unwrap_or(usize::MAX),
            chars: 0,
            total: 0,
            fill: 0,
            parts: 1,
        }
    }

    /// Adds one character `width` units wide (1 or 2).
    #[inline(always)]
    fn push(&mut self, width: usize) {
        self.chars += 1;
        self.total = self.total.saturating_add(width);
        // `fill <= part` always holds, so the subtraction cannot wrap.
        if width > self.part - self.fill {
            self.parts = self.parts.saturating_add(1);
            self.fill = width;
        } else {
            self.fill += width;
        }
    }

    /// State after pushing `n` one-unit characters onto an empty packer,
    /// computed in O(1).
    fn prefill_single_units(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let full = (n - 1) / self.part;
        self.chars = n;
        self.total = n;
        self.fill = n - full * self.part;
        self.parts = u32::try_from(full).map_or(u32::MAX, |f| f.saturating_add(1));
    }

    fn segments(&self) -> u32 {
        match self.total {
            0 => 0,
            t if t <= self.single => 1,
            _ => self.parts,
        }
    }
}

/// Width of `c` in `encoding`'s units; see [`units`] for non-GSM-7 characters.
#[inline]
fn char_width(c: char, encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gsm7 => gsm7_width(c),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

#[inline]
fn gsm7_width(c: char) -> usize {
    gsm7_septet(c).map_or(1, Septet::width)
}

// --- GSM 03.38 tables -------------------------------------------------------

/// The escape to the extension table.
const ESC: u8 = 0x1B;
const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// GSM 03.38 default alphabet, indexed by septet. Position 0x1B is the escape;
/// the space there is what a receiver shows for ESC ESC (reserved for a further
/// extension table), and it is skipped when the encoding table is built.
/// Note 0x5F is '§' and 0x60 is '¿': there is no backtick in the alphabet.
const GSM7_DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', // 0x00
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', // 0x10
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', // 0x20
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', // 0x30
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', // 0x40
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', // 0x50
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', // 0x60
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', // 0x70
];

/// GSM 03.38 extension table: (code after ESC, character).
const GSM7_EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How one character is sent in GSM-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Septet {
    /// One septet of the default alphabet.
    Basic(u8),
    /// ESC followed by this code of the extension table: two septets.
    Extended(u8),
}

impl Septet {
    #[inline(always)]
    const fn width(self) -> usize {
        match self {
            Septet::Basic(_) => 1,
            Septet::Extended(_) => 2,
        }
    }
}

/// Encoding of the ASCII range, built from the tables above at compile time so
/// the two cannot disagree; most texts never leave it.
const GSM7_ASCII: [Option<Septet>; 128] = {
    let mut table = [None; 128];
    let mut code = 0;
    while code < GSM7_DEFAULT.len() {
        let c = GSM7_DEFAULT[code] as usize;
        if code != ESC as usize && c < 128 {
            table[c] = Some(Septet::Basic(code as u8));
        }
        code += 1;
    }
    let mut i = 0;
    while i < GSM7_EXTENSION.len() {
        let (code, c) = GSM7_EXTENSION[i];
        if (c as usize) < 128 {
            table[c as usize] = Some(Septet::Extended(code));
        }
        i += 1;
    }
    table
};

/// GSM-7 encoding of `c`, `None` when it is in neither table.
#[inline]
fn gsm7_septet(c: char) -> Option<Septet> {
    if let Some(&septet) = GSM7_ASCII.get(c as usize) {
        return septet;
    }
    // The non-ASCII rest of the default alphabet and '€'; kept in step with
    // GSM7_DEFAULT / GSM7_EXTENSION by the `tables_agree` test.
    let code = match c {
        '£' => 0x01,
        '¥' => 0x03,
        'è' => 0x04,
        'é' => 0x05,
        'ù' => 0x06,
        'ì' => 0x07,
        'ò' => 0x08,
        'Ç' => 0x09,
        'Ø' => 0x0B,
        'ø' => 0x0C,
        'Å' => 0x0E,
        'å' => 0x0F,
        'Δ' => 0x10, // U+0394 GREEK CAPITAL LETTER DELTA
        'Φ' => 0x12,
        'Γ' => 0x13,
        'Λ' => 0x14,
        'Ω' => 0x15, // U+03A9, not the ohm sign
        'Π' => 0x16,
        'Ψ' => 0x17,
        'Σ' => 0x18,
        'Θ' => 0x19,
        'Ξ' => 0x1A,
        'Æ' => 0x1C,
        'æ' => 0x1D,
        'ß' => 0x1E,
        'É' => 0x1F,
        '¤' => 0x24,
        '¡' => 0x40,
        'Ä' => 0x5B,
        'Ö' => 0x5C,
        'Ñ' => 0x5D,
        'Ü' => 0x5E,
        '§' => 0x5F,
        '¿' => 0x60,
        'ä' => 0x7B,
        'ö' => 0x7C,
        'ñ' => 0x7D,
        'ü' => 0x7E,
        'à' => 0x7F,
        '€' => return Some(Septet::Extended(0x65)),
        _ => return None,
    };
    Some(Septet::Basic(code))
}

/// Character an extension code stands for. Codes the table does not define
/// show as the default-alphabet character of the same code, as TS 23.038
/// tells receivers to do; ESC ESC (a further extension table, none defined)
/// shows as a space.
fn gsm7_extension_char(code: u8) -> char {
    if let Some(&(_, c)) = GSM7_EXTENSION.iter().find(|(k, _)| *k == code) {
        return c;
    }
    if code == ESC {
        return ' ';
    }
    GSM7_DEFAULT
        .get(usize::from(code))
        .copied()
        .unwrap_or(REPLACEMENT)
}

// --- Encoders and decoders --------------------------------------------------

/// `text` in the GSM-7 default alphabet, one septet per byte (not packed);
/// extension characters as `0x1B` + code. `None` if any character is in
/// neither table.
pub fn encode_gsm7_unpacked(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match gsm7_septet(c)? {
            Septet::Basic(code) => out.push(code),
            Septet::Extended(code) => out.extend_from_slice(&[ESC, code]),
        }
    }
    Some(out)
}

/// `text` as UTF-16BE; characters outside the BMP become surrogate pairs.
pub fn encode_ucs2(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out
}

/// `text` as ISO-8859-1 (data_coding 3), `None` if any character is above
/// U+00FF.
pub fn encode_latin1(text: &str) -> Option<Vec<u8>> {
    text.chars().map(|c| u8::try_from(c).ok()).collect()
}

/// Unpacked GSM-7 (one septet per byte) to text, leniently: a byte above 0x7F
/// or a trailing lone escape becomes U+FFFD; an undefined extension code shows
/// as its default-alphabet character (TS 23.038).
pub fn decode_gsm7_unpacked(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte == ESC {
            match rest.split_first() {
                Some((&code, tail)) if code < 0x80 => {
                    rest = tail;
                    out.push(gsm7_extension_char(code));
                }
                // Nothing valid follows: the escape alone is the error; the
                // next byte, if any, is decoded on its own.
                _ => out.push(REPLACEMENT),
            }
        } else {
            out.push(
                GSM7_DEFAULT
                    .get(usize::from(byte))
                    .copied()
                    .unwrap_or(REPLACEMENT),
            );
        }
    }
    out
}

/// UTF-16BE to text, leniently: unpaired surrogates and a trailing odd byte
/// become U+FFFD.
pub fn decode_ucs2(bytes: &[u8]) -> String {
    let chunks = bytes.chunks_exact(2);
    let odd = !chunks.remainder().is_empty();
    let units = chunks.map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    let mut out: String = char::decode_utf16(units)
        .map(|unit| unit.unwrap_or(REPLACEMENT))
        .collect();
    if odd {
        out.push(REPLACEMENT);
    }
    out
}

// --- Transliteration ---------------------------------------------------------

/// `text` with Polish diacritics and common typographic characters replaced by
/// GSM-7 look-alikes; `None` when nothing needed replacing.
///
/// Replaced: `ą ć ę ł ń ó ś ź ż` (and capitals) by the bare letter; the quotes
/// `‘ ’ ‚ ‛` by `'` and `“ ” „ ‟ « »` by `"`; the dashes `‐ ‑ ‒ – — ― −` by `-`;
/// `…` by `...`; no-break, narrow no-break and thin spaces by a space. Note that
/// `ó` is not in GSM-7 (while `é`, `ö`, `ò` are, and are left alone). The
/// result is not necessarily GSM-7 (other characters may remain): check with
/// [`is_gsm7`] or [`analyze`].
pub fn transliterate(text: &str) -> Option<String> {
    let (first, _) = text
        .char_indices()
        .find(|&(_, c)| transliteration(c).is_some())?;
    let (head, tail) = text.split_at(first);
    let mut out = String::with_capacity(text.len());
    out.push_str(head);
    for c in tail.chars() {
        match transliteration(c) {
            Some(replacement) => out.push_str(replacement),
            None => out.push(c),
        }
    }
    Some(out)
}

fn transliteration(c: char) -> Option<&'static str> {
    Some(match c {
        'ą' => "a",
        'ć' => "c",
        'ę' => "e",
        'ł' => "l",
        'ń' => "n",
        'ó' => "o",
        'ś' => "s",
        'ź' | 'ż' => "z",
        'Ą' => "A",
        'Ć' => "C",
        'Ę' => "E",
        'Ł' => "L",
        'Ń' => "N",
        'Ó' => "O",
        'Ś' => "S",
        'Ź' | 'Ż' => "Z",
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' => "'",
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '«' | '»' => "\"",
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
        | '\u{2212}' => "-",
        '\u{2026}' => "...",
        '\u{00A0}' | '\u{202F}' | '\u{2009}' => " ",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(s: &str, n: usize) -> String {
        s.repeat(n)
    }

    #[test]
    fn encoding_names() {
        assert_eq!(Encoding::Gsm7.as_str(), "gsm7");
        assert_eq!(Encoding::Ucs2.as_str(), "ucs2");
        assert_eq!(Encoding::Ucs2.to_string(), "ucs2");
    }

    #[test]
    fn table_cases() {
        use Encoding::{Gsm7, Ucs2};
        const EMOJI: &str = "\u{1F600}";
        // (text, encoding, chars, units, segments)
        let cases: Vec<(String, Encoding, usize, usize, u32)> = vec![
            (String::new(), Gsm7, 0, 0, 0),
            (rep("a", 160), Gsm7, 160, 160, 1),
            (rep("a", 161), Gsm7, 161, 161, 2),
            (rep("a", 306), Gsm7, 306, 306, 2),
            (rep("a", 307), Gsm7, 307, 307, 3),
            (rep("€", 80), Gsm7, 80, 160, 1),
            (rep("€", 81), Gsm7, 81, 162, 2),
            (rep("ł", 70), Ucs2, 70, 70, 1),
            (rep("ł", 71), Ucs2, 71, 71, 2),
            (rep("ł", 134), Ucs2, 134, 134, 2),
            (rep("ł", 135), Ucs2, 135, 135, 3),
            (rep(EMOJI, 35), Ucs2, 35, 70, 1),
            (rep(EMOJI, 36), Ucs2, 36, 72, 2),
            ("Zażółć gęślą jaźń".into(), Ucs2, 17, 17, 1),
            // Greedy, not division: the '€' cannot start at septet 153.
            (
                format!("{}€{}", rep("a", 152), rep("a", 152)),
                Gsm7,
                305,
                306,
                3,
            ),
            (
                format!("{}€{}", rep("a", 152), rep("a", 151)),
                Gsm7,
                304,
                305,
                2,
            ),
            // Same for a surrogate pair at unit 67.
            (
                format!("{}{EMOJI}{}", rep("ł", 66), rep("ł", 66)),
                Ucs2,
                133,
                134,
                3,
            ),
            // One non-GSM character late in a long GSM text switches all of it.
            (format!("{}ł", rep("a", 200)), Ucs2, 201, 201, 3),
            (format!("{}ł", rep("a", 201)), Ucs2, 202, 202, 4),
            (format!("{}ł", rep("a", 67)), Ucs2, 68, 68, 1),
            (format!("{}ł", rep("a", 69)), Ucs2, 70, 70, 1),
            (format!("{}ł", rep("a", 70)), Ucs2, 71, 71, 2),
            // Plain ASCII outside GSM-7.
            ("`".into(), Ucs2, 1, 1, 1),
            ("é ö ñ ü à Ç Δ Ω §¿¡ ¤ £¥ {}[]~|^\\".into(), Gsm7, 33, 41, 1),
        ];
        for (text, encoding, chars, units, segments) in cases {
            let info = analyze(&text);
            let want = TextInfo {
                encoding,
                chars,
                units,
                segments,
            };
            assert_eq!(info, want, "text {text:?}");
            assert_eq!(split(&text, encoding, Concat::Udh8).len() as u32, segments);
            assert_eq!(is_gsm7(&text), encoding == Gsm7);
        }
    }

    #[test]
    fn split_examples() {
        let text = format!("{}€{}", rep("a", 152), rep("a", 152));
        assert_eq!(
            split(&text, Encoding::Gsm7, Concat::Udh8),
            vec![rep("a", 152), format!("€{}", rep("a", 151)), "a".to_owned()]
        );
        assert_eq!(split(&text, Encoding::Gsm7, Concat::Udh16).len(), 3);
        assert_eq!(split(&text, Encoding::Gsm7, Concat::Sar).len(), 3);
        assert_eq!(
            split(&text, Encoding::Gsm7, Concat::Payload),
            vec![text.clone()]
        );
        assert!(split("", Encoding::Gsm7, Concat::Payload).is_empty());
        assert!(split("", Encoding::Ucs2, Concat::Udh8).is_empty());

        // 36 emoji: 33 + 3, and no part starts with a low surrogate.
        let emoji = rep("\u{1F389}", 36);
        let parts = split(&emoji, Encoding::Ucs2, Concat::Udh8);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].chars().count(), 33);
        assert_eq!(parts[1].chars().count(), 3);
        for part in &parts {
            let first = encode_ucs2(part);
            let unit = u16::from_be_bytes([first[0], first[1]]);
            assert!(!(0xDC00..=0xDFFF).contains(&unit));
            assert!(encode_ucs2(part).len() / 2 <= 67);
        }

        // Udh16 and SAR capacities.
        assert_eq!(
            split(&rep("a", 305), Encoding::Gsm7, Concat::Udh16).len(),
            3
        );
        assert_eq!(
            split(&rep("a", 304), Encoding::Gsm7, Concat::Udh16).len(),
            2
        );
        assert_eq!(
            split(&rep("ł", 132), Encoding::Ucs2, Concat::Udh16).len(),
            2
        );
        assert_eq!(
            split(&rep("ł", 133), Encoding::Ucs2, Concat::Udh16).len(),
            3
        );
        // SAR parts leave room for the UDH the SMSC adds: the same count as udh8.
        assert_eq!(split(&rep("a", 306), Encoding::Gsm7, Concat::Sar).len(), 2);
        assert_eq!(split(&rep("a", 307), Encoding::Gsm7, Concat::Sar).len(), 3);
        assert_eq!(split(&rep("ł", 134), Encoding::Ucs2, Concat::Sar).len(), 2);
        assert_eq!(split(&rep("ł", 135), Encoding::Ucs2, Concat::Sar).len(), 3);

        // GSM-7 forced on a non-GSM text: the stranger counts one septet.
        assert_eq!(units("ałb", Encoding::Gsm7), 3);
        assert_eq!(split(&rep("ł", 161), Encoding::Gsm7, Concat::Udh8).len(), 2);
        // UCS-2 forced on a GSM text: escapes are just characters.
        assert_eq!(split(&rep("€", 70), Encoding::Ucs2, Concat::Udh8).len(), 1);
    }

    #[test]
    fn gsm7_encoding() {
        assert_eq!(encode_gsm7_unpacked("@£$"), Some(vec![0x00, 0x01, 0x02]));
        assert_eq!(encode_gsm7_unpacked("€"), Some(vec![0x1B, 0x65]));
        assert_eq!(encode_gsm7_unpacked("§"), Some(vec![0x5F]));
        assert_eq!(
            encode_gsm7_unpacked("¿_¥Δ"),
            Some(vec![0x60, 0x11, 0x03, 0x10])
        );
        assert_eq!(
            encode_gsm7_unpacked("\n\r\u{0C}"),
            Some(vec![0x0A, 0x0D, 0x1B, 0x0A])
        );
        assert_eq!(
            encode_gsm7_unpacked("Aa ü"),
            Some(vec![0x41, 0x61, 0x20, 0x7E])
        );
        assert_eq!(encode_gsm7_unpacked(""), Some(vec![]));
        assert_eq!(encode_gsm7_unpacked("`"), None);
        assert_eq!(encode_gsm7_unpacked("ó"), None);
        assert_eq!(encode_gsm7_unpacked("a\u{1F600}"), None);
        // Look-alikes are not the Greek letters of the alphabet.
        assert_eq!(encode_gsm7_unpacked("\u{2206}"), None); // INCREMENT
        assert_eq!(encode_gsm7_unpacked("\u{2126}"), None); // OHM SIGN
        assert_eq!(
            encode_gsm7_unpacked("\u{0394}\u{03A9}"),
            Some(vec![0x10, 0x15])
        );
    }

    /// The const ASCII table, the `match` and the decode tables agree, and
    /// nothing outside them encodes.
    #[test]
    fn tables_agree() {
        for (code, &c) in GSM7_DEFAULT.iter().enumerate() {
            if code == usize::from(ESC) {
                continue;
            }
            assert_eq!(gsm7_septet(c), Some(Septet::Basic(code as u8)), "{c:?}");
        }
        for &(code, c) in &GSM7_EXTENSION {
            assert_eq!(gsm7_septet(c), Some(Septet::Extended(code)), "{c:?}");
            assert_eq!(gsm7_extension_char(code), c);
        }
        let mut count = 0;
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            match gsm7_septet(c) {
                Some(Septet::Basic(code)) => {
                    assert_eq!(GSM7_DEFAULT[usize::from(code)], c);
                    count += 1;
                }
                Some(Septet::Extended(code)) => {
                    assert_eq!(gsm7_extension_char(code), c);
                    count += 1;
                }
                None => {}
            }
        }
        assert_eq!(count, 127 + 10);
    }

    #[test]
    fn round_trips() {
        let gsm: String = GSM7_DEFAULT
            .iter()
            .enumerate()
            .filter(|&(code, _)| code != usize::from(ESC))
            .map(|(_, &c)| c)
            .chain(GSM7_EXTENSION.iter().map(|&(_, c)| c))
            .collect();
        let bytes = encode_gsm7_unpacked(&gsm).unwrap();
        assert_eq!(bytes.len(), 127 + 20);
        assert_eq!(decode_gsm7_unpacked(&bytes), gsm);

        for text in [
            "",
            "Zażółć gęślą jaźń",
            "中文 \u{1F600}\u{1F389} €",
            "\u{10FFFF}",
        ] {
            assert_eq!(decode_ucs2(&encode_ucs2(text)), text);
        }
        assert_eq!(
            encode_ucs2("a\u{1F600}"),
            vec![0x00, 0x61, 0xD8, 0x3D, 0xDE, 0x00]
        );
    }

    #[test]
    fn lenient_decoding() {
        assert_eq!(decode_gsm7_unpacked(&[0x41, 0x80, 0x42]), "A\u{FFFD}B");
        assert_eq!(decode_gsm7_unpacked(&[0x41, 0x1B]), "A\u{FFFD}");
        assert_eq!(decode_gsm7_unpacked(&[0x1B, 0xFF]), "\u{FFFD}\u{FFFD}");
        // Undefined extension code: shown as the default character.
        assert_eq!(decode_gsm7_unpacked(&[0x1B, 0x41]), "A");
        assert_eq!(decode_gsm7_unpacked(&[0x1B, 0x1B, 0x41]), " A");
        assert_eq!(decode_ucs2(&[0x00, 0x61, 0x00]), "a\u{FFFD}");
        assert_eq!(decode_ucs2(&[0xD8, 0x3D, 0x00, 0x61]), "\u{FFFD}a");
        assert_eq!(decode_ucs2(&[0xDE, 0x00]), "\u{FFFD}");
        assert_eq!(decode_ucs2(&[]), "");
        // Every byte string decodes without panicking.
        let mut rng = Rng::seeded(7, "lenient_decoding");
        for _ in 0..2000 {
            let len = rng.below(40);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let _ = decode_gsm7_unpacked(&bytes);
            let _ = decode_ucs2(&bytes);
        }
    }

    #[test]
    fn latin1() {
        assert_eq!(encode_latin1("aé\u{FF}"), Some(vec![0x61, 0xE9, 0xFF]));
        assert_eq!(encode_latin1("€"), None);
        assert_eq!(encode_latin1(""), Some(vec![]));
    }

    #[test]
    fn transliteration_cases() {
        assert_eq!(transliterate("plain text é"), None);
        assert_eq!(transliterate(""), None);
        assert_eq!(
            transliterate("Zażółć gęślą jaźń").as_deref(),
            Some("Zazolc gesla jazn")
        );
        assert_eq!(transliterate("ĄĆĘŁŃÓŚŹŻ").as_deref(), Some("ACELNOSZZ"));
        assert_eq!(
            transliterate("‘a’ “b” „c” x–y—z wait… 1\u{00A0}000").as_deref(),
            Some("'a' \"b\" \"c\" x-y-z wait... 1 000")
        );
        let polish = "Dzień dobry, zaległość 120,50 zł — zapłać dziś";
        assert!(!is_gsm7(polish));
        let t = transliterate(polish).unwrap();
        assert_eq!(t, "Dzien dobry, zaleglosc 120,50 zl - zaplac dzis");
        assert!(is_gsm7(&t));
        assert_eq!(analyze(&t).encoding, Encoding::Gsm7);
        assert!(is_gsm7(&transliterate("Zażółć gęślą jaźń").unwrap()));
        // Not everything becomes GSM-7.
        assert!(!is_gsm7(&transliterate("ł 中").unwrap()));
    }
    use crate::test_rng::TestRng as Rng;

    const GSM_POOL: &[char] = &[
        'a', 'b', 'z', 'A', 'Z', '0', '9', ' ', '.', ',', '\n', '@', 'é', 'Δ', '§', '€', '[', ']',
        '^', '\\', '|', '\u{0C}',
    ];
    const OTHER_POOL: &[char] = &[
        'ł',
        'ó',
        '`',
        '中',
        '文',
        '\u{1F600}',
        '\u{1F389}',
        '\u{10FFFF}',
    ];

    fn random_text(rng: &mut Rng) -> String {
        let len = rng.below(500);
        let mode = rng.below(5);
        let mut text = String::new();
        for _ in 0..len {
            let c = match mode {
                // GSM-7 only, mostly plain with some escapes.
                0 => rng.pick(GSM_POOL),
                // GSM-7 with a rare stranger.
                1 if rng.below(200) == 0 => rng.pick(OTHER_POOL),
                1 => rng.pick(GSM_POOL),
                // Evenly mixed.
                2 if rng.below(2) == 0 => rng.pick(OTHER_POOL),
                2 => rng.pick(GSM_POOL),
                // Emoji-heavy.
                3 if rng.below(3) > 0 => rng.pick(&['\u{1F600}', '\u{1F389}']),
                3 => rng.pick(&['ł', 'a', '中']),
                // Plain 'a' with escapes and emoji, to hit part boundaries.
                _ => rng.pick(&['a', 'a', 'a', 'a', 'a', 'a', '€', '\u{1F600}']),
            };
            text.push(c);
        }
        text
    }

    fn check_parts(text: &str, encoding: Encoding, concat: Concat) -> usize {
        let parts = split(text, encoding, concat);
        assert_eq!(parts.concat(), text);
        assert_eq!(parts.len() as u32, count_segments(text, encoding, concat));
        assert_eq!(parts.len(), self::parts(text, encoding, concat).count());
        if parts.len() > 1 {
            let cap = concat.part_capacity(encoding).unwrap();
            for (i, part) in parts.iter().enumerate() {
                assert!(!part.is_empty());
                let used = units(part, encoding);
                assert!(used <= cap, "{encoding:?} {concat:?} part {i} has {used}");
                if let Some(next) = parts.get(i + 1).and_then(|p| p.chars().next()) {
                    // Greedy: the next part's first character did not fit here.
                    assert!(used + char_width(next, encoding) > cap);
                }
            }
        }
        parts.len()
    }

    #[test]
    fn analyze_agrees_with_split() {
        let mut rng = Rng::seeded(0x5EED, "analyze_agrees_with_split");
        let mut seen = [0usize; 2];
        for _ in 0..5000 {
            let text = random_text(&mut rng);
            let info = analyze(&text);
            seen[info.encoding as usize] += 1;

            assert_eq!(info.chars, text.chars().count());
            assert_eq!(info.encoding == Encoding::Gsm7, is_gsm7(&text));
            match info.encoding {
                Encoding::Gsm7 => {
                    let bytes = encode_gsm7_unpacked(&text).unwrap();
                    assert_eq!(info.units, bytes.len());
                    assert_eq!(decode_gsm7_unpacked(&bytes), text);
                }
                Encoding::Ucs2 => {
                    assert!(encode_gsm7_unpacked(&text).is_none());
                    let bytes = encode_ucs2(&text);
                    assert_eq!(info.units, bytes.len() / 2);
                    assert_eq!(decode_ucs2(&bytes), text);
                }
            }
            assert_eq!(info.units, units(&text, info.encoding));

            let n = check_parts(&text, info.encoding, Concat::Udh8);
            assert_eq!(info.segments as usize, n, "text {text:?}");
            assert_eq!(info.segments == 0, text.is_empty());
            // The other layouts and the forced encodings are consistent too.
            for encoding in [Encoding::Gsm7, Encoding::Ucs2] {
                for concat in [Concat::Udh8, Concat::Udh16, Concat::Sar, Concat::Payload] {
                    check_parts(&text, encoding, concat);
                }
            }
        }
        // Both branches were exercised plenty.
        assert!(seen[0] > 1000 && seen[1] > 1000, "{seen:?}");
    }

    /// Every length around the part boundaries, for each kind of character.
    #[test]
    fn boundaries_exhaustive() {
        for fill in ['a', '€', 'ł', '\u{1F600}'] {
            for tail in ["", "a", "€", "ł", "\u{1F600}"] {
                for n in 0..=340 {
                    let text = format!("{}{tail}", rep(&fill.to_string(), n));
                    let info = analyze(&text);
                    assert_eq!(
                        info.segments as usize,
                        check_parts(&text, info.encoding, Concat::Udh8)
                    );
                }
            }
        }
    }
}
