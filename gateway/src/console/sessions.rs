//! Console logins: an operator key exchanged for a session, held by the
//! browser in an `HttpOnly; SameSite=Strict` cookie that expires with it.
//!
//! Sessions live in this instance's memory, keyed by the SHA-256 of the token
//! (so a lookup's timing says nothing about stored tokens). The console shows
//! this instance's binds and rates, so a login belongs to one instance; behind
//! a load balancer, open the console on one pod (sticky sessions or a port
//! forward). A restart logs everyone out. Each session has its own CSRF token,
//! which every state-changing request made with the cookie must send back in
//! `X-CSRF-Token` (the page holds it; other sites cannot read it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "goniec-console";

/// Sessions kept at most; the oldest goes when a login would pass it.
const MAX_SESSIONS: usize = 1_000;

/// One login.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in, for the admin log: `name (key sha256:1a2b3c4d)`.
    pub who: String,
    pub csrf: String,
    pub expires: Instant,
}

impl Session {
    /// Whether `token` is this session's CSRF token (constant-time).
    pub fn csrf_ok(&self, token: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes()))
    }
}

/// Why a cookie does not log anyone in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No session has this token (never did, logged out, or another instance's).
    Unknown,
    Expired,
}

/// The sessions of this instance.
pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

impl Sessions {
    pub fn new(ttl: Duration) -> Self {
        Sessions {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `who`: its cookie token and the session.
    pub fn create(&self, who: String) -> (String, Session) {
        let token = random_token();
        let s = Session {
            who,
            csrf: random_token(),
            expires: Instant::now() + self.ttl,
        };
        let mut g = self.lock();
        // Expired sessions are kept for a while to say "expired" rather than
        // "unknown"; they go once they are a whole lifetime past.
        let now = Instant::now();
        g.retain(|_, s| s.expires + self.ttl > now);
        if g.len() >= MAX_SESSIONS {
            if let Some(oldest) = g.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                g.remove(&oldest);
            }
        }
        g.insert(digest(&token), s.clone());
        (token, s)
    }

    /// The live session of a cookie token.
    pub fn get(&self, token: &str) -> Result<Session, Refused> {
        let g = self.lock();
        let s = g.get(&digest(token)).ok_or(Refused::Unknown)?;
        if s.expires <= Instant::now() {
            return Err(Refused::Expired);
        }
        Ok(s.clone())
    }

    /// Log out: the token logs no one in any more.
    pub fn remove(&self, token: &str) {
        self.lock().remove(&digest(token));
    }
}

/// The session cookie's token in a request's `Cookie` headers.
pub fn cookie_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_log_out() {
        let s = Sessions::new(Duration::from_millis(50));
        let (token, session) = s.create("ala (key sha256:00000000)".into());
        assert_eq!(s.get(&token).unwrap().who, session.who);
        assert!(s.get(&token).unwrap().csrf_ok(&session.csrf));
        assert!(!s.get(&token).unwrap().csrf_ok("nope"));
        assert_eq!(s.get("other").unwrap_err(), Refused::Unknown);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.get(&token).unwrap_err(), Refused::Expired);
        let (t2, _) = s.create("b".into());
        assert!(s.get(&t2).is_ok());
        s.remove(&t2);
        assert_eq!(s.get(&t2).unwrap_err(), Refused::Unknown);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "a=1; goniec-console=tok; b=2".parse().unwrap());
        assert_eq!(cookie_token(&h), Some("tok"));
        let mut h = axum::http::HeaderMap::new();
        h.append("cookie", "goniec-consolex=1".parse().unwrap());
        h.append("cookie", "goniec-console=".parse().unwrap());
        assert_eq!(cookie_token(&h), None);
    }
}
