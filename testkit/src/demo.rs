//! `goniec demo` as a newcomer runs it: the real binary, started with known keys
//! on a free port, its banner read for the API address; stopped (by its PID)
//! on drop as Ctrl-C would, so it removes its temporary files.

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

impl DemoProcess {
    /// The process id (its temporary directory is `goniec-demo-<pid>`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        // SIGTERM first: a demo killed outright leaves its temporary directory
        // (blocklist, service account) behind; SIGKILL only if it hangs past
        // its drain (`shutdown_grace`, 30 s, plus the receipts' 5 s).
        // bash's built-in kill: a minimal system may have no /bin/kill (procps).
        let _ = Command::new("bash")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
