//! Test support for Goniec's integration tests (a dev-dependency only, never
//! in a production build): real `redis-server`s and Redis Clusters on free
//! loopback ports ([`RedisServer`], [`RedisCluster`]), the skip policy
//! ([`require`]), an in-process gateway ([`gateway::TestGateway`]), the demo and
//! the SMSC simulator as child processes, third-party peers ([`peer`]), and the
//! store conformance suite every backend must pass ([`conformance`]).
//!
//! Services are real, never mocked. A test whose service or peer is missing fails
//! with the install line ([`require`]); only with `GONIEC_ALLOW_SKIP=1` (and never
//! under `CI=true`) is it skipped, and then it is written to the skip list that
//! `tests/run` prints at the end, so a skip is never mistaken for a pass.

pub mod conformance;
pub mod demo;
pub mod gateway;
pub mod peer;
pub mod smsc_process;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when tests must not skip for a missing service.
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True when the user opted in to skipping tests whose peers are missing.
fn skips_allowed() -> bool {
    !services_required() && std::env::var("GONIEC_ALLOW_SKIP").is_ok_and(|v| v == "1")
}

/// Gate a test on something it needs (`ok`): `what` names it, `install` says how
/// to get it. Returns true when present. When missing, the test fails with the
/// install line, unless skips are allowed (`GONIEC_ALLOW_SKIP=1`, never under CI):
/// then it prints SKIPPED, appends itself to the skip list (`GONIEC_SKIP_FILE`,
/// read by `tests/run`) and returns false for the test to return early.
pub fn require(ok: bool, what: &str, install: &str) -> bool {
    if ok {
        return true;
    }
    if !skips_allowed() {
        panic!(
            "{what} is missing ({install}). Run the tests with `tests/run`, which \
             prepares what it can and names what to install; GONIEC_ALLOW_SKIP=1 \
             skips such tests instead (never under CI=true)."
        );
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed test")
        .to_string();
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .map(|n| n.rsplit_once('-').map_or(n.clone(), |(b, _)| b.to_string()))
        .unwrap_or_default();
    let line = format!("{binary}::{test}: {what} is missing ({install})");
    eprintln!("SKIPPED: {line}");
    if let Ok(path) = std::env::var("GONIEC_SKIP_FILE") {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            panic!("{line}, and the skip list {path} cannot be written: {e}");
        }
    }
    false
}

/// The Python interpreter for interop peers: `tests/run`'s virtual environment
/// (`GONIEC_PYTHON`), else `python3` from the PATH.
pub fn python() -> String {
    std::env::var("GONIEC_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// True when `program args…` runs and exits 0 (used to probe for peers).
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Find a free loopback TCP port (the OS picks it; we release it for the child).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A private `redis-server`, stopped on drop. Persists with AOF (`appendfsync
/// always`) in its own temporary directory so a restart keeps the data.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    /// More `redis-server` arguments (a cluster node's).
    extra: Vec<String>,
}

impl RedisServer {
    /// Start one, or return `None` when `redis-server` is not installed and
    /// skips are allowed (see [`require`]); without it otherwise the test fails.
    pub fn spawn() -> Option<RedisServer> {
        if !require(
            runs("redis-server", &["--version"]),
            "redis-server",
            "sudo apt-get install -y redis-server",
        ) {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("goniec-redis-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        for _ in 0..5 {
            let mut s = RedisServer {
                child: None,
                port: free_port(),
                dir: dir.clone(),
                extra: Vec::new(),
            };
            if s.start() {
                return Some(s);
            }
        }
        panic!("could not start redis-server on a free port");
    }

    /// A cluster-enabled node on a port whose cluster bus (port + 10000) is free.
    fn spawn_cluster_node() -> RedisServer {
        let dir = std::env::temp_dir().join(format!("goniec-redis-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        for _ in 0..20 {
            let port = free_port();
            if port > 55_535 || TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let mut s = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
                extra: [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ]
                .map(String::from)
                .to_vec(),
            };
            if s.start() {
                return s;
            }
        }
        panic!("could not start a cluster-enabled redis-server on a free port");
    }

    fn start(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
            ])
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false; // exited: port taken
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stop the server (SIGKILL; AOF with fsync always has every write already).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.start() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not come back on port {}", self.port);
    }
}

/// A private Redis Cluster of three masters (no replicas) on free loopback
/// ports, made with `redis-cli --cluster create`; stopped on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Start one, or return `None` when `redis-server`/`redis-cli` are not
    /// installed and skips are allowed (see [`require`]).
    pub fn spawn() -> Option<RedisCluster> {
        if !require(
            runs("redis-server", &["--version"]) && runs("redis-cli", &["--version"]),
            "redis-server and redis-cli (a Redis Cluster)",
            "sudo apt-get install -y redis-server redis-tools",
        ) {
            return None;
        }
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::spawn_cluster_node()).collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        // Every node must agree that all slots are served before a client starts.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.nodes.iter().all(|n| {
            Command::new("redis-cli")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &n.port.to_string(),
                    "cluster",
                    "info",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
        }) {
            assert!(Instant::now() < deadline, "the cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(cluster)
    }

    /// Seed node URLs, for `store.nodes`.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The `--store` form: `redis-cluster://127.0.0.1:A,127.0.0.1:B,…`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis-cluster://{}", hosts.join(","))
    }

    /// A store configuration for this cluster, under a fresh prefix.
    pub fn store_config(&self) -> goniec_config::Store {
        goniec_config::Store {
            backend: goniec_config::StoreBackend::RedisCluster,
            nodes: self.node_urls(),
            prefix: format!("t{}", ulid::Ulid::new()),
            ..Default::default()
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
