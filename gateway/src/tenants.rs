//! Tenants as the gateway runs them: their settings, rate limiters, e-mail
//! signing prepared once, and the API key hashes that authenticate them.

use std::sync::Arc;

use goniec_config::{Rate, Tenant};
use governor::{DefaultDirectRateLimiter, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A governor limiter for a readable rate; the burst is one period's worth.
pub fn limiter(rate: &Rate) -> DefaultDirectRateLimiter {
    RateLimiter::direct(rate.quota())
}

/// One tenant with its runtime state.
pub struct TenantCtx {
    pub cfg: Tenant,
    /// Messages per second it may submit.
    pub limiter: Option<DefaultDirectRateLimiter>,
    /// API requests per second it may make.
    pub request_limiter: Option<DefaultDirectRateLimiter>,
    /// E-mail signing and unsubscribe headers, prepared once.
    pub mail: MailSettings,
}

/// A tenant's e-mail settings, ready for the SMTP connector.
#[derive(Debug, Clone, Default)]
pub struct MailSettings {
    pub dkim: Option<Arc<lettre::message::dkim::DkimConfig>>,
    /// `List-Unsubscribe` value, and whether the URL takes one-click posts.
    pub list_unsubscribe: Option<String>,
    pub one_click: bool,
}

impl MailSettings {
    /// Read and check the DKIM key (a bad one is an error at start, not at send).
    pub fn new(t: &Tenant) -> Result<Self, String> {
        use lettre::message::dkim::{
            DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
            DkimSigningKey,
        };
        use lettre::message::header::HeaderName;
        let e = &t.email;
        let dkim = match (&e.dkim_domain, &e.dkim_selector, &e.dkim_private_key) {
            (Some(domain), Some(selector), Some(path)) => {
                let pem = std::fs::read_to_string(path)
                    .map_err(|err| format!("cannot read the DKIM key {path}: {err}"))?;
                let key = DkimSigningKey::new(&pem, DkimSigningAlgorithm::Rsa).map_err(|err| {
                    format!("the DKIM key {path} is not an RSA private key (PKCS#1 PEM): {err}")
                })?;
                // relaxed/relaxed: relays may refold long (encoded) headers, which
                // breaks `simple` header signatures; RFC 8058 wants the
                // List-Unsubscribe pair signed.
                let headers = [
                    "From",
                    "To",
                    "Subject",
                    "Date",
                    "Message-ID",
                    "MIME-Version",
                    // Not Content-Type: lettre keeps it on the MIME part, so it
                    // would be named in h= but missing from the signed hash.
                    "List-Unsubscribe",
                    "List-Unsubscribe-Post",
                ]
                .into_iter()
                .map(HeaderName::new_from_ascii_str)
                .collect();
                let canon = DkimCanonicalization {
                    header: DkimCanonicalizationType::Relaxed,
                    body: DkimCanonicalizationType::Relaxed,
                };
                Some(Arc::new(DkimConfig::new(
                    selector.clone(),
                    domain.clone(),
                    key,
                    headers,
                    canon,
                )))
            }
            _ => None,
        };
        let mut targets = Vec::new();
        if let Some(m) = &e.unsubscribe_mailto {
            targets.push(format!("<mailto:{m}>"));
        }
        if let Some(u) = &e.unsubscribe_url {
            targets.push(format!("<{u}>"));
        }
        Ok(MailSettings {
            dkim,
            list_unsubscribe: (!targets.is_empty()).then(|| targets.join(", ")),
            one_click: e.unsubscribe_url.is_some(),
        })
    }
}

/// Tenants and their API key hashes.
pub struct Tenants {
    keys: Vec<([u8; 32], usize)>,
    list: Vec<Arc<TenantCtx>>,
    /// Operator key hashes (`[admin]`).
    admin: Vec<[u8; 32]>,
    /// Keys that may read `/metrics` (besides operator keys); empty: open.
    metrics: Vec<[u8; 32]>,
}

fn parse_hash(k: &str) -> Option<[u8; 32]> {
    let mut h = [0u8; 32];
    hex::decode_to_slice(k.strip_prefix("sha256:")?, &mut h).ok()?;
    Some(h)
}

/// `sha256:<hex>` as stored in config, for `goniec hash-key`.
pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

impl Tenants {
    /// Fails, naming the tenant, when its e-mail settings cannot be prepared.
    pub fn new(cfg: &[Tenant], admin: &goniec_config::Admin) -> Result<Self, String> {
        let mut keys = Vec::new();
        let mut list = Vec::new();
        for (i, t) in cfg.iter().enumerate() {
            keys.extend(
                t.api_keys
                    .iter()
                    .filter_map(|k| parse_hash(k))
                    .map(|h| (h, i)),
            );
            let mail = MailSettings::new(t).map_err(|e| format!("tenant `{}`: {e}", t.name))?;
            list.push(Arc::new(TenantCtx {
                cfg: t.clone(),
                limiter: t.rate.as_ref().map(limiter),
                request_limiter: t.request_rate.as_ref().map(limiter),
                mail,
            }));
        }
        let metrics = admin
            .metrics_keys
            .iter()
            .filter_map(|k| parse_hash(k))
            .collect();
        let admin = admin
            .api_keys
            .iter()
            .filter_map(|k| parse_hash(k))
            .collect();
        Ok(Tenants {
            keys,
            list,
            admin,
            metrics,
        })
    }

    /// Whether admin endpoints are configured at all.
    pub fn admin_enabled(&self) -> bool {
        !self.admin.is_empty()
    }

    /// Whether `/metrics` wants a key at all.
    pub fn metrics_protected(&self) -> bool {
        !self.metrics.is_empty()
    }

    /// Whether a bearer token may read `/metrics`: a metrics key or an operator
    /// key (constant-time, every key compared).
    pub fn is_metrics_reader(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let metrics = self
            .metrics
            .iter()
            .fold(false, |found, h| found | bool::from(h.ct_eq(&digest)));
        metrics | self.is_admin(token)
    }

    /// Whether a bearer token is an operator key (constant-time, every key compared).
    pub fn is_admin(&self, token: &str) -> bool {
        self.admin_key(token).is_some()
    }

    /// The operator key a token is, named by the start of its configured hash
    /// (`sha256:1a2b3c4d`, safe to log and audit); `None` when it is none.
    /// Constant-time, every key compared.
    pub fn admin_key(&self, token: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for h in &self.admin {
            if bool::from(h.ct_eq(&digest)) {
                found = Some(h);
            }
        }
        found.map(|h| format!("sha256:{}", hex::encode(&h[..4])))
    }

    /// The tenant owning a bearer token. Compares hashes in constant time and looks at
    /// every key, so timing says nothing about which (or whether a) key matched.
    pub fn authenticate(&self, token: &str) -> Option<Arc<TenantCtx>> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = usize::MAX;
        for (h, i) in &self.keys {
            if bool::from(h.ct_eq(&digest)) {
                found = *i;
            }
        }
        self.list.get(found).cloned()
    }

    /// Every tenant.
    pub fn all(&self) -> impl Iterator<Item = &Arc<TenantCtx>> {
        self.list.iter()
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<TenantCtx>> {
        self.list.iter().find(|t| t.cfg.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(key: &str) -> Tenant {
        let mut t = Tenant {
            name: "acme".into(),
            ..Default::default()
        };
        t.email.dkim_domain = Some("acme.example".into());
        t.email.dkim_selector = Some("goniec".into());
        t.email.dkim_private_key = Some(key.into());
        t
    }

    #[test]
    fn a_bad_dkim_key_is_an_error_at_start() {
        let e = MailSettings::new(&tenant("/nonexistent/dkim.pem")).unwrap_err();
        assert!(e.contains("cannot read the DKIM key"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = MailSettings::new(&tenant(f.path().to_str().unwrap())).unwrap_err();
        assert!(e.contains("is not an RSA private key"), "{e}");
        let cfg = [tenant("/nonexistent/dkim.pem")];
        let e = Tenants::new(&cfg, &Default::default()).err().unwrap();
        assert!(e.starts_with("tenant `acme`:"), "{e}");
    }

    #[test]
    fn list_unsubscribe_lists_mailto_then_url() {
        let mut t = Tenant::default();
        t.email.unsubscribe_mailto = Some("u@acme.example".into());
        let m = MailSettings::new(&t).unwrap();
        assert_eq!(
            m.list_unsubscribe.as_deref(),
            Some("<mailto:u@acme.example>")
        );
        assert!(!m.one_click, "one-click needs a URL");
        t.email.unsubscribe_url = Some("https://acme.example/u".into());
        let m = MailSettings::new(&t).unwrap();
        assert_eq!(
            m.list_unsubscribe.as_deref(),
            Some("<mailto:u@acme.example>, <https://acme.example/u>")
        );
        assert!(m.one_click);
    }
}
