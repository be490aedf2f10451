//! Reading a configuration: TOML text plus `GONIEC_…` environment overrides
//! → [`Config`], and the error types every reader of a config sees.
//!
//! This module owns syntax, unknown keys, value types and env overrides;
//! cross-field rules live in `validate`. Nothing stops at the first problem:
//! the file is parsed to a plain [`toml::Table`], then every section and
//! every array item is checked key by key against the field list of its
//! struct (read from the struct's own `Deserialize` impl, so the lists can
//! never drift from the types), and each known key is deserialized on its
//! own. A bad key is reported at its path and falls back to its default, so
//! the rest of the file is still read and validated.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use toml::{Table, Value};

use crate::validate::{self, Layout};
use crate::{
    Admin, Antifraud, Config, ConnectorConfig, ConnectorKind, Log, Rate, RcsConnector, Route,
    Server, SmppConnector, SmtpConnector, Store, StubConnector, Tenant, Webhooks, Workers,
};

/// Only variables with this prefix are read…
const ENV_PREFIX: &str = "GONIEC_";
/// …and only those with this separator are config paths, so `GONIEC_LOG`
/// style variables meant for other tools are left alone.
const ENV_SEPARATOR: &str = "__";

/// Top-level keys of the file.
const SECTIONS: &[&str] = &[
    "server",
    "log",
    "store",
    "workers",
    "webhooks",
    "admin",
    "links",
    "antifraud",
    "tenants",
    "connectors",
    "routes",
];

/// One problem, at one key path such as `server.listen`,
/// `tenants[1].api_keys[0]` or `env GONIEC_STORE__URL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// Where: a key path, `line L, column C` for syntax errors, `env NAME`
    /// for environment overrides, or empty for the file as a whole.
    pub key: String,
    /// What is wrong, written for the operator.
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: in_words(&message.into()),
        }
    }

    fn render(&self) -> String {
        if self.key.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.key, self.message)
        }
    }
}

/// serde's and jiff's messages, said for an operator: Rust type names
/// (`expected usize`) and parser internals (`found end of input`) become what
/// is expected, in words.
fn in_words(message: &str) -> String {
    const TYPES: [(&str, &str); 12] = [
        ("usize", "a whole number (0 or more)"),
        ("u64", "a whole number (0 or more)"),
        ("u32", "a whole number from 0 to 4294967295"),
        ("u16", "a whole number from 0 to 65535"),
        ("u8", "a whole number from 0 to 255"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("isize", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
        ("a boolean", "true or false"),
        ("a sequence", "a list such as [\"a\", \"b\"]"),
    ];
    // jiff's date parser: "expected four digit year …", "… as month …".
    if message.contains("digit year")
        || message.contains("as month")
        || message.contains("as day")
        || (message.contains("parameter '") && message.contains("required range"))
    {
        return "expected a date such as \"2027-12-31\"".to_string();
    }
    let mut out = message.to_string();
    for (rust, words) in TYPES {
        let from = format!("expected {rust}");
        if out.ends_with(&from) {
            let cut = out.len() - from.len();
            out = format!("{}expected {words}", &out[..cut]);
        }
    }
    // "invalid type: integer `5`, expected …" → "found the number 5, expected …"
    for (serde, words) in [
        ("invalid type: integer ", "found the number "),
        ("invalid type: floating point ", "found the number "),
        ("invalid type: string ", "found the text "),
        ("invalid type: boolean ", "found "),
        ("invalid value: integer ", "the number "),
        ("invalid value: floating point ", "the number "),
        ("invalid type: sequence", "found a list"),
        ("invalid type: map", "found a table"),
    ] {
        // Anywhere: env errors carry the key path in front.
        if let Some(at) = out.find(serde) {
            let (head, rest) = (&out[..at], &out[at + serde.len()..]);
            let rest = rest.replacen('`', "", 2);
            out = match (
                serde.starts_with("invalid value"),
                rest.split_once(", expected "),
            ) {
                (true, Some((v, e))) => format!("{head}{words}{v} is out of range: expected {e}"),
                _ => format!("{head}{words}{rest}"),
            };
            break;
        }
    }
    out
}

/// Every problem found in one configuration; `Display` prints one per line
/// as `<file>: <key>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigErrors {
    /// The file read, when there was one.
    pub path: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    fn render(&self) -> String {
        let file = self
            .path
            .as_ref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        let lines: Vec<String> = self.errors.iter().map(|e| format!("{file}{e}")).collect();
        lines.join("\n")
    }

    /// The error reported at exactly this key, if any (handy in tests and tools).
    pub fn at(&self, key: &str) -> Option<&ConfigError> {
        self.errors.iter().find(|e| e.key == key)
    }
}

/// Read and validate the file at `path`, with overrides from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        path: Some(path.to_owned()),
        errors: vec![ConfigError::new("", format!("cannot read the file: {e}"))],
    })?;
    // Lossy, not skipped: a GONIEC_ value that is not UTF-8 should still
    // surface (as an invalid value) rather than be silently ignored.
    let env = std::env::vars_os().filter_map(|(name, value)| {
        let name = name.into_string().ok()?;
        name.starts_with(ENV_PREFIX)
            .then(|| (name, value.to_string_lossy().into_owned()))
    });
    load_from_str(&text, env).map_err(|mut e| {
        e.path = Some(path.to_owned());
        e
    })
}

/// Read and validate configuration `text`, applying overrides from `env`
/// (name, value) pairs; names not starting with `GONIEC_` or without `__` are ignored.
pub fn load_from_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigErrors> {
    let fail = |errors| ConfigErrors { path: None, errors };
    let mut root: Table = toml::from_str(text).map_err(|e| fail(vec![syntax_error(text, &e)]))?;

    let mut reader = Reader::default();
    reader.apply_env(&mut root, env);
    let (config, layout) = reader.read(&root);

    // A key that already failed to parse was replaced by its default; rules
    // about that default (e.g. "at least one API key") would only repeat it.
    let parse_errors: Vec<String> = reader.errors.iter().map(|e| e.key.clone()).collect();
    let checks = validate::check(&config, &layout);
    reader.errors.extend(checks.into_iter().filter(|check| {
        !parse_errors
            .iter()
            .any(|key| is_within(key, &check.key) || is_within(&check.key, key))
    }));

    let mut errors = reader.attribute_env();
    // By section and item; within an item, in the order its keys are written
    // (a key the file does not have, e.g. a missing required one, after them).
    let written = key_order(&root);
    errors.sort_by_key(|e| {
        let (rank, index) = order_key(&e.key);
        let at = written.get(e.key.as_str()).copied().unwrap_or(usize::MAX);
        (rank, index, at)
    });
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(fail(errors))
    }
}

/// Lay `over` onto `base`, key by key; tables merge recursively, anything else
/// (lists included) replaces.
fn merge_tables(base: &mut Table, over: &Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_tables(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let message = format!("invalid TOML: {}", e.message().trim());
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            ConfigError::new(format!("line {line}, column {column}"), message)
        }
        None => ConfigError::new("", message),
    }
}

/// Errors are listed section by section in file-layout order, list items by
/// index; environment errors come last.
/// Every key path of the file (`connectors[1].bind_type`, `server.listen`),
/// numbered in the order the file writes them.
fn key_order(root: &Table) -> std::collections::HashMap<String, usize> {
    fn walk(path: &str, value: &Value, out: &mut std::collections::HashMap<String, usize>) {
        let n = out.len();
        out.entry(path.to_owned()).or_insert(n);
        match value {
            Value::Table(t) => {
                for (k, v) in t {
                    walk(&child(path, k), v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), v, out);
                }
            }
            _ => {}
        }
    }
    let mut out = std::collections::HashMap::new();
    for (k, v) in root {
        walk(k, v, &mut out);
    }
    out
}

fn order_key(key: &str) -> (usize, usize) {
    let section_end = key.find(['.', '[']).unwrap_or(key.len());
    let rank = if key.starts_with("env ") {
        SECTIONS.len() + 1
    } else {
        SECTIONS
            .iter()
            .position(|s| *s == &key[..section_end])
            .unwrap_or(SECTIONS.len())
    };
    let index = key[section_end..]
        .strip_prefix('[')
        .and_then(|rest| rest.split(']').next())
        .and_then(|i| i.parse().ok())
        .unwrap_or(0);
    (rank, index)
}

/// `key` names `outer` itself or something inside it (`a.b` is within `a`,
/// `a[0]` is within `a`, `ab` is not within `a`).
fn is_within(outer: &str, key: &str) -> bool {
    match key.strip_prefix(outer) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Where an environment variable put a value.
struct EnvOrigin {
    var: String,
    /// The variable's text; `None` where the variable only created the
    /// table or array that holds its value.
    raw: Option<String>,
}

/// The connector-wide keys; every other key of a `[[connectors]]` item
/// belongs to its kind.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConnectorHead {
    name: String,
    kind: Option<String>,
    tps: Option<Rate>,
}

/// Reads the kind-specific keys of one connector.
type KindReader = fn(&mut Reader, &Table, &str) -> Option<ConnectorKind>;

/// Every connector kind the file may name. Adding a kind: a
/// [`ConnectorKind`] variant with a `Deserialize` struct, and a line here.
const KINDS: &[(&str, KindReader)] = &[
    ("stub", |r, table, path| {
        r.kind_section::<StubConnector>("stub", table, path)
            .map(ConnectorKind::Stub)
    }),
    ("smpp", |r, table, path| {
        r.kind_section::<SmppConnector>("smpp", table, path)
            .map(ConnectorKind::Smpp)
    }),
    ("smtp", |r, table, path| {
        r.kind_section::<SmtpConnector>("smtp", table, path)
            .map(ConnectorKind::Smtp)
    }),
    ("rcs", |r, table, path| {
        r.kind_section::<RcsConnector>("rcs", table, path)
            .map(ConnectorKind::Rcs)
    }),
];

fn kind_names() -> String {
    KINDS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Default)]
struct Reader {
    errors: Vec<ConfigError>,
    /// Key path → the variable that set it.
    env: BTreeMap<String, EnvOrigin>,
    /// Connectors that could not be read (e.g. unknown kind); routes naming
    /// them are not additionally reported as naming a missing connector.
    unusable_connectors: BTreeSet<String>,
}

impl Reader {
    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(key, message));
    }

    fn unknown(&mut self, path: String, key: &str, noun: &str, known: &[&str]) {
        let message = match suggest(key, known) {
            Some(close) => format!("unknown {noun} `{key}` (did you mean `{close}`?)"),
            None => format!(
                "unknown {noun} `{key}`; expected one of: {}",
                known.join(", ")
            ),
        };
        self.error(path, message);
    }

    // -- environment ------------------------------------------------------

    fn apply_env(&mut self, root: &mut Table, env: impl IntoIterator<Item = (String, String)>) {
        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(name, _)| {
                name.strip_prefix(ENV_PREFIX)
                    .is_some_and(|rest| rest.contains(ENV_SEPARATOR))
            })
            .collect();
        // Sorted, so that errors come out in the same order on every run.
        vars.sort();
        for (var, raw) in vars {
            let rest = &var[ENV_PREFIX.len()..];
            let segments: Vec<String> = rest
                .split(ENV_SEPARATOR)
                .map(str::to_ascii_lowercase)
                .collect();
            if segments.iter().any(String::is_empty) {
                self.error(
                    format!("env {var}"),
                    "empty key in the name; levels are separated by exactly two underscores, \
                     e.g. GONIEC_STORE__URL",
                );
                continue;
            }
            let mut setter = EnvSetter {
                var: &var,
                created: Vec::new(),
                path: String::new(),
            };
            match setter.set_in_table(root, &segments, env_value(&raw)) {
                Ok(()) => {
                    for path in setter.created {
                        self.env.entry(path).or_insert(EnvOrigin {
                            var: var.clone(),
                            raw: None,
                        });
                    }
                    self.env.insert(
                        setter.path,
                        EnvOrigin {
                            var: var.clone(),
                            raw: Some(raw),
                        },
                    );
                }
                Err(message) => self.error(format!("env {var}"), message),
            }
        }
    }

    /// A copy of `value` with every env-set leaf under `path` turned back
    /// into the variable's text, or `None` when there is none to turn back.
    /// Env values that look like numbers are read as numbers; this is the
    /// second try for keys that want text, e.g. a sender `+48500100200`.
    fn env_as_text(&self, value: &Value, path: &str) -> Option<Value> {
        let mut copy = value.clone();
        self.env_as_text_in(&mut copy, path).then_some(copy)
    }

    fn env_as_text_in(&self, value: &mut Value, path: &str) -> bool {
        if let Some(EnvOrigin { raw: Some(raw), .. }) = self.env.get(path) {
            if !value.is_str() {
                *value = Value::String(raw.clone());
                return true;
            }
        }
        let mut changed = false;
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    changed |= self.env_as_text_in(item, &format!("{path}[{i}]"));
                }
            }
            Value::Table(table) => {
                for (key, item) in table.iter_mut() {
                    changed |= self.env_as_text_in(item, &child(path, key));
                }
            }
            _ => {}
        }
        changed
    }

    /// Errors at a path an env variable set (or inside what it created) are
    /// keyed by that variable, so a bad override is not blamed on the file.
    fn attribute_env(self) -> Vec<ConfigError> {
        let Reader { errors, env, .. } = self;
        errors
            .into_iter()
            .map(|e| {
                let origin = env
                    .iter()
                    .filter(|(path, _)| is_within(path, &e.key))
                    .max_by_key(|(path, _)| path.len());
                match origin {
                    Some((_, origin)) => ConfigError {
                        key: format!("env {}", origin.var),
                        message: format!("{}: {}", e.key, e.message),
                    },
                    None => e,
                }
            })
            .collect()
    }

    // -- sections -----------------------------------------------------------

    fn read(&mut self, root: &Table) -> (Config, Layout) {
        for key in root.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                self.unknown(key.clone(), key, "section", SECTIONS);
            }
        }
        let mut layout = Layout::default();
        let mut config = Config {
            server: self.table_section::<Server>(root, "server"),
            log: self.table_section::<Log>(root, "log"),
            store: self.table_section::<Store>(root, "store"),
            workers: self.table_section::<Workers>(root, "workers"),
            webhooks: self.table_section::<Webhooks>(root, "webhooks"),
            admin: self.table_section::<Admin>(root, "admin"),
            links: self.table_section::<crate::Links>(root, "links"),
            antifraud: self.table_section::<Antifraud>(root, "antifraud"),
            ..Config::default()
        };
        self.normalize_policy(&mut config.antifraud.defaults, "antifraud.defaults");
        let defaults = match root.get("antifraud").and_then(|a| a.get("defaults")) {
            Some(Value::Table(t)) => t.clone(),
            _ => Table::new(),
        };
        for key in ["policy", "senders"] {
            if defaults.contains_key(key) {
                self.error(
                    format!("antifraud.defaults.{key}"),
                    format!(
                        "`{key}` is set per tenant ([[tenants]] {key} = ...), not as a default"
                    ),
                );
            }
        }
        for (i, item) in self.array_items(root, "tenants") {
            let path = format!("tenants[{i}]");
            let item = self.with_policy_defaults(item, &defaults, &path);
            if let Some(mut tenant) = self.section::<Tenant>(&item, &path, &[]) {
                // The tenant's own short links are never held as a shortener.
                if let Some(host) = tenant
                    .links
                    .domain
                    .as_deref()
                    .and_then(|d| url::Url::parse(d).ok())
                    .and_then(|u| u.host_str().map(str::to_string))
                {
                    tenant.antifraud.links.own_link_host = Some(host.to_ascii_lowercase());
                }
                self.normalize_policy(&mut tenant.antifraud, &format!("{path}.antifraud"));
                config.tenants.push(tenant);
                layout.tenants.push(i);
            }
        }
        for (i, item) in self.array_items(root, "connectors") {
            if let Some(connector) = self.connector(item, &format!("connectors[{i}]")) {
                config.connectors.push(connector);
                layout.connectors.push(i);
            }
        }
        for (i, item) in self.array_items(root, "routes") {
            let path = format!("routes[{i}]");
            if let Some(route) = self.section::<Route>(item, &path, &["channel", "connector"]) {
                config.routes.push(route);
                layout.routes.push(i);
            }
        }
        layout.unusable_connectors = std::mem::take(&mut self.unusable_connectors);
        (config, layout)
    }

    /// A tenant's table with `antifraud` = the defaults, its own `antifraud` keys
    /// laid over them, and its `policy` and `senders`.
    fn with_policy_defaults(&mut self, item: &Table, defaults: &Table, path: &str) -> Table {
        let mut policy = defaults.clone();
        match item.get("antifraud") {
            None => {}
            Some(Value::Table(own)) => {
                for key in ["policy", "senders"] {
                    if own.contains_key(key) {
                        self.error(
                            format!("{path}.antifraud.{key}"),
                            format!("set `{key}` on the tenant itself, not in its antifraud table"),
                        );
                    }
                }
                merge_tables(&mut policy, own);
            }
            Some(other) => {
                let found = type_name(other);
                self.error(
                    format!("{path}.antifraud"),
                    format!("expected a table, found {found}"),
                );
            }
        }
        for key in ["policy", "senders"] {
            match item.get(key) {
                // Env values that looked like numbers (a sender `+48…`) as text.
                Some(v) => {
                    let v = self
                        .env_as_text(v, &format!("{path}.{key}"))
                        .unwrap_or_else(|| v.clone());
                    policy.insert(key.into(), v)
                }
                None => policy.remove(key),
            };
        }
        let mut item = item.clone();
        item.insert("antifraud".into(), Value::Table(policy));
        item
    }

    /// Normalise a policy's lists and report what is wrong with it, by key path.
    fn normalize_policy(&mut self, policy: &mut goniec_antifraud::TenantPolicy, path: &str) {
        if let Err(errors) = policy.normalize() {
            for e in errors {
                self.error(child(path, &e.path), e.message);
            }
        }
    }

    /// `[name]`: a single table; absent means all defaults.
    fn table_section<T: DeserializeOwned + Default>(&mut self, root: &Table, name: &str) -> T {
        match root.get(name) {
            None => T::default(),
            Some(Value::Table(table)) => self.section(table, name, &[]).unwrap_or_default(),
            Some(other) => {
                self.error(
                    name,
                    format!("expected a table ([{name}]), found {}", type_name(other)),
                );
                T::default()
            }
        }
    }

    /// `[[name]]`: the items that are tables, with their index in the file.
    fn array_items<'t>(&mut self, root: &'t Table, name: &str) -> Vec<(usize, &'t Table)> {
        match root.get(name) {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item {
                    Value::Table(table) => Some((i, table)),
                    other => {
                        let found = type_name(other);
                        self.error(
                            format!("{name}[{i}]"),
                            format!("expected a table, found {found}"),
                        );
                        None
                    }
                })
                .collect(),
            Some(Value::Table(_)) => {
                self.error(
                    name,
                    format!("expected a list of tables: write [[{name}]], not [{name}]"),
                );
                Vec::new()
            }
            Some(other) => {
                let found = type_name(other);
                self.error(
                    name,
                    format!("expected a list of tables ([[{name}]]), found {found}"),
                );
                Vec::new()
            }
        }
    }

    /// Reads one struct from `table` at `path`, reporting every unknown key
    /// and every bad value on its own. Bad keys take their defaults; `None`
    /// only when a `required` key is missing or unusable.
    fn section<T: DeserializeOwned>(
        &mut self,
        table: &Table,
        path: &str,
        required: &[&str],
    ) -> Option<T> {
        let fields = fields_of::<T>();
        self.section_with(table, path, required, fields, fields)
    }

    /// [`Reader::section`] for the kind-specific keys of a connector, whose
    /// unknown-key message lists the connector-wide keys too.
    fn kind_section<T: DeserializeOwned>(
        &mut self,
        kind: &str,
        table: &Table,
        path: &str,
    ) -> Option<T> {
        let fields = fields_of::<T>();
        let mut known: Vec<&str> = fields_of::<ConnectorHead>().to_vec();
        known.extend_from_slice(fields);
        let before = self.errors.len();
        let value = self.section_with(table, path, &[], fields, &known);
        for e in &mut self.errors[before..] {
            if e.message.starts_with("unknown key") {
                e.message = format!("{} (in a `{kind}` connector)", e.message);
            }
        }
        value
    }

    fn section_with<T: DeserializeOwned>(
        &mut self,
        table: &Table,
        path: &str,
        required: &[&str],
        fields: &[&str],
        known: &[&str],
    ) -> Option<T> {
        let mut good = Table::new();
        for (key, value) in table {
            let key_path = child(path, key);
            if !fields.contains(&key.as_str()) {
                self.unknown(key_path, key, "key", known);
            } else if let Some(value) = self.field::<T>(key, value, &key_path) {
                good.insert(key.clone(), value);
            }
        }
        let mut complete = true;
        for key in required {
            if !table.contains_key(*key) {
                self.error(child(path, key), "missing; this key is required");
                complete = false;
            } else if !good.contains_key(*key) {
                complete = false; // already reported as invalid
            }
        }
        if !complete {
            return None;
        }
        match T::deserialize(Value::Table(good)) {
            Ok(value) => Some(value),
            Err(e) => {
                // Every key passed on its own; what is left is a required
                // field the `required` list does not name.
                let message = e.message().to_owned();
                match missing_field(&message) {
                    Some(field) => self.error(child(path, field), "missing; this key is required"),
                    None => self.error(path, message),
                }
                None
            }
        }
    }

    /// Checks one key of `T` on its own: the value to keep, or `None` after
    /// reporting why it is unusable (down to the bad item of a list).
    fn field<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: &Value,
        path: &str,
    ) -> Option<Value> {
        let first = try_field::<T>(key, value);
        let Err(error) = first else {
            return Some(value.clone());
        };
        if let Some(text) = self.env_as_text(value, path) {
            if try_field::<T>(key, &text).is_ok() {
                return Some(text);
            }
        }
        // Pinpoint the bad items, but only for keys that are lists at all:
        // `listen = ["a"]` is one wrong value, not a wrong `listen[0]`.
        let is_list = try_field::<T>(key, &Value::Array(Vec::new())).is_ok();
        if let (Value::Array(items), true) = (value, is_list) {
            let before = self.errors.len();
            for (i, item) in items.iter().enumerate() {
                if let Err(e) = try_field::<T>(key, &Value::Array(vec![item.clone()])) {
                    self.error(format!("{path}[{i}]"), e);
                }
            }
            if self.errors.len() > before {
                return None;
            }
        }
        // Nested tables (the anti-fraud policy): name the inner key that is wrong.
        if let Value::Table(_) = value {
            let one = Table::from_iter([(key.to_owned(), value.clone())]);
            if let Err(e) = serde_path_to_error::deserialize::<_, T>(Value::Table(one)) {
                let inner = e.path().to_string();
                let rest = inner
                    .strip_prefix(key)
                    .unwrap_or("")
                    .trim_start_matches('.');
                if !rest.is_empty() && rest != "?" {
                    self.error(child(path, rest), e.into_inner().message().to_owned());
                    return None;
                }
            }
        }
        self.error(path, error);
        None
    }

    // -- connectors ---------------------------------------------------------

    fn connector(&mut self, table: &Table, path: &str) -> Option<ConnectorConfig> {
        let head_fields = fields_of::<ConnectorHead>();
        let (head, body): (Table, Table) = table
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| head_fields.contains(&k.as_str()));
        let head: ConnectorHead = self.section(&head, path, &[])?;
        let kind_path = child(path, "kind");
        let reader = match head.kind.as_deref() {
            // Present but not a string: already reported.
            None if table.contains_key("kind") => None,
            None => {
                let known = kind_names();
                self.error(
                    kind_path,
                    format!("missing; every connector needs a kind (known: {known})"),
                );
                None
            }
            Some(kind) => match KINDS.iter().find(|(name, _)| *name == kind) {
                Some((_, reader)) => Some(*reader),
                None => {
                    let names: Vec<&str> = KINDS.iter().map(|(name, _)| *name).collect();
                    let hint = suggest(kind, &names)
                        .map(|close| format!(" (did you mean `{close}`?)"))
                        .unwrap_or_default();
                    let known = kind_names();
                    let message =
                        format!("unknown connector kind `{kind}`{hint}; known kinds: {known}");
                    self.error(kind_path, message);
                    None
                }
            },
        };
        let kind = reader.and_then(|read| read(self, &body, path));
        match kind {
            Some(kind) => Some(ConnectorConfig {
                name: head.name,
                tps: head.tps,
                kind,
            }),
            None => {
                self.unusable_connectors.insert(head.name);
                None
            }
        }
    }
}

/// Deserializes `T` from a table holding only `key`. All sections are
/// `#[serde(default)]`, so this tests just that key; for the few structs
/// with required fields, "missing field" about *another* key is a pass,
/// since serde reports missing fields only after reading every given key.
fn try_field<T: DeserializeOwned>(key: &str, value: &Value) -> Result<(), String> {
    let mut table = Table::new();
    table.insert(key.to_owned(), value.clone());
    match T::deserialize(Value::Table(table)) {
        Ok(_) => Ok(()),
        Err(e) if missing_field(e.message()).is_some_and(|field| field != key) => Ok(()),
        Err(e) => Err(e.message().to_owned()),
    }
}

/// The field named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// Sets one env override, creating the tables and arrays on its way.
struct EnvSetter<'a> {
    var: &'a str,
    /// Paths of the containers this variable created.
    created: Vec<String>,
    /// The key path reached so far, in error-key form.
    path: String,
}

impl EnvSetter<'_> {
    fn set_in_table(
        &mut self,
        table: &mut Table,
        segments: &[String],
        value: Value,
    ) -> Result<(), String> {
        let Some((key, rest)) = segments.split_first() else {
            return Err(format!("{} names no key", self.var));
        };
        self.path = child(&self.path, key);
        let Some(next) = rest.first() else {
            table.insert(key.clone(), value);
            return Ok(());
        };
        let slot = table.entry(key.clone()).or_insert_with(|| {
            self.created.push(self.path.clone());
            container_for(next)
        });
        self.set_in_value(slot, rest, value)
    }

    fn set_in_value(
        &mut self,
        slot: &mut Value,
        segments: &[String],
        value: Value,
    ) -> Result<(), String> {
        match slot {
            Value::Table(table) => self.set_in_table(table, segments, value),
            Value::Array(items) => {
                let (segment, rest) = segments
                    .split_first()
                    .ok_or_else(|| format!("{} names no key", self.var))?;
                let path = self.path.clone();
                let index: usize = segment.parse().map_err(|_| {
                    format!("`{path}` is a list; the next part of the name must be an index, not `{segment}`")
                })?;
                let len = items.len();
                if index > len {
                    return Err(format!(
                        "index {index} is past the end of `{path}`, which has {len} item(s) \
                         (index {len} adds one)"
                    ));
                }
                self.path = format!("{path}[{index}]");
                if index == len {
                    let new = match rest.first() {
                        Some(next) => {
                            self.created.push(self.path.clone());
                            container_for(next)
                        }
                        None => Value::Table(Table::new()),
                    };
                    items.push(new);
                }
                let Some(item) = items.get_mut(index) else {
                    return Err(format!("index {index} is past the end of `{path}`"));
                };
                if rest.is_empty() {
                    *item = value;
                    Ok(())
                } else {
                    self.set_in_value(item, rest, value)
                }
            }
            other => Err(format!(
                "`{}` holds {}, not a table or list, so it has no `{}`",
                self.path,
                type_name(other),
                segments.first().map_or("", String::as_str)
            )),
        }
    }
}

/// An index next means a list, a name means a table.
fn container_for(next: &str) -> Value {
    if next.parse::<usize>().is_ok() {
        Value::Array(Vec::new())
    } else {
        Value::Table(Table::new())
    }
}

/// An env value as TOML when it reads as a number, boolean or array
/// (`500`, `true`, `["a", "b"]`), else as the literal string.
fn env_value(raw: &str) -> Value {
    if let Ok(mut doc) = toml::from_str::<Table>(&format!("v = {raw}")) {
        // One key only: a value with a newline must not smuggle in others.
        if doc.len() == 1 {
            if let Some(value) = doc.remove("v") {
                if matches!(
                    value,
                    Value::Integer(_) | Value::Float(_) | Value::Boolean(_) | Value::Array(_)
                ) {
                    return value;
                }
            }
        }
    }
    Value::String(raw.to_owned())
}

/// The close known key for a typo, if any.
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let key = key.to_ascii_lowercase();
    let limit = match key.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    known
        .iter()
        .map(|k| (edit_distance(&key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The field names of struct `T`, as its `Deserialize` impl declares them.
fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // Always an error: the capturing deserializer stops once it has the list.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

/// A deserializer that only records the `fields` a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names captured"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_is_expected_in_words() {
        let text = "[server]\nmax_batch = \"lots\"\nmax_segments = -3\n\
                    [workers]\nconcurrency = 1.5\n\
                    [antifraud.defaults.contact]\nextra_holidays = [\"x\"]\n";
        let errors = load_from_str(text, []).unwrap_err().to_string();
        for rust in ["usize", "u32", "u64", "end of input", "digit year", "`"] {
            assert!(!errors.contains(rust), "`{rust}` in:\n{errors}");
        }
        for said in [
            "server.max_batch: found the text \"lots\", expected a whole number (0 or more)",
            "server.max_segments: the number -3 is out of range: expected a whole number from 0 to 4294967295",
            "workers.concurrency: found the number 1.5, expected a whole number (0 or more)",
            "antifraud.defaults.contact.extra_holidays[0]: expected a date such as \"2027-12-31\"",
        ] {
            assert!(errors.contains(said), "no `{said}` in:\n{errors}");
        }
    }

    #[test]
    fn field_lists_come_from_the_structs() {
        assert!(fields_of::<Server>().contains(&"max_batch"));
        assert_eq!(
            fields_of::<Route>(),
            ["channel", "prefix", "tenant", "connector"]
        );
        assert_eq!(fields_of::<ConnectorHead>(), ["name", "kind", "tps"]);
    }

    #[test]
    fn sample_config_documents_every_key() {
        // Commented-out examples count: connectors and routes are shown that way.
        let sample = include_str!("../goniec.toml");
        let written: BTreeSet<&str> = sample
            .lines()
            .map(|line| line.trim_start_matches('#').trim_start())
            .filter_map(|line| match line.strip_prefix('[') {
                // A table header documents its last key: [tenants.antifraud].
                Some(header) => header
                    .trim_end_matches(']')
                    .rsplit('.')
                    .next()
                    .filter(|k| !k.is_empty()),
                None => line.split_once(" = ").map(|(key, _)| key.trim()),
            })
            .collect();
        let sections: [(&str, &[&str]); 11] = [
            ("antifraud", fields_of::<Antifraud>()),
            ("links", fields_of::<crate::Links>()),
            ("tenants.links", fields_of::<crate::TenantLinks>()),
            ("server", fields_of::<Server>()),
            ("log", fields_of::<Log>()),
            ("store", fields_of::<Store>()),
            ("workers", fields_of::<Workers>()),
            ("webhooks", fields_of::<Webhooks>()),
            ("tenants", fields_of::<Tenant>()),
            ("connectors", fields_of::<ConnectorHead>()),
            ("routes", fields_of::<Route>()),
        ];
        let kinds = [
            ("stub connector", fields_of::<StubConnector>()),
            ("smpp connector", fields_of::<SmppConnector>()),
            ("smtp connector", fields_of::<SmtpConnector>()),
            ("rcs connector", fields_of::<RcsConnector>()),
        ];
        for (section, fields) in sections.into_iter().chain(kinds) {
            for field in fields {
                assert!(
                    written.contains(field),
                    "goniec.toml does not show {section}.{field}"
                );
            }
        }
        for section in SECTIONS {
            assert!(
                sample.contains(&format!("[{section}]")),
                "goniec.toml lacks [{section}]"
            );
        }
    }

    #[test]
    fn suggestions() {
        let known = ["listen", "max_body", "max_batch"];
        assert_eq!(suggest("listn", &known), Some("listen"));
        assert_eq!(suggest("max-batch", &known), Some("max_batch"));
        assert_eq!(suggest("Max_Bach", &known), Some("max_batch"));
        assert_eq!(suggest("port", &known), None);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn env_values() {
        assert_eq!(env_value("500"), Value::Integer(500));
        assert_eq!(env_value("true"), Value::Boolean(true));
        assert_eq!(env_value("1.5"), Value::Float(1.5));
        assert_eq!(
            env_value(r#"["a", "b"]"#),
            Value::Array(vec![Value::String("a".into()), Value::String("b".into())])
        );
        assert_eq!(
            env_value("redis://h:1/0"),
            Value::String("redis://h:1/0".into())
        );
        assert_eq!(env_value("\"quoted\""), Value::String("\"quoted\"".into()));
        assert_eq!(env_value("1\nx = 2"), Value::String("1\nx = 2".into()));
        assert_eq!(env_value("2024-01-01"), Value::String("2024-01-01".into()));
    }

    #[test]
    fn within() {
        assert!(is_within("a", "a"));
        assert!(is_within("a", "a.b"));
        assert!(is_within("a", "a[0]"));
        assert!(!is_within("a", "ab"));
        assert!(!is_within("a.b", "a"));
    }
}
