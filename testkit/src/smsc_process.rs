//! `goniec smsc-sim` as a separate process (its CLI flags are under test), with
//! its SMPP and HTTP addresses read from its banner; killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

pub struct SmscProcess {
    _child: tokio::process::Child,
    /// The SMPP listener.
    pub smpp: SocketAddr,
    /// The `--http` endpoint's base, `http://127.0.0.1:PORT`.
    pub http: String,
}

impl SmscProcess {
    /// Start `binary smsc-sim --listen 127.0.0.1:0 --http 127.0.0.1:0` with
    /// `args` added, and wait up to 20 s for both addresses.
    pub async fn start(binary: &Path, args: &[&str]) -> SmscProcess {
        let mut child = tokio::process::Command::new(binary)
            .args([
                "smsc-sim",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn goniec smsc-sim");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut smpp, mut http) = (None, None);
        while smpp.is_none() || http.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("the simulator's banner")
                .expect("read its output")
                .expect("more output");
            let after = |marker: &str| {
                line.split_once(marker)
                    .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
            };
            if let Some(a) = after("SMSC simulator listening on ") {
                smpp = Some(a.parse::<SocketAddr>().expect("an SMPP address"));
            }
            if let Some(a) = after("SMSC simulator HTTP on ") {
                http = Some(a);
            }
        }
        SmscProcess {
            _child: child,
            smpp: smpp.expect("smpp"),
            http: http.expect("http"),
        }
    }
}
