//! Template text: `{{name}}` placeholders and `{{link:https://…/{{var}}}}`
//! tracked links, parsed once into [`Piece`]s and filled per recipient.
//!
//! A value is inserted as text: nothing in it is read as a placeholder, and in
//! e-mail HTML it is escaped. A variable with no value and no default is an
//! error naming it, never an empty hole in a debtor's message.

use std::collections::BTreeMap;

use super::format::Format;

/// One piece of a parsed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Var(String),
    /// A tracked link: its target, itself made of literals and variables.
    Link(Vec<Piece>),
}

/// Longest variable name.
pub const MAX_NAME: usize = 64;

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// Parse a text; the error says what is wrong and where.
pub fn parse(text: &str) -> Result<Vec<Piece>, String> {
    parse_in(text, true)
}

fn parse_in(text: &str, links: bool) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Lit(rest[..start].to_string()));
        }
        let after = &rest[start + 2..];
        if let Some(inner) = after.strip_prefix("link:") {
            if !links {
                return Err("a `{{link:…}}` cannot hold another link".into());
            }
            // The link ends at the `}}` that closes it, past any `{{var}}` inside.
            let mut depth = 0usize;
            let mut i = 0;
            let bytes = inner.as_bytes();
            let end = loop {
                if i + 1 >= bytes.len() {
                    return Err("`{{link:` without its closing `}}`".into());
                }
                match &bytes[i..i + 2] {
                    b"{{" => {
                        depth += 1;
                        i += 2;
                    }
                    b"}}" if depth == 0 => break i,
                    b"}}" => {
                        depth -= 1;
                        i += 2;
                    }
                    _ => i += 1,
                }
            };
            let target = inner[..end].trim();
            if target.is_empty() {
                return Err("`{{link:}}` needs a URL".into());
            }
            out.push(Piece::Link(parse_in(target, false)?));
            rest = &inner[end + 2..];
            continue;
        }
        let Some(end) = after.find("}}") else {
            return Err("`{{` without closing `}}`".into());
        };
        let name = after[..end].trim();
        if !valid_name(name) {
            return Err(format!(
                "`{{{{{name}}}}}` is not a variable name (letters, digits, `_`, `.`, `-`; at most {MAX_NAME})"
            ));
        }
        out.push(Piece::Var(name.to_string()));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Lit(rest.to_string()));
    }
    Ok(out)
}

/// Every variable a text uses, links included.
pub fn names(pieces: &[Piece], out: &mut Vec<String>) {
    for p in pieces {
        match p {
            Piece::Var(n) if !out.contains(n) => out.push(n.clone()),
            Piece::Link(inner) => names(inner, out),
            _ => {}
        }
    }
}

/// Whether a text has a tracked link.
pub fn has_link(pieces: &[Piece]) -> bool {
    pieces.iter().any(|p| matches!(p, Piece::Link(_)))
}

/// How a declared variable is filled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VarRule {
    pub default: Option<String>,
    pub format: Format,
}

/// Why a text could not be filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillError {
    /// No value and no default.
    Missing(String),
    /// The value does not fit the variable's format.
    Format { name: String, detail: String },
    /// A link's target is not an http(s) URL once filled.
    BadLink(String),
}

/// Where the values come from and where links go.
pub struct Filler<'a> {
    pub rules: &'a BTreeMap<String, VarRule>,
    /// Values as text (numbers as the request wrote them).
    pub values: &'a dyn Fn(&str) -> Option<String>,
    /// Turn a filled link target into the short URL to show.
    pub link: &'a mut dyn FnMut(String) -> String,
}

/// How values are written into the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    None,
    Html,
}

impl Filler<'_> {
    fn value(&self, name: &str) -> Result<String, FillError> {
        let rule = self.rules.get(name);
        let raw = (self.values)(name)
            .filter(|v| !v.is_empty())
            .or_else(|| rule.and_then(|r| r.default.clone()))
            .ok_or_else(|| FillError::Missing(name.to_string()))?;
        match rule {
            Some(r) => r.format.apply(&raw).map_err(|detail| FillError::Format {
                name: name.to_string(),
                detail,
            }),
            None => Ok(raw),
        }
    }

    /// Fill a parsed text.
    pub fn fill(&mut self, pieces: &[Piece], escape: Escape) -> Result<String, FillError> {
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(n) => {
                    let v = self.value(n)?;
                    match escape {
                        Escape::None => out.push_str(&v),
                        Escape::Html => html_escape(&v, &mut out),
                    }
                }
                Piece::Link(inner) => {
                    let target = self.fill(inner, Escape::None)?;
                    if !goniec_core::check::is_http_url(&target) {
                        return Err(FillError::BadLink(target));
                    }
                    out.push_str(&(self.link)(target));
                }
            }
        }
        Ok(out)
    }
}

fn html_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(text: &str, vals: &[(&str, &str)], escape: Escape) -> Result<String, FillError> {
        let pieces = parse(text).unwrap();
        let map: BTreeMap<String, String> = vals
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let rules = BTreeMap::new();
        let values = |n: &str| map.get(n).cloned();
        let mut n = 0;
        let mut link = |t: String| {
            n += 1;
            format!("<short{n}:{t}>")
        };
        let mut f = Filler {
            rules: &rules,
            values: &values,
            link: &mut link,
        };
        f.fill(&pieces, escape)
    }

    #[test]
    fn variables_and_links_are_filled() {
        assert_eq!(
            fill(
                "Dzień dobry {{ name }}, zapłać: {{link:https://pay.acme.pl/inv/{{invoice}}?a=1}}.",
                &[("name", "Anna"), ("invoice", "FV/12")],
                Escape::None
            )
            .unwrap(),
            "Dzień dobry Anna, zapłać: <short1:https://pay.acme.pl/inv/FV/12?a=1>."
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        assert_eq!(
            fill("Hi {{name}}", &[], Escape::None),
            Err(FillError::Missing("name".into()))
        );
        assert_eq!(
            fill("Hi {{name}}", &[("name", "")], Escape::None),
            Err(FillError::Missing("name".into()))
        );
    }

    #[test]
    fn values_are_text_not_placeholders_and_escaped_in_html() {
        assert_eq!(
            fill("<p>{{a}}</p>", &[("a", "<b>{{b}}</b> & 'x'")], Escape::Html).unwrap(),
            "<p>&lt;b&gt;{{b}}&lt;/b&gt; &amp; &#39;x&#39;</p>"
        );
    }

    #[test]
    fn a_link_must_be_http_once_filled() {
        assert_eq!(
            fill(
                "{{link:{{u}}}}",
                &[("u", "javascript:alert(1)")],
                Escape::None
            ),
            Err(FillError::BadLink("javascript:alert(1)".into()))
        );
    }

    #[test]
    fn malformed_texts_are_refused() {
        for bad in [
            "{{name",
            "{{}}",
            "{{a b}}",
            "{{link:https://x/{{a}}",
            "{{link:}}",
            "{{link:https://x/{{link:https://y}}}}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let mut n = Vec::new();
        names(
            &parse("{{a}} {{link:https://x/{{b}}/{{a}}}}").unwrap(),
            &mut n,
        );
        assert_eq!(n, ["a", "b"]);
    }
}
