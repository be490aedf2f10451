//! `/openapi.json` describes exactly the router's routes (every path and
//! method, no more, no less), and `openapi-spec-validator` (PyPI) accepts it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use goniec_testkit::gateway::{config_toml, parse, TestGateway};
use goniec_testkit::{python, require, runs};

/// (METHOD, path) of every `.route(…)` in `router()` of `gateway/src/http/mod.rs`.
fn router_routes() -> BTreeSet<(String, String)> {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"))
            .unwrap();
    let start = src.find("pub fn router(").expect("router()");
    let end = src[start..].find(".fallback(").expect("fallback") + start;
    let body = &src[start..end];
    let mut out = BTreeSet::new();
    for chunk in body.split(".route(").skip(1) {
        let path = chunk.split('"').nth(1).expect("a route's path").to_string();
        for m in ["get", "post", "put", "delete"] {
            let called = chunk.contains(&format!("{m}(")) && {
                // `get(` but not part of another word (`target(`).
                chunk.match_indices(&format!("{m}(")).any(|(i, _)| {
                    i == 0
                        || !chunk.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && chunk.as_bytes()[i - 1] != b'_'
                })
            };
            if called {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_document_covers_every_route_and_validates() {
    let gw = TestGateway::start(parse(&config_toml(None, ""))).await;
    let r = gw.http.get(gw.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let doc: serde_json::Value = r.json().await.unwrap();
    // The readable page: every operation, no external asset.
    let page = gw
        .http
        .get(gw.url("/docs"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<code>/v1/campaigns/{id}/audience</code>"),
        "{page}"
    );
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("<script"));
    gw.stop().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in ["get", "post", "put", "delete", "patch"] {
            if item.get(m).is_some() {
                documented.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    let routes = router_routes();
    assert!(routes.len() > 30, "{routes:?}");
    let missing: Vec<_> = routes.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not in the document: {missing:?}; documented but not routed: {extra:?}"
    );

    // Security, problem codes and the signed callbacks are in it.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["scheme"], "bearer");
    assert_eq!(schemes["admin_key"]["scheme"], "bearer");
    let codes = doc["components"]["schemas"]["ProblemBody"]["properties"]["code"]["enum"]
        .as_array()
        .expect("problem codes");
    assert_eq!(codes.len(), goniec_core::Problem::ALL.len());
    for hook in ["status", "inbound"] {
        let params = &doc["webhooks"][hook]["post"]["parameters"][0];
        assert_eq!(params["name"], "Goniec-Signature", "{hook}");
    }
    assert!(doc["components"]["schemas"]["CallbackBody"]["properties"]["event_id"].is_object());
    let create = &doc["paths"]["/v1/messages"]["post"]["responses"];
    assert!(
        create["401"].is_object() && create["4XX"].is_object(),
        "{create}"
    );
    assert!(doc["paths"]["/healthz"]["get"]["responses"]["401"].is_null());
    assert!(doc["paths"]["/l/{code}"]["get"]["responses"]["4XX"].is_null());
    assert!(
        doc["components"]["schemas"]["MessageRequest"]["properties"]["template_id"].is_object()
    );

    // A validator we did not write.
    let py = python();
    if !require(
        runs(&py, &["-c", "import openapi_spec_validator"]),
        "openapi-spec-validator",
        "tests/run installs it from tests/interop/requirements.txt into target/interop-venv",
    ) {
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = Command::new(&py)
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
