//! The OpenAPI document: served as committed, valid OpenAPI 3.1
//! (openapi-spec-validator), and true of the server: real exchanges are
//! checked against it with openapi-core.

use std::process::Command;

use latchkey_tests::{TestApp, ops};
use reqwest::Method;
use serde_json::{Value, json};

on_both_backends!(the_rest_api_answers_as_its_openapi_document_says);

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
const EXCHANGE_CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/validate_exchanges.py");

/// Whether the Python validators are installed; fails when
/// LATCHKEY_REQUIRE_OPENAPI=1 (`.ci/run`) and they are not.
fn validators_installed() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import openapi_core, openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let required = std::env::var("LATCHKEY_REQUIRE_OPENAPI").is_ok_and(|v| v == "1");
        assert!(!required, "LATCHKEY_REQUIRE_OPENAPI=1 but openapi-core / openapi-spec-validator are not installed");
        eprintln!("\n*** SKIPPED: OpenAPI validation — pip install openapi-core openapi-spec-validator ***\n");
    }
    found
}

/// One request and what came back, as `validate_exchanges.py` reads them.
async fn exchange(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
    valid_request: bool,
) -> Value {
    let mut request = app.http.request(method.clone(), format!("{}{path}", app.url));
    let mut request_headers = serde_json::Map::new();
    for (name, value) in headers {
        request = request.header(*name, *value);
        request_headers.insert((*name).to_owned(), json!(value));
    }
    if let Some(body) = &body {
        request = request.json(body);
        request_headers.insert("Content-Type".into(), json!("application/json"));
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let mut response_headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        response_headers.insert(name.as_str().to_owned(), json!(value.to_str().unwrap()));
    }
    let content_type = response_headers.get("content-type").and_then(Value::as_str).unwrap_or("").to_owned();
    let text = response.text().await.unwrap();
    json!({
        "method": method.as_str(), "path": path, "requestHeaders": request_headers,
        "requestBody": body.map(|b| b.to_string()), "validRequest": valid_request,
        "status": status, "responseHeaders": response_headers,
        "responseContentType": content_type.split(';').next().unwrap_or(""), "responseBody": text,
    })
}

/// Runs `validate_exchanges.py` on `exchanges`: whether it passed, and what it said.
fn check(exchanges: &[Value]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exchanges.json");
    std::fs::write(&path, serde_json::to_vec(exchanges).unwrap()).unwrap();
    let out = Command::new("python3").arg(EXCHANGE_CHECK).arg(DOCUMENT).arg(&path).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

async fn the_rest_api_answers_as_its_openapi_document_says(app: TestApp) {
    // Served as committed (CI also diffs `latchkey openapi` against the file).
    let served = app.http.get(format!("{}/openapi.json", app.url)).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.unwrap(), std::fs::read_to_string(DOCUMENT).unwrap());
    if !validators_installed() {
        return app.stop().await;
    }
    let valid = Command::new("python3").args(["-m", "openapi_spec_validator", DOCUMENT]).output().unwrap();
    assert!(valid.status.success(), "openapi-spec-validator: {}", String::from_utf8_lossy(&valid.stdout));

    let s = app.seed("Acme").await;
    let (key_id, secret, _) = app.generate(&s.admin_token, &s.integration, "Documented").await;
    let input = json!({ "input": { "ownerId": s.integration.id, "description": "Reader",
        "restrictions": { "permissions": ["reports:read"] } } });
    let body = app.gql(Some(&s.admin_token), ops::GENERATE_RESTRICTED, input).await;
    let reader = body["data"]["generateApiKey"]["secret"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {secret}");
    let reader_bearer = format!("Bearer {reader}");
    let (get, post) = (Method::GET, Method::POST);
    let mut exchanges = vec![
        exchange(&app, get.clone(), "/healthz", &[], None, true).await,
        exchange(&app, get.clone(), "/readyz", &[], None, true).await,
        exchange(&app, post.clone(), "/v1/keys/verify", &[], Some(json!({ "key": secret })), true).await,
        exchange(
            &app,
            post.clone(),
            "/v1/keys/verify",
            &[],
            Some(json!({ "key": reader, "cloud": "CUSTOMER",
            "permissions": ["reports:read"], "ip": "203.0.113.7" })),
            true,
        )
        .await,
        exchange(
            &app,
            post.clone(),
            "/v1/keys/verify",
            &[],
            Some(json!({ "key": reader,
            "permissions": ["users:write"] })),
            true,
        )
        .await,
        exchange(&app, post.clone(), "/v1/keys/verify", &[], Some(json!({ "key": "lk_nope" })), true).await,
        exchange(&app, post.clone(), "/v1/keys/verify", &[], Some(json!({ "token": secret })), false).await,
        exchange(
            &app,
            get.clone(),
            "/v1/auth",
            &[("Authorization", &bearer), ("X-Forwarded-For", "203.0.113.7")],
            None,
            true,
        )
        .await,
        exchange(
            &app,
            get.clone(),
            "/v1/auth",
            &[("X-Api-Key", &reader), ("X-Latchkey-Permissions", "reports:read")],
            None,
            true,
        )
        .await,
        exchange(
            &app,
            get.clone(),
            "/v1/auth",
            &[("Authorization", &reader_bearer), ("X-Latchkey-Permissions", "users:write")],
            None,
            true,
        )
        .await,
        exchange(&app, get.clone(), "/v1/auth", &[], None, false).await,
        exchange(&app, get.clone(), "/v1/auth", &[("Authorization", "Bearer lk_nope")], None, true).await,
        exchange(
            &app,
            get.clone(),
            "/v1/auth",
            &[("Authorization", &bearer), ("X-Latchkey-Cloud", "moon")],
            None,
            // Outside the document's enum: a client generated from it never sends this.
            false,
        )
        .await,
        exchange(
            &app,
            post.clone(),
            "/v1/keys/report-leak",
            &[],
            Some(json!({ "key": "lk_nope", "url": "https://example.com/x" })),
            true,
        )
        .await,
        exchange(&app, post.clone(), "/v1/keys/report-leak", &[], Some(json!({ "secret": 1 })), false).await,
        exchange(&app, post.clone(), "/v1/secret-scanning/github", &[], Some(json!([])), false).await,
        // The stream's refusals (its events are checked in verification_stream.rs).
        exchange(&app, get.clone(), "/v1/verifications/stream", &[("Authorization", &reader_bearer)], None, true).await,
        exchange(&app, get.clone(), "/v1/verifications/stream", &[], None, false).await,
        exchange(&app, get.clone(), "/v1/permissions", &[], None, true).await,
        exchange(
            &app,
            post.clone(),
            "/v1/verifications/usage",
            &[("Authorization", &reader_bearer)],
            Some(json!({ "uses": [] })),
            true,
        )
        .await,
        exchange(&app, post.clone(), "/v1/verifications/usage", &[], Some(json!({ "uses": [] })), false).await,
    ];
    // A report under an idempotency key, its replay, and the key reused for another report.
    let report =
        |count: u64| json!({ "uses": [{ "keyId": key_id, "count": count, "lastUsedAt": "2026-01-01T00:00:00Z" }] });
    for count in [2, 2, 3] {
        let headers = [("Authorization", bearer.as_str()), ("Idempotency-Key", "openapi-report")];
        exchanges
            .push(exchange(&app, post.clone(), "/v1/verifications/usage", &headers, Some(report(count)), true).await);
    }
    assert_eq!(exchanges[22]["responseHeaders"]["idempotent-replayed"], "true", "{}", exchanges[22]);
    let statuses: Vec<u64> = exchanges.iter().map(|x| x["status"].as_u64().unwrap()).collect();
    assert_eq!(
        statuses,
        [
            200, 200, 200, 200, 200, 200, 400, 200, 200, 403, 401, 401, 400, 202, 400, 401, 403, 401, 200, 403, 401,
            200, 200, 400
        ]
    );
    let (ok, said) = check(&exchanges);
    assert!(ok, "the server differs from openapi.json:\n{said}");

    // The document declares the cloud header's values: a request outside them is caught.
    exchanges[12]["validRequest"] = json!(true);
    let (ok, said) = check(&exchanges);
    assert!(!ok && said.contains("X-Latchkey-Cloud"), "{said}");
    exchanges[12]["validRequest"] = json!(false);

    // The check can fail: an answer the document does not allow is caught.
    exchanges[2]["responseBody"] = json!(r#"{"valid":true,"keyId":5}"#);
    let (ok, said) = check(&exchanges);
    assert!(!ok && said.contains("#2 POST /v1/keys/verify"), "{said}");
    app.stop().await;
}
