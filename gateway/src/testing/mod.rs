//! Test support shared by unit and integration tests: a real `redis-server` on a
//! free loopback port, and the store conformance suite both backends must pass.
//!
//! Services are real, never mocked. Locally a missing `redis-server` skips the test
//! with a printed reason; under CI (`CI=true`) it fails the test instead.

pub mod conformance;
pub mod gateway;
pub mod peer;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when tests must not skip for a missing service.
pub fn services_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
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
}

impl RedisServer {
    /// Start one, or return `None` (after printing why) when `redis-server` is not
    /// installed and we are not under CI.
    pub fn spawn() -> Option<RedisServer> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            if services_required() {
                panic!("redis-server is not installed, and CI=true requires it (apt-get install redis-server)");
            }
            eprintln!("SKIPPED: redis-server not installed (apt-get install redis-server)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("goniec-redis-{}", ulid::Ulid::new()));
        std::fs::create_dir_all(&dir).expect("create redis dir");
        for _ in 0..5 {
            let mut s = RedisServer {
                child: None,
                port: free_port(),
                dir: dir.clone(),
            };
            if s.start() {
                return Some(s);
            }
        }
        panic!("could not start redis-server on a free port");
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
