//! `kind = "rcs"`: the settings of an RBM agent, and their checks.

use std::path::PathBuf;
use std::time::Duration;

use goniec_core::check::{is_http_url, Report};
use goniec_core::units::humantime_serde_compat;
use serde::Deserialize;

/// `kind = "rcs"`: Google RCS Business Messaging (RBM) over its REST API,
/// authenticated with an OAuth2 service account.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The RBM API root. Default `https://rcsbusinessmessaging.googleapis.com`.
    pub base_url: String,
    /// The RBM agent id. Required.
    pub agent_id: String,
    /// Google service-account key file (JSON with `client_email`, `private_key`,
    /// `private_key_id`, `token_uri`). Required; a key that cannot be read or
    /// parsed stops the gateway at start.
    pub service_account_key: PathBuf,
    /// OAuth2 token endpoint; overrides the key file's `token_uri`. Default none.
    pub token_uri: Option<String>,
    /// OAuth2 scope asked for. Default `https://www.googleapis.com/auth/rcsbusinessmessaging`.
    pub scope: String,
    /// The agent's client token: the HMAC secret of `X-Goog-Signature` on the
    /// platform's webhook posts. Required, at least 16 characters.
    pub client_token: String,
    /// Ask the platform whether a number is RCS-capable before the first send to
    /// it (answers cached for `capability_ttl`). Default false.
    pub check_capabilities: bool,
    /// How long a reachable/unreachable answer is remembered per number. Default `1h`.
    #[serde(with = "humantime_serde_compat")]
    pub capability_ttl: Duration,
    /// Longest wait for one API request. Default `10s`.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Idle connections kept open to the platform. Default 64.
    pub max_connections: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_url: "https://rcsbusinessmessaging.googleapis.com".into(),
            agent_id: String::new(),
            service_account_key: PathBuf::new(),
            token_uri: None,
            scope: "https://www.googleapis.com/auth/rcsbusinessmessaging".into(),
            client_token: String::new(),
            check_capabilities: false,
            capability_ttl: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

impl Config {
    /// What a valid value of each key cannot say on its own.
    pub fn check(&self, r: &mut dyn Report) {
        for (key, url) in [
            ("base_url", Some(&self.base_url)),
            ("token_uri", self.token_uri.as_ref()),
        ] {
            if let Some(url) = url {
                if !is_http_url(url) {
                    r.error(
                        key,
                        format!("must be an http:// or https:// URL with a host, got {url:?}"),
                    );
                }
            }
        }
        if self.agent_id.trim().is_empty() {
            r.error("agent_id", "missing; the RBM agent id".into());
        }
        if self.service_account_key.as_os_str().is_empty() {
            r.error(
                "service_account_key",
                "missing; the path of the agent's service-account JSON key file".into(),
            );
        }
        if self.scope.trim().is_empty() {
            r.error("scope", "must not be empty".into());
        }
        if self.client_token.chars().count() < 16 {
            r.error(
                "client_token",
                "missing or shorter than 16 characters; the agent's client token, which signs the platform's webhook posts".into(),
            );
        }
        r.positive("capability_ttl", self.capability_ttl);
        r.positive("timeout", self.timeout);
        r.at_least_one("max_connections", self.max_connections.into());
    }
}
