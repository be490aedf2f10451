//! Templates: `{{name}}` placeholders filled from a message's `vars`, read
//! within fixed limits so a huge `vars` object costs no more than a small one.

use std::collections::BTreeMap;

use goniec_core::Problem;
use serde::Deserialize;

use crate::accept::invalid::Invalid;

/// Most template variables one message may carry.
pub const MAX_VARS: usize = 100;
/// Longest variable name, in characters.
pub const MAX_VAR_NAME_CHARS: usize = 64;
/// Most bytes of `vars` in all: names plus values as written in the request.
pub const MAX_VARS_BYTES: usize = 16 * 1024;

/// A message's template variables, read within [`MAX_VARS`], [`MAX_VAR_NAME_CHARS`]
/// and [`MAX_VARS_BYTES`]. Past a limit the parser stops keeping entries and only
/// skips over the rest, so a body of a million variables costs no more memory than
/// one of a hundred; [`validate`](super::validate) then refuses the message with the limit's code.
#[derive(Debug, Default)]
pub struct Vars {
    pub map: BTreeMap<String, VarValue>,
    /// The first limit the request broke, if any.
    over: Option<VarsOver>,
}

/// One template variable's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarValue {
    Text(String),
    /// A JSON number exactly as the request wrote it.
    Number(String),
    Bool(bool),
    /// An array, object or null: refused when the template uses it.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VarsOver {
    Count,
    Name,
    Bytes,
}

impl Vars {
    /// The refusal for a broken limit.
    pub(super) fn check(&self) -> Result<(), Invalid> {
        let Some(over) = self.over else {
            return Ok(());
        };
        let e = match over {
            VarsOver::Count => Invalid::new(
                Problem::TooManyVars,
                format!("`vars` may have at most {MAX_VARS} entries"),
            ),
            VarsOver::Name => Invalid::new(
                Problem::VarNameTooLong,
                format!("`vars` names may be at most {MAX_VAR_NAME_CHARS} characters"),
            ),
            VarsOver::Bytes => Invalid::new(
                Problem::VarsTooLarge,
                format!(
                    "`vars` may take at most {MAX_VARS_BYTES} bytes (names and values as sent)"
                ),
            ),
        };
        Err(e.field("vars"))
    }
}

impl<'de> Deserialize<'de> for Vars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vars;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of template variables")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Vars, A::Error> {
                use serde::de::IgnoredAny;
                let mut vars = Vars::default();
                let mut bytes = 0;
                while let Some(name) = m.next_key::<String>()? {
                    if vars.over.is_some() {
                        m.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    if vars.map.len() >= MAX_VARS && !vars.map.contains_key(&name) {
                        vars.over = Some(VarsOver::Count);
                    } else if name.chars().count() > MAX_VAR_NAME_CHARS {
                        vars.over = Some(VarsOver::Name);
                    }
                    if vars.over.is_some() {
                        m.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    // Measured as sent before it is built, so one huge value is
                    // refused without becoming a tree of allocations first.
                    let raw = m.next_value::<Box<serde_json::value::RawValue>>()?;
                    bytes += name.len() + raw.get().len();
                    if bytes > MAX_VARS_BYTES {
                        vars.over = Some(VarsOver::Bytes);
                        continue;
                    }
                    let value = match raw.get().as_bytes().first() {
                        // A number is kept as written: parsed, `120.50` would
                        // print as `120.5`, `18446744073709551616` as
                        // `1.8446744073709552e19` and `-0` as `-0.0`.
                        Some(b'-' | b'0'..=b'9') => VarValue::Number(raw.get().to_string()),
                        _ => match serde_json::from_str(raw.get())
                            .map_err(serde::de::Error::custom)?
                        {
                            serde_json::Value::String(s) => VarValue::Text(s),
                            serde_json::Value::Bool(b) => VarValue::Bool(b),
                            _ => VarValue::Other,
                        },
                    };
                    vars.map.insert(name, value);
                }
                Ok(vars)
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// Fill `{{name}}` placeholders from `vars`; a missing variable is an error.
pub fn render_template(
    tpl: &str,
    vars: Option<&BTreeMap<String, VarValue>>,
) -> Result<String, Invalid> {
    let mut out = String::with_capacity(tpl.len());
    let mut rest = tpl;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(
                Invalid::new(Problem::InvalidTemplate, "`{{` without closing `}}`")
                    .field("template"),
            );
        };
        let name = after[..end].trim();
        let value = vars.and_then(|v| v.get(name)).ok_or_else(|| {
            Invalid::new(
                Problem::MissingVariable,
                format!("template uses `{{{{{name}}}}}` but `vars` has no `{name}`"),
            )
            .field(format!("vars.{name}"))
        })?;
        match value {
            VarValue::Text(s) | VarValue::Number(s) => out.push_str(s),
            VarValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            VarValue::Other => {
                return Err(Invalid::new(
                    Problem::InvalidType,
                    "template variables must be strings, numbers or booleans",
                )
                .field(format!("vars.{name}")))
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}
