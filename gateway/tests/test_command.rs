//! The skip policy of the test command (`tests/run`) and of `goniec_testkit::require`:
//! a test whose peer is missing never counts as passed. Without the peer the
//! run stops with the exact install line; a skipped test fails the run unless
//! the user opted in with `GONIEC_ALLOW_SKIP=1`, which CI ignores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use goniec_testkit::require;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/run")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Where `program` is on this process's PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `bash tests/run ARGS` with a clean skip environment.
fn run_script(args: &[&str], env: &[(&str, &str)], path: Option<&Path>) -> Output {
    let bash = which("bash").expect("bash");
    let mut cmd = Command::new(bash);
    cmd.arg(script())
        .args(args)
        .env_remove("GONIEC_ALLOW_SKIP")
        .env_remove("CI");
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tests/run")
}

#[test]
fn a_missing_peer_stops_the_run_with_the_install_line() {
    // A PATH with every tool the tests need except redis-server.
    let dir = tempfile::tempdir().unwrap();
    for tool in ["cc", "redis-cli", "node", "npm", "curl", "python3"] {
        if let Some(real) = which(tool) {
            std::os::unix::fs::symlink(real, dir.path().join(tool)).unwrap();
        }
    }
    let out = run_script(&["--preflight"], &[], Some(dir.path()));
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("redis-server (every store"), "{all}");
    let line = all
        .lines()
        .find(|l| l.trim_start().starts_with("sudo apt-get install -y"))
        .unwrap_or_else(|| panic!("no install line in\n{all}"));
    assert!(
        line.split_whitespace().any(|w| w == "redis-server"),
        "{line}"
    );
    assert!(
        !line.split_whitespace().any(|w| w == "redis-tools"),
        "redis-cli is there: {line}"
    );
}

#[test]
fn skipped_tests_fail_the_run_unless_the_user_opts_in() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("skipped.txt");
    std::fs::write(
        &list,
        "smtp_interop::aiosmtpd_receives: python3 with aiosmtpd is missing\n\
         pipeline::submit: redis-server is missing\n",
    )
    .unwrap();
    let list = list.to_str().unwrap();

    let strict = run_script(&["--report-skips", list], &[], None);
    let all = text(&strict);
    assert_eq!(strict.status.code(), Some(1), "{all}");
    assert!(all.contains("2 test(s) did NOT run"), "{all}");
    assert!(
        all.contains("- pipeline::submit: redis-server is missing"),
        "{all}"
    );

    let opted_in = run_script(
        &["--report-skips", list],
        &[("GONIEC_ALLOW_SKIP", "1")],
        None,
    );
    let all = text(&opted_in);
    assert_eq!(opted_in.status.code(), Some(0), "{all}");
    assert!(all.contains("2 test(s) did NOT run"), "{all}");

    let ci = run_script(
        &["--report-skips", list],
        &[("GONIEC_ALLOW_SKIP", "1"), ("CI", "true")],
        None,
    );
    assert_eq!(ci.status.code(), Some(1), "{}", text(&ci));

    let empty = dir.path().join("none.txt");
    std::fs::write(&empty, "").unwrap();
    let clean = run_script(&["--report-skips", empty.to_str().unwrap()], &[], None);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
}

/// Run [`require_child`] in a child process with this environment.
fn child(env: &[(&str, &str)], skip_file: &Path) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--ignored", "--exact", "require_child", "--nocapture"])
        .env_remove("GONIEC_ALLOW_SKIP")
        .env_remove("CI")
        .env("GONIEC_SKIP_FILE", skip_file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn require_fails_a_test_or_records_its_skip() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("skipped.txt");

    let strict = child(&[], &list);
    let all = text(&strict);
    assert!(!strict.status.success(), "{all}");
    assert!(
        all.contains("frobnicator is missing (sudo apt-get install -y frob)"),
        "{all}"
    );
    assert!(!list.exists(), "a failed test is not a skip");

    let ci = child(&[("GONIEC_ALLOW_SKIP", "1"), ("CI", "true")], &list);
    assert!(!ci.status.success(), "{}", text(&ci));
    assert!(!list.exists());

    let skipped = child(&[("GONIEC_ALLOW_SKIP", "1")], &list);
    assert!(skipped.status.success(), "{}", text(&skipped));
    let recorded = std::fs::read_to_string(&list).unwrap();
    assert_eq!(
        recorded,
        "test_command::require_child: frobnicator is missing (sudo apt-get install -y frob)\n"
    );
}

/// Not a test of its own: the child process of the test above.
#[test]
#[ignore = "run as a child process by require_fails_a_test_or_records_its_skip"]
fn require_child() {
    if !require(false, "frobnicator", "sudo apt-get install -y frob") {
        return;
    }
    unreachable!("require(false, …) returned true");
}
