//! Every `curl` example in the README is run, as written, against a real
//! `goniec demo`, and its answer is checked against the `# <status> {…}` comment
//! under it: the status code, and every `"key":value` pair written out in full
//! (values with `…` are placeholders and not compared). So a README example
//! that stops being true fails the tests.
//!
//! The shell blocks are read like a shell would: a command goes on while a
//! quote is open or a line ends with `\`. `export …` lines are skipped (the test
//! sets `API`, `KEY` and `ADMIN_KEY` from the demo it started); other
//! `NAME=value` lines are kept and run before every later command of the
//! block; `$ID` is the id from the latest answer with one, `$HELD_ID` the
//! latest message answered `held`.

use std::path::Path;
use std::process::Command;

use goniec_testkit::demo::DemoProcess;
use goniec_testkit::{require, runs};
use serde_json::Value;

/// One command of a README shell block, with the expectation under it.
#[derive(Debug)]
struct Example {
    /// Line in README.md where the command starts (1-based).
    line: usize,
    command: String,
    /// `NAME=…` lines seen before it in its block.
    state: Vec<String>,
    expect: Option<Expect>,
}

#[derive(Debug)]
struct Expect {
    status: u16,
    pairs: Vec<(String, Value)>,
    text: String,
}

/// Whether a command is complete after `text`: no open quote, no trailing `\`.
fn complete(text: &str) -> bool {
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ => {}
        }
    }
    !single && !double && !text.trim_end().ends_with('\\')
}

/// `text` (one or more lines) without `# comments` outside quotes.
fn strip_comments(text: &str) -> String {
    let (mut single, mut double, mut comment) = (false, false, false);
    let mut prev = ' ';
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if comment {
            if c == '\n' {
                comment = false;
                out.push(c);
            }
            continue;
        }
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => {
                comment = true;
                continue;
            }
            _ => {}
        }
        out.push(c);
        prev = c;
    }
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `"key":value` pairs written out in full in an expectation comment.
fn pairs(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(start) = text[i..].find('"').map(|p| p + i) {
        let Some(end) = text[start + 1..].find('"').map(|p| p + start + 1) else {
            break;
        };
        let key = &text[start + 1..end];
        i = end + 1;
        if b.get(i) != Some(&b':') || key.is_empty() {
            continue;
        }
        let rest = &text[i + 1..];
        // A value: a string, a number, true/false/null. Arrays and objects are
        // walked into by the loop itself.
        let value_text = if let Some(s) = rest.strip_prefix('"') {
            match s.find('"') {
                Some(e) => &rest[..e + 2],
                None => break,
            }
        } else {
            let e = rest.find([',', '}', ']', ' ']).unwrap_or(rest.len());
            &rest[..e]
        };
        if value_text.contains('…') || value_text.starts_with(['[', '{']) {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<Value>(value_text) {
            out.push((key.to_string(), v));
            i += 1 + value_text.len();
        }
    }
    out
}

/// True when some object at any depth of `v` has `key` equal to `want`.
fn has_pair(v: &Value, key: &str, want: &Value) -> bool {
    match v {
        Value::Object(m) => m.get(key) == Some(want) || m.values().any(|x| has_pair(x, key, want)),
        Value::Array(a) => a.iter().any(|x| has_pair(x, key, want)),
        _ => false,
    }
}

fn parse_expect(comment: &str) -> Option<Expect> {
    let text = comment.trim_start_matches('#').trim();
    let code: String = text.chars().take_while(char::is_ascii_digit).collect();
    if code.len() != 3 {
        return None;
    }
    Some(Expect {
        status: code.parse().ok()?,
        pairs: pairs(text),
        text: text.to_string(),
    })
}

/// Every command of the README's shell blocks that contain a `curl`.
fn examples(readme: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let lines: Vec<&str> = readme.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```sh" {
            i += 1;
            continue;
        }
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim() == "```")
            .expect("closed ```sh block");
        let block = &lines[i + 1..end];
        if block.iter().any(|l| l.trim_start().starts_with("curl ")) {
            let mut state: Vec<String> = Vec::new();
            let mut k = 0;
            while k < block.len() {
                let first = block[k];
                if first.trim().is_empty() || first.trim_start().starts_with('#') {
                    k += 1;
                    continue;
                }
                let line_no = i + 2 + k;
                let mut command = strip_comments(first);
                let mut raw = first.to_string();
                while !complete(&command) && k + 1 < block.len() {
                    k += 1;
                    raw.push('\n');
                    raw.push_str(block[k]);
                    command = strip_comments(&raw);
                }
                k += 1;
                let trimmed = command.trim();
                if trimmed.starts_with("export ") {
                    continue;
                }
                if trimmed.starts_with("curl ") {
                    let expect = block
                        .get(k)
                        .filter(|l| l.trim_start().starts_with('#'))
                        .and_then(|l| parse_expect(l));
                    out.push(Example {
                        line: line_no,
                        command: trimmed.to_string(),
                        state: state.clone(),
                        expect,
                    });
                } else if trimmed.split('=').next().is_some_and(|n| {
                    !n.is_empty() && n.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                }) {
                    state.push(trimmed.to_string());
                } else {
                    panic!("README.md:{line_no}: a command the test cannot run: {trimmed}");
                }
            }
        }
        i = end + 1;
    }
    out
}

#[test]
fn the_readme_examples_are_parsed_as_a_shell_would() {
    let ex = examples(
        "```sh\nA=1; B=$(date)\n# a comment\ncurl -s $API/x -d '{\"a\":1,\n  \"b\":\"#2\"}' # note\n# 202 {\"id\":\"01K…\",\"status\":\"queued\",\"segments\":1,\"ok\":true,\"e\":[{\"code\":\"x\"}]}\n\
         curl -s \\\n  $API/y\n```\n",
    );
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(
        ex[0].command,
        "curl -s $API/x -d '{\"a\":1,\n  \"b\":\"#2\"}'"
    );
    assert_eq!(ex[0].state, ["A=1; B=$(date)"]);
    assert_eq!(ex[0].line, 4);
    let e = ex[0].expect.as_ref().unwrap();
    assert_eq!(e.status, 202);
    let keys: Vec<&str> = e.pairs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["status", "segments", "ok", "code"]);
    assert_eq!(ex[1].command, "curl -s \\\n  $API/y");
    assert!(ex[1].expect.is_none());
    let body: Value =
        serde_json::json!({"status":"queued","segments":1,"ok":true,"e":[{"code":"x"}]});
    assert!(e.pairs.iter().all(|(k, v)| has_pair(&body, k, v)));
    assert!(!has_pair(&body, "segments", &serde_json::json!(2)));
}

#[test]
fn every_readme_curl_example_works_against_the_demo() {
    if !require(
        runs("curl", &["--version"]),
        "curl",
        "sudo apt-get install -y curl",
    ) {
        return;
    }
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("README.md");
    let all = examples(&readme);
    assert!(all.len() >= 20, "only {} curl examples found", all.len());
    let demo = DemoProcess::start(Path::new(env!("CARGO_BIN_EXE_goniec")));
    let mut id = String::new();
    let mut held_id = String::new();
    let mut failures = Vec::new();
    for ex in &all {
        let Some(expect) = &ex.expect else {
            failures.push(format!(
                "README.md:{}: no `# <status> …` line under the example",
                ex.line
            ));
            continue;
        };
        let script = format!(
            "set -eu\n{}\n{} -w '\\n%{{http_code}}'\n",
            ex.state.join("\n"),
            ex.command
        );
        let out = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env("API", &demo.api)
            .env("KEY", &demo.key)
            .env("ADMIN_KEY", &demo.admin_key)
            .env("ID", &id)
            .env("HELD_ID", &held_id)
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
        let code: u16 = code.trim().parse().unwrap_or(0);
        let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        if let Some(new_id) = json["id"].as_str() {
            id = new_id.to_string();
            if json["status"] == "held" {
                held_id = new_id.to_string();
            }
        }
        let mut wrong = Vec::new();
        if code != expect.status {
            wrong.push(format!("status {code}, README says {}", expect.status));
        }
        for (k, v) in &expect.pairs {
            if !has_pair(&json, k, v) {
                wrong.push(format!("no \"{k}\":{v}"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "README.md:{}: {}\n  command: {}\n  README:  {}\n  answer:  {}\n  stderr:  {}",
                ex.line,
                wrong.join("; "),
                ex.command.replace('\n', "\n           "),
                expect.text,
                body.chars().take(600).collect::<String>(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} README examples are not true:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
