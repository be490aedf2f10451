//! Loading behaviour as a user of `goniec check-config` sees it: every
//! problem at once, keyed by path; env overrides; defaults.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use goniec_config::{
    load, load_from_str, ByteSize, Channel, Config, ConfigErrors, LogFormat, Policy, StoreBackend,
};

const HASH_A: &str = "sha256:090d1548c9d65f413a1a2c828a0bee3a7ae02d2137caf51e6029e6c3cb1f1fa4";
const HASH_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn no_env() -> Vec<(String, String)> {
    Vec::new()
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn errors(text: &str, env: Vec<(String, String)>) -> ConfigErrors {
    match load_from_str(text, env) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

fn keys(e: &ConfigErrors) -> Vec<&str> {
    e.errors.iter().map(|e| e.key.as_str()).collect()
}

fn message<'e>(e: &'e ConfigErrors, key: &str) -> &'e str {
    match e.at(key) {
        Some(error) => &error.message,
        None => panic!("no error at {key}; got:\n{e}"),
    }
}

fn one_tenant() -> String {
    format!(
        "[[tenants]]\nname = \"a\"\napi_keys = [\"{HASH_A}\"]\nwebhook_secret = \"0123456789abcdef\"\n"
    )
}

#[test]
fn empty_file_gives_documented_defaults() {
    let config = load_from_str("", no_env()).expect("empty config is valid");
    let s = &config.server;
    assert_eq!(s.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(s.max_body, ByteSize::new(16 * 1024 * 1024));
    assert_eq!(s.max_batch, 10_000);
    assert_eq!(s.default_region, "PL");
    assert_eq!(s.max_segments, 10);
    assert_eq!(s.max_text_chars, 100_000);
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    assert_eq!(s.header_timeout, Duration::from_secs(10));
    assert_eq!(s.body_timeout, Duration::from_secs(30));
    assert_eq!(s.max_connections, 4096);
    assert_eq!(s.max_buffered, ByteSize::new(256 * 1024 * 1024));
    assert_eq!(s.worker_threads, 0, "one per core");

    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");

    let st = &config.store;
    assert_eq!(st.backend, StoreBackend::Redis);
    assert_eq!(st.url, "redis://127.0.0.1:6379/0");
    assert_eq!(st.prefix, "goniec");
    assert_eq!(st.retention, Duration::from_secs(30 * 86_400));
    assert_eq!(st.idempotency_ttl, Duration::from_secs(24 * 3600));
    assert_eq!(st.correlation_ttl, Duration::from_secs(72 * 3600));
    assert_eq!(st.timeout, Duration::from_secs(2));

    let w = &config.workers;
    assert_eq!(w.concurrency, 256);
    assert_eq!(w.claim_batch, 128);
    assert_eq!(w.claim_idle, Duration::from_secs(60));
    assert_eq!(w.max_attempts, 10);
    assert_eq!(w.retry_base, Duration::from_secs(1));
    assert_eq!(w.retry_max, Duration::from_secs(300));
    assert_eq!(w.schedule_poll, Duration::from_millis(200));

    let h = &config.webhooks;
    assert_eq!(h.timeout, Duration::from_secs(5));
    assert_eq!(h.max_attempts, 8);
    assert_eq!(h.retry_base, Duration::from_secs(2));
    assert_eq!(h.retry_max, Duration::from_secs(3600));
    assert_eq!(h.concurrency, 64);

    assert!(config.tenants.is_empty() && config.connectors.is_empty() && config.routes.is_empty());
}

#[test]
fn stub_connector_defaults() {
    let text = "[[connectors]]\nname = \"s\"\nkind = \"stub\"\ntps = \"50/s\"\n";
    let config = load_from_str(text, no_env()).unwrap();
    let connector = &config.connectors[0];
    assert_eq!(connector.name, "s");
    assert_eq!(connector.tps.map(|r| r.count()), Some(50));
    #[allow(irrefutable_let_patterns)] // refutable once a second kind exists
    let goniec_config::ConnectorKind::Stub(stub) = &connector.kind
    else {
        panic!("not a stub: {connector:?}");
    };
    assert_eq!(stub.channels, Channel::ALL);
    assert_eq!(stub.latency, Duration::ZERO);
    assert_eq!(stub.receipt_delay, Duration::ZERO);
    assert_eq!(stub.receipt.as_str(), "delivered");
    assert_eq!((stub.transient_every, stub.permanent_every), (0, 0));
    assert_eq!(stub.record_to, None);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:9000"
max_bacth = 5

[store]
timeout = 5

{tenant}
[[tenants]]
name = "b"
api_keys = ["plain-key-pasted-by-mistake"]
webhook_secret = "0123456789abcdef"

[[connectors]]
name = "stub"
kind = "stub"

[[routes]]
channel = "sms"
connector = "missing"
"#,
        tenant = one_tenant()
    );
    let e = errors(&text, no_env());
    let mut got = keys(&e);
    got.sort();
    assert_eq!(
        got,
        [
            "routes[0].connector",
            "server.max_bacth",
            "store.timeout",
            "tenants[1].api_keys[0]"
        ],
        "{e}"
    );
    assert_eq!(
        message(&e, "server.max_bacth"),
        "unknown key `max_bacth` (did you mean `max_batch`?)"
    );
    assert!(
        message(&e, "store.timeout").contains("a duration such as"),
        "{e}"
    );
    assert!(
        message(&e, "tenants[1].api_keys[0]").contains("goniec hash-key KEY"),
        "{e}"
    );
    assert!(
        !e.to_string().contains("plain-key-pasted"),
        "a pasted key is never echoed"
    );
    assert!(
        message(&e, "routes[0].connector").contains("no connector named `missing` (known: stub)")
    );
}

#[test]
fn display_prints_file_key_and_message_per_line() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "[server]\nmax_bacth = 5\nmax_segments = \"ten\"\n[sever]"
    )
    .unwrap();
    let e = load(file.path()).unwrap_err();
    let shown = e.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    let file = file.path().display().to_string();
    assert_eq!(lines.len(), 3, "{shown}");
    assert!(
        lines.contains(
            &format!("{file}: sever: unknown section `sever` (did you mean `server`?)").as_str()
        ),
        "{shown}"
    );
    assert!(
        lines.contains(
            &format!(
                "{file}: server.max_bacth: unknown key `max_bacth` (did you mean `max_batch`?)"
            )
            .as_str()
        ),
        "{shown}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}: server.max_segments: found the text"))),
        "{shown}"
    );
    // It is an std error, usable with `?` into anyhow / Box<dyn Error>.
    let _: Box<dyn std::error::Error> = Box::new(e);
}

#[test]
fn missing_file_is_one_error() {
    let e = load(std::path::Path::new("/nonexistent/goniec.toml")).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(
        e.to_string()
            .starts_with("/nonexistent/goniec.toml: cannot read the file"),
        "{e}"
    );
}

#[test]
fn toml_syntax_error_has_line_and_column() {
    let e = errors("[server]\nmax_batch = 5\nlisten = \n", no_env());
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(e.errors[0].key, "line 3, column 10", "{e}");
    assert!(e.errors[0].message.starts_with("invalid TOML"), "{e}");
}

#[test]
fn bad_list_items_are_pinpointed() {
    let text = r#"
[[connectors]]
name = "s"
kind = "stub"
channels = ["sms", "fax", 5]
latency = "soon"
"#;
    let e = errors(text, no_env());
    assert_eq!(
        keys(&e),
        [
            "connectors[0].channels[1]",
            "connectors[0].channels[2]",
            "connectors[0].latency"
        ],
        "{e}"
    );
    assert!(
        message(&e, "connectors[0].channels[1]").contains("unknown variant `fax`"),
        "{e}"
    );
}

#[test]
fn wrong_shapes_of_sections() {
    let text = "server = 5\ntenants = { name = \"x\" }\nroutes = [1]\n";
    let e = errors(text, no_env());
    assert_eq!(keys(&e), ["server", "tenants", "routes[0]"], "{e}");
    assert!(
        message(&e, "tenants").contains("write [[tenants]], not [tenants]"),
        "{e}"
    );
}

#[test]
fn connector_kinds() {
    let text = r#"
[[connectors]]
name = "a"
kind = "smtq"
host = "127.0.0.1"

[[connectors]]
name = "b"
kind = "stbu"

[[connectors]]
name = "c"

[[connectors]]
name = "d"
kind = "stub"
hots = "x"
receipt = "maybe"

[[routes]]
channel = "sms"
connector = "a"
"#;
    let e = errors(text, no_env());
    assert_eq!(
        keys(&e),
        [
            "connectors[0].kind",
            "connectors[1].kind",
            "connectors[2].kind",
            "connectors[3].hots",
            "connectors[3].receipt"
        ],
        "{e}"
    );
    assert_eq!(
        message(&e, "connectors[0].kind"),
        "unknown connector kind `smtq` (did you mean `smtp`?); known kinds: stub, smpp, smtp, rcs"
    );
    assert!(
        message(&e, "connectors[1].kind").contains("did you mean `stub`?"),
        "{e}"
    );
    assert!(
        message(&e, "connectors[2].kind").starts_with("missing"),
        "{e}"
    );
    assert!(
        message(&e, "connectors[3].hots").contains("(in a `stub` connector)"),
        "{e}"
    );
    // routes[0] names connector `a`, whose error is already reported: no second error.
}

#[test]
fn routes_need_channel_and_connector() {
    let text = "[[connectors]]\nname = \"s\"\nkind = \"stub\"\nchannels = [\"sms\"]\n\
         [[routes]]\nprefix = \"+48\"\n\
         [[routes]]\nchannel = \"email\"\nconnector = \"s\"\n\
         [[routes]]\nchannel = \"fax\"\nconnector = \"s\"\n\
         [[routes]]\nchannel = \"sms\"\nprefix = \"48\"\nconnector = \"s\"\n";
    let e = errors(text, no_env());
    assert_eq!(
        keys(&e),
        [
            "routes[0].channel",
            "routes[0].connector",
            "routes[1].channel",
            "routes[2].channel",
            "routes[3].prefix"
        ],
        "{e}"
    );
    assert!(
        message(&e, "routes[1].channel").contains("does not carry email"),
        "{e}"
    );
}

#[test]
fn bad_values_are_not_reported_twice() {
    // api_keys has the wrong type: one error, not also "needs at least one key".
    let text = "[[tenants]]\nname = \"a\"\napi_keys = \"sha256:x\"\nwebhook_secret = \"0123456789abcdef\"\n";
    let e = errors(text, no_env());
    assert_eq!(keys(&e), ["tenants[0].api_keys"], "{e}");
}

#[test]
fn env_overrides_strings_integers_and_list_items() {
    let text = format!(
        "{}senders = [\"ACME\", \"OLD\"]\npolicy = \"collection\"\n",
        one_tenant()
    );
    let config = load_from_str(
        &text,
        env(&[
            ("GONIEC_STORE__URL", "rediss://redis.internal:6380/2"),
            ("GONIEC_SERVER__MAX_BATCH", "500"),
            ("GONIEC_SERVER__MAX_BODY", "1MiB"),
            ("GONIEC_LOG__FORMAT", "json"),
            (
                "GONIEC_TENANTS__0__WEBHOOK_SECRET",
                "a-much-longer-secret-from-env",
            ),
            // Reads as a number, but the key wants text: taken as written.
            ("GONIEC_TENANTS__0__SENDERS__1", "+48500100200"),
            ("GONIEC_TENANTS__0__POLICY", "transactional"),
            ("GONIEC_TENANTS__0__RATE", "60/min"),
            // A whole list as TOML.
            (
                "GONIEC_TENANTS__0__API_KEYS",
                &format!("[\"{HASH_A}\", \"{HASH_B}\"]"),
            ),
            // Index == length adds an item.
            ("GONIEC_TENANTS__1__NAME", "b"),
            (
                "GONIEC_TENANTS__1__API_KEYS__0",
                "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
            ),
            ("GONIEC_TENANTS__1__WEBHOOK_SECRET", "1234567890123456"),
            // Not config: ignored.
            ("GONIEC_LOG", "debug"),
            ("PATH", "/usr/bin"),
            ("goniec_server__max_batch", "1"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.store.url, "rediss://redis.internal:6380/2");
    assert_eq!(config.server.max_batch, 500);
    assert_eq!(config.server.max_body, ByteSize::mib(1));
    assert_eq!(config.log.format, LogFormat::Json);
    let t = &config.tenants[0];
    assert_eq!(t.webhook_secret, "a-much-longer-secret-from-env");
    assert_eq!(t.senders, ["ACME", "+48500100200"]);
    assert_eq!(t.policy, Policy::Transactional);
    assert_eq!(t.rate.map(|r| r.to_string()), Some("60/min".to_owned()));
    assert_eq!(t.api_keys, [HASH_A, HASH_B]);
    assert_eq!(config.tenants[1].name, "b");
    // A numeric secret from env is text, as the key wants.
    assert_eq!(config.tenants[1].webhook_secret, "1234567890123456");
}

#[test]
fn env_errors_name_the_variable() {
    let e = errors(
        &one_tenant(),
        env(&[
            ("GONIEC_SERVER__PORTT", "8080"),
            ("GONIEC_SERVR__LISTEN", "0.0.0.0:80"),
            ("GONIEC_SERVER__MAX_BATCH", "lots"),
            ("GONIEC_TENANTS__5__NAME", "x"),
            ("GONIEC_TENANTS__0__WEBHOOK_SECRET", "short"),
            ("GONIEC_STORE__URL__X", "y"),
            ("GONIEC_STORE____URL", "y"),
        ]),
    );
    let mut got = keys(&e);
    got.sort();
    assert_eq!(
        got,
        [
            "env GONIEC_SERVER__MAX_BATCH",
            "env GONIEC_SERVER__PORTT",
            "env GONIEC_SERVR__LISTEN",
            "env GONIEC_STORE__URL__X",
            "env GONIEC_STORE____URL",
            "env GONIEC_TENANTS__0__WEBHOOK_SECRET",
            "env GONIEC_TENANTS__5__NAME",
        ],
        "{e}"
    );
    assert_eq!(message(&e, "env GONIEC_SERVER__PORTT"), "server.portt: unknown key `portt`; expected one of: listen, max_body, max_batch, default_region, max_segments, max_attachments, max_text_chars, shutdown_grace, header_timeout, body_timeout, max_connections, max_buffered, worker_threads");
    assert!(
        message(&e, "env GONIEC_SERVR__LISTEN").contains("did you mean `server`?"),
        "{e}"
    );
    assert!(
        message(&e, "env GONIEC_SERVER__MAX_BATCH").starts_with("server.max_batch: found the text"),
        "{e}"
    );
    assert!(
        message(&e, "env GONIEC_TENANTS__5__NAME")
            .contains("past the end of `tenants`, which has 1 item(s)"),
        "{e}"
    );
    assert!(
        message(&e, "env GONIEC_TENANTS__0__WEBHOOK_SECRET")
            .starts_with("tenants[0].webhook_secret: must be at least 16"),
        "{e}"
    );
    // The file has no [store], so the variable made `store.url` a table.
    assert!(
        message(&e, "env GONIEC_STORE__URL__X").starts_with("store.url: found a table"),
        "{e}"
    );
    assert!(
        message(&e, "env GONIEC_STORE____URL").contains("exactly two underscores"),
        "{e}"
    );
}

#[test]
fn env_cannot_descend_into_a_value() {
    let e = errors(
        "[store]\nurl = \"redis://h/0\"\n",
        env(&[("GONIEC_STORE__URL__X", "y")]),
    );
    assert_eq!(keys(&e), ["env GONIEC_STORE__URL__X"], "{e}");
    assert!(
        message(&e, "env GONIEC_STORE__URL__X").contains("`store.url` holds a string"),
        "{e}"
    );
}

#[test]
fn default_config_round_trips_through_validate() {
    assert!(Config::default().validate().is_ok());
}

#[test]
fn admin_keys_must_be_hashes_of_their_own() {
    let text = format!(
        r#"
[admin]
api_keys = ["{HASH_A}", "operator-key", "{HASH_B}"]

[[tenants]]
name = "acme"
api_keys = ["{HASH_A}"]
webhook_secret = "0123456789abcdef"
"#
    );
    let e = errors(&text, no_env());
    assert_eq!(keys(&e), ["admin.api_keys[0]", "admin.api_keys[1]"]);
    assert!(message(&e, "admin.api_keys[0]").contains("tenant"));
    assert!(message(&e, "admin.api_keys[1]").contains("hash-key"));
    assert!(
        !e.to_string().contains("operator-key"),
        "a pasted key is never echoed"
    );
}

#[test]
fn smpp_connectors_are_checked_field_by_field() {
    let text = r#"
[[connectors]]
name = "smsc-a"
kind = "smpp"
host = "127.0.0.1"
port = 2775
system_id = "goniec"
password = "secret"
binds = 4
window = 100
tps = "500/s"

[[connectors]]
name = "smsc-b"
kind = "smpp"
system_id = "a-system-id-that-is-far-too-long"
password = "toolongpassword"
bind_type = "receiver"
address_range = "a-range-of-addresses-longer-than-forty-characters"
binds = 0
data_coding = 8
concat = "udh7"
default_validity = "0s"
query_max = 0
query_after = "0s"

[[routes]]
channel = "sms"
connector = "smsc-a"

[[routes]]
channel = "email"
connector = "smsc-a"
"#;
    let e = errors(text, no_env());
    assert_eq!(
        keys(&e),
        [
            "connectors[1].system_id",
            "connectors[1].password",
            "connectors[1].bind_type",
            "connectors[1].address_range",
            "connectors[1].binds",
            "connectors[1].data_coding",
            "connectors[1].concat",
            "connectors[1].default_validity",
            "connectors[1].query_max",
            "routes[1].channel",
        ],
        "{e}"
    );
    let ok = text
        .split("[[connectors]]\nname = \"smsc-b\"")
        .next()
        .unwrap()
        .to_string()
        + "[[routes]]\nchannel = \"sms\"\nconnector = \"smsc-a\"\n";
    let cfg = load_from_str(&ok, no_env()).unwrap_or_else(|e| panic!("{e}"));
    let goniec_config::ConnectorKind::Smpp(smpp) = &cfg.connectors[0].kind else {
        panic!("not smpp")
    };
    assert_eq!(
        (
            smpp.port,
            smpp.binds,
            smpp.window,
            smpp.concat.as_str(),
            smpp.bind_type.as_str()
        ),
        (2775, 4, 100, "udh8", "transceiver")
    );
    // Receipts overdue: asked after 10 minutes, at most 5 times; given up 48 h + 1 h
    // after submission.
    assert_eq!(
        (
            smpp.query_after,
            smpp.query_max,
            smpp.default_validity,
            smpp.receipt_grace
        ),
        (
            std::time::Duration::from_secs(600),
            5,
            std::time::Duration::from_secs(48 * 3600),
            std::time::Duration::from_secs(3600)
        )
    );
}

#[test]
fn tenant_antifraud_policies_lay_over_the_defaults() {
    let tenant = |name: &str, extra: &str| {
        format!(
            "[[tenants]]\nname = \"{name}\"\napi_keys = [\"sha256:{h}\"]\nwebhook_secret = \"1234567890123456\"\n{extra}\n",
            h = &name.repeat(64)[..64]
        )
    };
    let text = format!(
        "[antifraud.defaults.duplicates]\nwindow = \"2h\"\n[antifraud.defaults.contact]\nmax_per_day = 2\n\n{}{}",
        tenant(
            "a",
            "policy = \"transactional\"\nsenders = [\"ACME\"]\n[tenants.antifraud.contact]\nmax_per_day = 5\n[tenants.antifraud.links]\npayment_domains = [\"Pay.ACME.example.\"]"
        ),
        tenant("b", ""),
    );
    let cfg = load_from_str(&text, no_env()).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (&cfg.tenants[0].antifraud, &cfg.tenants[1].antifraud);
    assert_eq!(a.contact.max_per_day, Some(5), "the tenant's own key wins");
    assert_eq!(b.contact.max_per_day, Some(2), "the default applies");
    assert_eq!(
        a.contact.max_per_week, b.contact.max_per_week,
        "untouched keys stay"
    );
    assert_eq!(a.duplicates.window, std::time::Duration::from_secs(7200));
    assert_eq!(a.links.payment_domains, ["pay.acme.example"], "normalised");
    assert_eq!(a.policy, goniec_antifraud::PolicyKind::Transactional);
    assert_eq!(a.senders, ["ACME"]);
    assert_eq!(b.policy, goniec_antifraud::PolicyKind::Collection);

    let bad = format!(
        "[antifraud.defaults.contact]\nweekdays = \"25:00-20:00\"\n\n{}",
        tenant("c", "[tenants.antifraud]\npolicy = \"transactional\""),
    );
    let e = errors(&bad, no_env());
    let k = keys(&e);
    assert!(k.contains(&"antifraud.defaults.contact.weekdays"), "{e}");
    assert!(k.contains(&"tenants[0].antifraud.policy"), "{e}");
    assert!(
        !e.to_string().contains("\nin `"),
        "one line per problem: {e}"
    );
    let bad = tenant(
        "d",
        "[tenants.antifraud.recipients]\nallowed_countries = [\"XX\"]",
    );
    let e = errors(&bad, no_env());
    let k = keys(&e);
    assert!(
        k.iter()
            .any(|k| k.starts_with("tenants[0].antifraud.recipients.allowed_countries")),
        "{e}"
    );
}

#[test]
fn tenant_names_are_safe_for_store_keys_and_labels() {
    let text = |name: &str| {
        format!(
            "[[tenants]]\nname = \"{name}\"\napi_keys = [\"{HASH_A}\"]\nwebhook_secret = \"1234567890123456\"\n"
        )
    };
    assert!(load_from_str(&text("acme-windykacja_2.pl"), no_env()).is_ok());
    let e = errors(&text("acme:prod"), no_env());
    assert_eq!(keys(&e), ["tenants[0].name"], "{e}");
    assert!(e.to_string().contains("only letters, digits"), "{e}");
}
