//! `goniec demo` as a newcomer runs it: the real binary, started with known keys
//! on a free port, its banner read for the API address; killed (by its PID) on
//! drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct DemoProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub api: String,
    pub key: String,
    pub admin_key: String,
    /// The webhook secret from the banner.
    pub webhook_secret: String,
}

impl DemoProcess {
    /// Start `binary demo` (the test's `env!("CARGO_BIN_EXE_goniec")`) and wait
    /// up to 30 s for its banner.
    pub fn start(binary: &Path) -> DemoProcess {
        Self::start_with(binary, &[])
    }

    /// [`DemoProcess::start`] with more arguments (`--store URL`).
    pub fn start_with(binary: &Path, more: &[&str]) -> DemoProcess {
        let (key, admin_key) = ("demo-test-key", "demo-test-admin-key");
        let mut child = Command::new(binary)
            .args(["demo", "--listen", "127.0.0.1:0", "--api-key", key])
            .args(["--admin-key", admin_key])
            .args(more)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("goniec demo starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut api = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = line.trim();
                if let Some(a) = line.strip_prefix("API:") {
                    api = Some(a.trim().to_string());
                }
                if let (Some(a), Some(secret)) = (&api, line.strip_prefix("Webhook secret:")) {
                    let _ = tx.send((a.clone(), secret.trim().to_string()));
                }
            }
        });
        let (api, webhook_secret) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo prints its API address and webhook secret");
        DemoProcess {
            child,
            api,
            key: key.into(),
            admin_key: admin_key.into(),
            webhook_secret,
        }
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
