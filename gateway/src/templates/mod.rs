//! Stored templates: what a tenant writes once and sends many times, by
//! `POST /v1/messages` (`template_id`) or by campaigns. A template is checked
//! when it is stored (every placeholder declared, every text parsable, the
//! channel's content complete); [`Template::fill`] turns it and one recipient's
//! values into a message's content, with tracked links made short.

use std::collections::BTreeMap;

use goniec_config::Channel;
use goniec_core::Problem;
use serde::{Deserialize, Serialize};

pub mod cache;
pub mod format;
pub mod links;
pub mod render;

use crate::accept::invalid::Invalid;
use crate::model::AttachmentData;
use format::Format;
use render::{Escape, FillError, Filler, Piece, VarRule};

/// Longest template id.
pub const MAX_ID: usize = 64;

/// A template as the API takes and shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateDoc {
    #[schema(value_type = String, example = "sms")]
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// SMS text, RCS text, or an e-mail's plain text when `email.text` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// RCS content (rich card, suggestions, file) as `POST /v1/messages` takes
    /// it; placeholders are filled in its strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub rcs: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailTemplate>,
    /// For RCS: the SMS sent when RCS cannot reach the recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_text: Option<String>,
    /// Every variable the texts use, with an optional default and format.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, VarDecl>,
    /// SMS: replace letters outside GSM-7 (ą → a) to fit more per segment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transliterate: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailTemplate {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub attachments: Vec<AttachmentData>,
}

/// A declared variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VarDecl {
    /// Used when a recipient has no value (or an empty one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "is_text")]
    #[schema(value_type = String, example = "amount")]
    pub format: Format,
}

fn is_text(f: &Format) -> bool {
    *f == Format::Text
}

/// A template version as stored: the document and when it was written.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredDoc {
    pub created_at: i64,
    pub template: TemplateDoc,
}

/// A template ready to fill: its texts parsed once.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: String,
    pub version: u32,
    pub doc: TemplateDoc,
    rules: BTreeMap<String, VarRule>,
    text: Option<Vec<Piece>>,
    fallback_text: Option<Vec<Piece>>,
    subject: Option<Vec<Piece>>,
    html: Option<Vec<Piece>>,
    email_text: Option<Vec<Piece>>,
}

/// A message's content from a template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Content {
    pub text: Option<String>,
    pub rcs: Option<serde_json::Value>,
    pub email: Option<EmailTemplate>,
    pub fallback_text: Option<String>,
    pub transliterate: bool,
}

/// A template id: 1 to 64 of letters, digits, `_`, `-`, `.`.
pub fn check_id(id: &str) -> Result<(), Invalid> {
    if id.is_empty()
        || id.len() > MAX_ID
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(Invalid::new(
            Problem::InvalidValue,
            format!("a template id is 1 to {MAX_ID} letters, digits, `_`, `-` or `.`"),
        )
        .field("id"));
    }
    Ok(())
}

impl Template {
    /// Check a document and parse its texts. Every placeholder must be
    /// declared in `vars`; the content must fit the channel.
    pub fn compile(id: &str, version: u32, doc: TemplateDoc) -> Result<Template, Invalid> {
        let parse = |field: &str, text: Option<&String>| -> Result<Option<Vec<Piece>>, Invalid> {
            text.map(|t| {
                render::parse(t).map_err(|e| {
                    Invalid::new(Problem::InvalidTemplate, format!("`{field}`: {e}")).field(field)
                })
            })
            .transpose()
        };
        let missing = |field: &str, what: &str| {
            Invalid::new(Problem::MissingField, format!("{what} needs `{field}`")).field(field)
        };
        let misplaced = |field: &str, ch: Channel| {
            Invalid::new(
                Problem::ConflictingFields,
                format!("`{field}` does not belong in a {ch} template"),
            )
            .field(field)
        };
        match doc.channel {
            Channel::Sms => {
                if doc.text.is_none() {
                    return Err(missing("text", "an SMS template"));
                }
                for (f, set) in [
                    ("rcs", doc.rcs.is_some()),
                    ("email", doc.email.is_some()),
                    ("fallback_text", doc.fallback_text.is_some()),
                ] {
                    if set {
                        return Err(misplaced(f, doc.channel));
                    }
                }
            }
            Channel::Rcs => {
                if doc.text.is_none() && doc.rcs.is_none() {
                    return Err(missing("text", "an RCS template"));
                }
                if doc.email.is_some() {
                    return Err(misplaced("email", doc.channel));
                }
            }
            Channel::Email => {
                let Some(e) = &doc.email else {
                    return Err(missing("email", "an e-mail template"));
                };
                if e.html.is_none() && e.text.is_none() && doc.text.is_none() {
                    return Err(missing("email.html", "an e-mail template"));
                }
                if doc.rcs.is_some() {
                    return Err(misplaced("rcs", doc.channel));
                }
            }
        }
        let text = parse("text", doc.text.as_ref())?;
        let fallback_text = parse("fallback_text", doc.fallback_text.as_ref())?;
        let subject = parse("email.subject", doc.email.as_ref().map(|e| &e.subject))?;
        let html = parse(
            "email.html",
            doc.email.as_ref().and_then(|e| e.html.as_ref()),
        )?;
        let email_text = parse(
            "email.text",
            doc.email.as_ref().and_then(|e| e.text.as_ref()),
        )?;
        let mut used = Vec::new();
        for p in [&text, &fallback_text, &subject, &html, &email_text]
            .into_iter()
            .flatten()
        {
            render::names(p, &mut used);
        }
        if let Some(rcs) = &doc.rcs {
            rcs_strings(rcs, &mut |s| {
                let pieces = render::parse(s).map_err(|e| {
                    Invalid::new(Problem::InvalidTemplate, format!("`rcs`: {e}")).field("rcs")
                })?;
                render::names(&pieces, &mut used);
                Ok(())
            })?;
        }
        if let Some(name) = used.iter().find(|n| !doc.vars.contains_key(*n)) {
            return Err(Invalid::new(
                Problem::InvalidTemplate,
                format!(
                    "the template uses `{{{{{name}}}}}` but `vars` does not declare it; \
                     add \"{name}\": {{}} (with a \"default\" or \"format\" if you like)"
                ),
            )
            .field(format!("vars.{name}")));
        }
        if let Some(name) = doc.vars.keys().find(|n| !used.contains(n)) {
            return Err(Invalid::new(
                Problem::InvalidTemplate,
                format!("`vars` declares `{name}` but no text uses it"),
            )
            .field(format!("vars.{name}")));
        }
        let rules = doc
            .vars
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    VarRule {
                        default: v.default.clone(),
                        format: v.format.clone(),
                    },
                )
            })
            .collect();
        Ok(Template {
            id: id.to_string(),
            version,
            doc,
            rules,
            text,
            fallback_text,
            subject,
            html,
            email_text,
        })
    }

    /// Whether any text has a tracked link.
    pub fn has_links(&self) -> bool {
        [
            &self.text,
            &self.fallback_text,
            &self.subject,
            &self.html,
            &self.email_text,
        ]
        .into_iter()
        .flatten()
        .any(|p| render::has_link(p))
            || self
                .doc
                .rcs
                .as_ref()
                .is_some_and(|r| r.to_string().contains("{{link:"))
    }

    /// Values that make every declared variable valid, for checking a
    /// template's shape before any recipient exists.
    pub fn sample_values(&self) -> BTreeMap<String, String> {
        self.rules
            .iter()
            .map(|(k, r)| {
                let v = r.default.clone().unwrap_or_else(|| match r.format {
                    Format::Text => k.clone(),
                    Format::Amount => "0".into(),
                    Format::Date(_) => "2000-01-01".into(),
                });
                (k.clone(), v)
            })
            .collect()
    }

    /// Fill the template for one recipient. `link` turns a link's target into
    /// the short URL shown. A missing or malformed value is an error naming
    /// the variable.
    pub fn fill(
        &self,
        values: &dyn Fn(&str) -> Option<String>,
        link: &mut dyn FnMut(String) -> String,
    ) -> Result<Content, Invalid> {
        let mut f = Filler {
            rules: &self.rules,
            values,
            link,
        };
        let mut run = |p: &Option<Vec<Piece>>, field: &str, escape| {
            p.as_ref()
                .map(|p| f.fill(p, escape).map_err(|e| fill_error(e, field)))
                .transpose()
        };
        let text = run(&self.text, "text", Escape::None)?;
        let fallback_text = run(&self.fallback_text, "fallback_text", Escape::None)?;
        let subject = run(&self.subject, "email.subject", Escape::None)?;
        let html = run(&self.html, "email.html", Escape::Html)?;
        let email_text = run(&self.email_text, "email.text", Escape::None)?;
        let email = self.doc.email.as_ref().map(|e| EmailTemplate {
            subject: subject.unwrap_or_default(),
            html,
            text: email_text,
            attachments: e.attachments.clone(),
        });
        let rcs = match &self.doc.rcs {
            Some(r) => {
                let mut r = r.clone();
                fill_rcs(&mut r, &mut f)?;
                Some(r)
            }
            None => None,
        };
        Ok(Content {
            text,
            rcs,
            email,
            fallback_text,
            transliterate: self.doc.transliterate,
        })
    }
}

fn fill_error(e: FillError, field: &str) -> Invalid {
    match e {
        FillError::Missing(name) => Invalid::new(
            Problem::MissingVariable,
            format!("the template uses `{{{{{name}}}}}` but there is no value for `{name}` and no default"),
        )
        .field(format!("vars.{name}")),
        FillError::Format { name, detail } => {
            Invalid::new(Problem::InvalidValue, format!("`{name}`: {detail}"))
                .field(format!("vars.{name}"))
        }
        FillError::BadLink(target) => Invalid::new(
            Problem::InvalidTemplate,
            format!(
                "a link in `{field}` leads to {:?} once filled; it must be an http:// or https:// URL",
                target.chars().take(200).collect::<String>()
            ),
        )
        .field(field),
    }
}

/// Visit every string of RCS content.
fn rcs_strings(
    v: &serde_json::Value,
    f: &mut dyn FnMut(&str) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    match v {
        serde_json::Value::String(s) => f(s),
        serde_json::Value::Array(a) => a.iter().try_for_each(|x| rcs_strings(x, f)),
        serde_json::Value::Object(o) => o.values().try_for_each(|x| rcs_strings(x, f)),
        _ => Ok(()),
    }
}

fn fill_rcs(v: &mut serde_json::Value, f: &mut Filler<'_>) -> Result<(), Invalid> {
    match v {
        serde_json::Value::String(s) if s.contains("{{") => {
            let pieces = render::parse(s)
                .map_err(|e| Invalid::new(Problem::InvalidTemplate, e).field("rcs"))?;
            *s = f
                .fill(&pieces, Escape::None)
                .map_err(|e| fill_error(e, "rcs"))?;
            Ok(())
        }
        serde_json::Value::Array(a) => a.iter_mut().try_for_each(|x| fill_rcs(x, f)),
        serde_json::Value::Object(o) => o.values_mut().try_for_each(|x| fill_rcs(x, f)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> TemplateDoc {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_placeholder_must_be_declared_and_used() {
        let e = Template::compile(
            "r",
            1,
            doc(r#"{"channel":"sms","text":"Hi {{name}} {{amount}}","vars":{"name":{}}}"#),
        )
        .unwrap_err();
        assert_eq!(e.code, Problem::InvalidTemplate);
        assert_eq!(e.field.as_deref(), Some("vars.amount"));
        let e = Template::compile(
            "r",
            1,
            doc(r#"{"channel":"sms","text":"Hi","vars":{"name":{}}}"#),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("vars.name"));
    }

    #[test]
    fn defaults_formats_and_html_escaping() {
        let t = Template::compile(
            "r",
            3,
            doc(r#"{"channel":"email","email":{"subject":"Zaległość {{amount}} zł",
                "html":"<p>{{name}}, do {{due}}: <a href=\"{{link:https://pay.acme.pl/{{inv}}}}\">zapłać</a></p>"},
                "vars":{"name":{"default":"Klient"},"amount":{"format":"amount"},
                "due":{"format":"date"},"inv":{}}}"#),
        )
        .unwrap();
        assert!(t.has_links());
        let vals: BTreeMap<&str, &str> = [
            ("amount", "120.5"),
            ("due", "2026-12-31"),
            ("inv", "FV1"),
            ("name", ""),
        ]
        .into();
        let mut shown = Vec::new();
        let c = t
            .fill(&|n| vals.get(n).map(|v| v.to_string()), &mut |u| {
                shown.push(u);
                "https://acme.link/Ab3xY9kQ2z".into()
            })
            .unwrap();
        let e = c.email.unwrap();
        assert_eq!(e.subject, "Zaległość 120,50 zł");
        assert_eq!(
            e.html.unwrap(),
            "<p>Klient, do 31.12.2026: <a href=\"https://acme.link/Ab3xY9kQ2z\">zapłać</a></p>"
        );
        assert_eq!(shown, ["https://pay.acme.pl/FV1"]);
        let err = t
            .fill(&|n| (n == "amount").then(|| "12".into()), &mut |u| u)
            .unwrap_err();
        assert_eq!(err.code, Problem::MissingVariable);
        assert_eq!(err.field.as_deref(), Some("vars.due"));
        let err = t
            .fill(
                &|n| Some(if n == "amount" { "abc" } else { "2026-01-01" }.into()),
                &mut |u| u,
            )
            .unwrap_err();
        assert_eq!(err.code, Problem::InvalidValue);
        assert_eq!(err.field.as_deref(), Some("vars.amount"));
    }

    #[test]
    fn content_must_fit_the_channel() {
        for (json, field) in [
            (r#"{"channel":"sms"}"#, "text"),
            (
                r#"{"channel":"sms","text":"x","email":{"subject":"s","text":"t"}}"#,
                "email",
            ),
            (r#"{"channel":"email","text":"x"}"#, "email"),
            (r#"{"channel":"rcs"}"#, "text"),
        ] {
            let e = Template::compile("r", 1, doc(json)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{json}");
        }
        let t = Template::compile(
            "r",
            1,
            doc(r#"{"channel":"rcs","rcs":{"card":{"title":"Hi {{name}}"}},"vars":{"name":{}}}"#),
        )
        .unwrap();
        let c = t.fill(&|_| Some("Ola".into()), &mut |u| u).unwrap();
        assert_eq!(c.rcs.unwrap()["card"]["title"], "Hi Ola");
    }
}
