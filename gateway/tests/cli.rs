//! The `goniec` commands a user meets in the first hour: keys, config checks,
//! the version.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn goniec(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_goniec"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("goniec runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn hash_key_reads_the_key_from_stdin() {
    let piped = goniec(&["hash-key"], Some("s3cret-key\n"));
    assert!(piped.status.success(), "{}", stderr(&piped));
    let expected = goniec_gateway::tenants::hash_key("s3cret-key");
    assert_eq!(stdout(&piped).trim(), expected);
    // The argument still works, with a warning about ps and shell history.
    let argv = goniec(&["hash-key", "s3cret-key"], None);
    assert_eq!(stdout(&argv).trim(), expected);
    assert!(stderr(&argv).contains("visible to other users"));
    let empty = goniec(&["hash-key"], Some(""));
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr(&empty).contains("the key is empty"));
}

#[test]
fn gen_key_prints_a_new_key_and_its_hash() {
    let a = stdout(&goniec(&["gen-key"], None));
    let b = stdout(&goniec(&["gen-key"], None));
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no `{name}` in {text}"))
    };
    let key = field(&a, "key:");
    assert!(key.len() >= 40, "{key}");
    assert_eq!(field(&a, "hash:"), goniec_gateway::tenants::hash_key(&key));
    assert_ne!(key, field(&b, "key:"), "keys are random");
}

#[test]
fn check_config_warns_about_the_sample_without_failing() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/goniec.toml");
    let out = goniec(&["check-config", sample], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let warnings = stderr(&out);
    for what in [
        "warning: connectors: no connectors",
        "warning: tenants[0].api_keys[0]: is the sample config's public demo key",
        "warning: tenants[0].webhook_secret: is a placeholder",
    ] {
        assert!(warnings.contains(what), "no `{what}` in:\n{warnings}");
    }
    assert!(stdout(&out).contains("OK (1 tenants"));
}

#[test]
fn version_names_the_commit() {
    let out = stdout(&goniec(&["--version"], None));
    assert!(out.starts_with("goniec "), "{out}");
    assert!(out.contains("(commit "), "{out}");
}
