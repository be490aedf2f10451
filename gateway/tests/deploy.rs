//! What `deploy/` ships is checked with tools we did not write where they
//! exist here: `promtool` for the alert rules and the Prometheus config,
//! PyYAML for every YAML file, `goniec check-config` for the shipped configs
//! (`.ci/run` adds `docker compose config` where Docker has compose). And every
//! metric the Grafana dashboard and the alert rules use is one the gateway
//! exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use goniec_testkit::{python, require, runs};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, ext: &[&str], out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, ext, out);
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| ext.contains(&x))
        {
            out.push(p);
        }
    }
}

/// Every `goniec_…` token of a text.
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("goniec_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// The metric names the gateway registers: the `"goniec_…"` literals its
/// source passes to the registry (`gateway/src/telemetry.rs`, `http/serve.rs`).
fn exported() -> BTreeSet<String> {
    let mut sources = Vec::new();
    files(&root().join("gateway/src"), &["rs"], &mut sources);
    let mut names = BTreeSet::new();
    for f in sources {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("\"goniec_") {
            let tail = &rest[i + 1..];
            let end = tail.find('"').unwrap_or(0);
            let name = &tail[..end];
            // A metric name, not a test's expected line with labels.
            if name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                names.insert(name.to_string());
            }
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn every_metric_the_dashboard_and_rules_use_is_exported() {
    let exported = exported();
    assert!(exported.len() > 25, "{exported:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/goniec.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = String::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            exprs.push_str(t["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).unwrap();
    for (what, text) in [("dashboard", &exprs), ("alert rules", &rules)] {
        let used = metric_tokens(text);
        assert!(!used.is_empty(), "{what} use no metric");
        for m in used {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| m.strip_suffix(s).filter(|b| exported.contains(*b)))
                .unwrap_or(&m);
            assert!(
                exported.contains(base),
                "the {what} use {m}, which the gateway does not export"
            );
        }
    }
}

#[test]
fn alert_rules_and_prometheus_config_pass_promtool() {
    if !require(
        runs("promtool", &["--version"]),
        "promtool",
        "sudo apt-get install -y prometheus",
    ) {
        return;
    }
    for args in [
        ["check", "rules", "deploy/prometheus/alerts.yaml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_deploy_yaml_file_is_well_formed() {
    let py = python();
    if !require(
        runs(&py, &["-c", "import yaml"]),
        "PyYAML",
        "tests/run installs it from tests/interop/requirements.txt into target/interop-venv",
    ) {
        return;
    }
    let mut yamls = Vec::new();
    files(&root().join("deploy"), &["yaml", "yml"], &mut yamls);
    assert!(yamls.len() >= 10, "{yamls:?}");
    let script = "import sys, yaml\nfor p in sys.argv[1:]:\n    docs = [d for d in yaml.safe_load_all(open(p)) if d is not None]\n    assert docs, p\n";
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(&yamls)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_shipped_configs_pass_check_config() {
    for cfg in [
        "deploy/compose/goniec.toml",
        "deploy/k8s/base/goniec.toml",
        "config/goniec.toml",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_goniec"))
            .args(["check-config", cfg])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cfg}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn every_exported_metric_is_in_the_readme_table() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for m in exported() {
        assert!(
            readme.contains(&format!("| `{m}` |")),
            "{m} is exported but not in the README's metrics table"
        );
    }
}
