//! Things that are valid but almost certainly not what the operator wants: a
//! config that cannot send anything, or one still carrying the sample's public
//! key and placeholder secrets. `goniec check-config` prints them without
//! failing, and `goniec serve` logs them at start.

use crate::{Config, ConfigError};

/// `sha256:` of "demo-key-change-me", the key whose hash the shipped sample
/// config carries: it is public, so anyone could use a tenant that keeps it.
pub const SAMPLE_KEY_HASH: &str =
    "sha256:090d1548c9d65f413a1a2c828a0bee3a7ae02d2137caf51e6029e6c3cb1f1fa4";

/// Every warning, each with its key path.
pub fn warnings(cfg: &Config) -> Vec<ConfigError> {
    let mut out = Vec::new();
    if cfg.connectors.is_empty() {
        out.push(ConfigError::new(
            "connectors",
            "no connectors: messages can be accepted but never sent (add [[connectors]] and [[routes]])",
        ));
    } else if cfg.routes.is_empty() {
        out.push(ConfigError::new(
            "routes",
            "no routes: messages can be accepted but never sent (add [[routes]] naming a connector)",
        ));
    }
    for (i, t) in cfg.tenants.iter().enumerate() {
        for (k, key) in t.api_keys.iter().enumerate() {
            if key.eq_ignore_ascii_case(SAMPLE_KEY_HASH) {
                out.push(ConfigError::new(
                    format!("tenants[{i}].api_keys[{k}]"),
                    "is the sample config's public demo key (demo-key-change-me): anyone can use it; \
                     make your own with `goniec gen-key`",
                ));
            }
        }
        if is_placeholder(&t.webhook_secret) {
            out.push(ConfigError::new(
                format!("tenants[{i}].webhook_secret"),
                "is a placeholder (contains `change-me`): callbacks signed with it can be forged; \
                 set a long random secret, e.g. from the environment (GONIEC_TENANTS__N__WEBHOOK_SECRET)",
            ));
        }
    }
    if cfg.admin.metrics_keys.is_empty()
        && cfg.admin.metrics_listen.is_none()
        && !cfg.server.listen.ip().is_loopback()
    {
        out.push(ConfigError::new(
            "admin.metrics_keys",
            "GET /metrics is open on the API's public listener and names tenants and connectors; \
             set metrics_keys (a scraper's key) or metrics_listen (an address of its own)",
        ));
    }
    for (k, key) in cfg.admin.api_keys.iter().enumerate() {
        if key.eq_ignore_ascii_case(SAMPLE_KEY_HASH) {
            out.push(ConfigError::new(
                format!("admin.api_keys[{k}]"),
                "is the sample config's public demo key: anyone could act as an operator",
            ));
        }
    }
    out
}

fn is_placeholder(secret: &str) -> bool {
    let s = secret.to_ascii_lowercase();
    s.contains("change-me") || s.contains("changeme") || s.contains("change_me")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_config_warns_and_a_real_one_does_not() {
        let sample = crate::load_from_str(include_str!("../goniec.toml"), []).unwrap();
        let keys: Vec<String> = warnings(&sample).into_iter().map(|w| w.key).collect();
        assert_eq!(
            keys,
            [
                "connectors",
                "tenants[0].api_keys[0]",
                "tenants[0].webhook_secret"
            ]
        );

        let mut real = sample;
        real.tenants[0].api_keys = vec![format!("sha256:{}", "ab".repeat(32))];
        real.tenants[0].webhook_secret = "s3cr3t-7f1e9a2b4c6d8e0f".into();
        real.connectors = crate::load_from_str(
            "[[connectors]]\nname = \"a\"\nkind = \"smpp\"\nsystem_id = \"x\"\npassword = \"y\"\n\
             [[routes]]\nchannel = \"sms\"\nconnector = \"a\"\n",
            [],
        )
        .unwrap()
        .connectors;
        assert_eq!(warnings(&real).len(), 1, "routes still missing");
        real.routes = crate::load_from_str(
            "[[connectors]]\nname = \"a\"\nkind = \"smpp\"\nsystem_id = \"x\"\npassword = \"y\"\n\
             [[routes]]\nchannel = \"sms\"\nconnector = \"a\"\n",
            [],
        )
        .unwrap()
        .routes;
        assert!(warnings(&real).is_empty(), "{:?}", warnings(&real));
    }
}
