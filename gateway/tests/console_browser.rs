//! The operator console in a real browser: `tests/interop/console_browser.py`
//! drives Debian's headless Chromium (packages `chromium`, `chromium-driver`)
//! with Selenium against a gateway on a real Redis: log in, see the accepted
//! rate move while messages flow, release a held message and see it
//! delivered, check the page at phone width, log out. Screenshots are kept in
//! `target/console-artifacts/`. Under `CI=true` a missing browser fails.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use goniec_testkit::gateway::{
    config_toml_with, parse, TestGateway, ACME_KEY, ADMIN_KEY, ANTIFRAUD_OPEN_HOURS, STUB_SMS,
};
use goniec_testkit::{python, require, runs, RedisServer};
use reqwest::Method;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_headless_chromium() {
    let browser =
        Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists();
    if !require(
        browser,
        "Debian's chromium and chromium-driver",
        "sudo apt-get install -y chromium chromium-driver",
    ) {
        return;
    }
    let py = python();
    if !require(
        runs(&py, &["-c", "import selenium"]),
        "selenium",
        "tests/run installs it from tests/interop/requirements.txt into target/interop-venv",
    ) {
        return;
    }
    let Some(redis) = RedisServer::spawn() else {
        return;
    };
    let gw = TestGateway::start(parse(&config_toml_with(
        Some(&redis.url()),
        ANTIFRAUD_OPEN_HOURS,
        STUB_SMS,
    )))
    .await;
    gw.wait_ready(200, Duration::from_secs(10)).await;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join("target/console-artifacts");
    let script = root.join("tests/interop/console_browser.py");
    let base = gw.url("");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .args([&base, ADMIN_KEY, ACME_KEY])
            .arg(&shots)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "console_browser.py failed (screenshots in target/console-artifacts):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let png = root.join("target/console-artifacts/console.png");
    assert!(
        std::fs::metadata(&png).is_ok_and(|m| m.len() > 10_000),
        "a screenshot at {}",
        png.display()
    );

    // What the browser did is in the admin log, under the name it gave.
    let r = gw
        .req(Method::GET, "/v1/admin/audit?limit=100", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    let log: Value = r.json().await.unwrap();
    let actions: Vec<(String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["who"]
                .as_str()
                .unwrap()
                .starts_with("Browser test (key sha256:")
        })
        .map(|e| {
            (
                e["action"].as_str().unwrap().into(),
                e["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in ["login", "release", "logout"] {
        assert!(
            actions.iter().any(|(a, _)| a == want),
            "{want} in {actions:?}"
        );
    }
    gw.stop().await;
}
