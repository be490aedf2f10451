//! The sample config shipped in the repository must load cleanly and say
//! what the docs say.

use std::path::Path;
use std::time::Duration;

use goniec_config::{load, load_from_str, Config, LogFormat, Policy, StoreBackend};

fn sample_path() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/goniec.toml"))
}

fn sample() -> Config {
    let text = std::fs::read_to_string(sample_path()).expect("sample config is readable");
    // No environment: the checks below are about the file itself.
    load_from_str(&text, []).unwrap_or_else(|e| panic!("sample config is invalid:\n{e}"))
}

#[test]
fn sample_loads_from_disk() {
    // The real entry point, process environment included: only `GONIEC_…__…`
    // names are config overrides (tests/run sets GONIEC_SKIP_FILE and the like).
    let overrides: Vec<String> = std::env::vars()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("GONIEC_") && name.contains("__"))
        .collect();
    if let Err(e) = load(sample_path()) {
        panic!("the sample does not load (config overrides set: {overrides:?}):\n{e}");
    }
}

#[test]
fn sample_sets_the_defaults_and_one_tenant() {
    let config = sample();
    let defaults = Config::default();
    assert_eq!(config.server, defaults.server);
    assert_eq!(config.log, defaults.log);
    assert_eq!(config.store, defaults.store);
    assert_eq!(config.workers, defaults.workers);
    assert_eq!(config.webhooks, defaults.webhooks);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.store.backend, StoreBackend::Redis);
    assert_eq!(config.store.retention, Duration::from_secs(30 * 24 * 3600));

    assert_eq!(config.tenants.len(), 1);
    let tenant = &config.tenants[0];
    assert_eq!(tenant.name, "acme-windykacja");
    assert_eq!(
        tenant.api_keys,
        ["sha256:090d1548c9d65f413a1a2c828a0bee3a7ae02d2137caf51e6029e6c3cb1f1fa4"]
    );
    assert_eq!(tenant.policy, Policy::Collection);
    assert_eq!(tenant.rate.map(|r| r.per_second()), Some(1000.0));
    assert_eq!(tenant.senders, ["ACME", "+48500100200", "@acme.example"]);
    assert!(!tenant.allow_private_callbacks);
    assert!(tenant.callback_url.is_none());

    assert!(config.connectors.is_empty(), "connectors are examples only");
    assert!(config.routes.is_empty(), "routes are examples only");
}

#[test]
fn sample_stub_connector_example_loads_when_uncommented() {
    // The commented stub block documents the stub's keys; uncommented, it
    // (plus a route to it) must be valid too.
    let text = std::fs::read_to_string(sample_path()).expect("sample config is readable");
    let start = text
        .find("# [[connectors]]\n# name = \"stub\"")
        .expect("stub example present");
    let block: String = text[start..]
        .lines()
        .take_while(|line| line.starts_with('#') && !line.starts_with("# ---"))
        .map(|line| line.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let full = format!("{text}\n{block}\n[[routes]]\nchannel = \"sms\"\nconnector = \"stub\"\n");
    let config = load_from_str(&full, []).unwrap_or_else(|e| panic!("{e}\n---\n{block}"));
    assert_eq!(config.connectors.len(), 1);
    assert_eq!(config.connectors[0].kind.kind_name(), "stub");
    assert_eq!(config.routes.len(), 1);
}

#[test]
fn sample_smpp_connector_example_loads_when_uncommented() {
    let text = std::fs::read_to_string(sample_path()).expect("sample config is readable");
    let start = text
        .find("# [[connectors]]\n# name = \"smsc-a\"")
        .expect("smpp example present");
    let block: String = text[start..]
        .lines()
        .take_while(|line| line.starts_with("# ") && !line.starts_with("# `kind"))
        .map(|line| line.trim_start_matches('#').trim_start())
        .collect::<Vec<_>>()
        .join("\n");
    let full = format!("{text}\n{block}\n[[routes]]\nchannel = \"sms\"\nconnector = \"smsc-a\"\n");
    let cfg = goniec_config::load_from_str(&full, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}\n{full}"));
    let goniec_config::ConnectorKind::Smpp(smpp) = &cfg.connectors[0].kind else {
        panic!("not smpp")
    };
    assert_eq!((smpp.binds, smpp.source_ton_npi), (4, Some([5, 0])));
}
