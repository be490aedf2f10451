//! A third-party protocol peer run as a child process for interop tests (node-smpp,
//! aiosmtpd): it prints `{"port":N}` first, then one JSON line per event; it exits
//! when its stdin closes, and is killed (by its PID) when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub struct Peer {
    child: Child,
    /// Held open: the script exits when its stdin closes, even if we are killed.
    _stdin: ChildStdin,
    /// The port it listens on.
    pub port: u16,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Peer {
    /// Start `cmd` (named `what` in panics) and wait up to 20 s for its port.
    pub fn spawn(mut cmd: Command, what: &str) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let sink = events.clone();
        let name = what.to_string();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = port_tx.send(first);
            for line in lines.map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("{name} printed `{line}`: {e}"));
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(v);
            }
        });
        let first = port_rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{what} did not print its port"));
        let port = serde_json::from_str::<Value>(&first)
            .ok()
            .and_then(|v| v["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("{what} first line is not {{\"port\":N}}: `{first}`"));
        Peer {
            child,
            _stdin: stdin,
            port,
            events,
        }
    }

    /// Every JSON line it printed after the port, so far.
    pub fn events(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stop it now (also done on drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}
