//! Leak response: a key reported leaked is revoked on every replica (unless
//! its tenant only wants to be told), its owner and the internal admins are
//! mailed once, the audit trail records it, and the report endpoint answers
//! the same whatever it is given.

use std::time::{Duration, Instant};

use latchkey_domain::{ApiKeySecret, Cloud, NoticeKind};
use latchkey_tests::{Backend, TestApp, TestDb, error_code, ops};
use serde_json::{Value, json};

on_both_backends!(
    a_reported_key_is_revoked_and_everyone_is_told_once,
    tenants_that_only_want_to_be_told_keep_their_keys,
    the_report_endpoint_is_no_oracle_and_is_rate_limited,
);

async fn report(app: &TestApp, base: &str, body: Value) -> (u16, Value) {
    let resp = app.http.post(format!("{base}/v1/keys/report-leak")).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

async fn code(app: &TestApp, base: &str, key: &str) -> String {
    let resp = app.http.post(format!("{base}/v1/keys/verify")).json(&json!({ "key": key })).send().await.unwrap();
    let verdict: Value = resp.json().await.unwrap();
    if verdict["valid"] == true { "VALID".into() } else { verdict["code"].as_str().unwrap().to_owned() }
}

/// Waits until the replica at `base` answers `expected` for `key`; returns how long it took.
async fn reaches(app: &TestApp, base: &str, key: &str, expected: &str) -> Duration {
    let started = Instant::now();
    while code(app, base, key).await != expected {
        assert!(started.elapsed() < Duration::from_secs(10), "{base} never answered {expected}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn leaked(app: &TestApp) -> Vec<latchkey_domain::Notice> {
    app.notifier.delivered().into_iter().filter(|e| e.kind == NoticeKind::Leaked).collect()
}

async fn a_reported_key_is_revoked_and_everyone_is_told_once(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Warehouse sync").await;
    let (_, bystander, _) = app.generate(&s.admin_token, &s.integration, "Bystander").await;
    assert_eq!(code(&app, &app.url, &secret).await, "VALID", "cached now");

    let url = "https://github.com/acme/site/blob/main/.env";
    let (status, body) = report(&app, &app.url, json!({ "key": secret, "url": url })).await;
    assert_eq!((status, body), (202, json!({ "received": true })));
    reaches(&app, &app.url, &secret, "COMPROMISED").await;
    assert_eq!(code(&app, &app.url, &bystander).await, "VALID", "only the leaked key");

    // The owner and both internal admins are mailed: where, and that it was revoked.
    for _ in 0..200 {
        if leaked(&app).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = leaked(&app);
    let mut to: Vec<String> = mails.iter().map(|e| e.owner_email.clone()).collect();
    to.sort();
    let mut expected = vec![s.integration.email.clone(), s.admin.email.clone(), s.other_admin.email.clone()];
    expected.sort();
    assert_eq!(to, expected);
    let leak = mails[0].leak.clone().unwrap();
    assert_eq!((leak.url.as_deref(), leak.revoked, leak.reporter.as_str()), (Some(url), true, "Leak report"));
    let settings =
        latchkey_notify::mail::MailSettings::new("Latchkey <keys@latchkey.example>", "https://admin.example").unwrap();
    let raw = latchkey_notify::mail::compose(&mails[0], &settings).unwrap().formatted();
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let message = parsed.body_text(0).unwrap().into_owned();
    assert!(message.contains("was found exposed at https://github.com/acme/site/blob/main/.env"), "{message}");
    assert!(message.contains("revoked at once") && message.contains("Rotate it"), "{message}");
    assert!(!String::from_utf8_lossy(&raw).contains(&secret[..20]), "never the secret");

    // A repeated report (GitHub retries) changes and mails nothing more.
    assert_eq!(report(&app, &app.url, json!({ "key": secret, "url": url })).await.0, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(leaked(&app).len(), 3, "mailed once per leak");

    // GraphQL says why; the table shows it; the audit trail records it.
    let body = app.gql(Some(&secret), "{ viewer { clouds } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("leaked"), "{body}");
    let state = app.gql(Some(&s.admin_token), ops::GET_KEY_STATE, json!({ "id": id })).await;
    assert_eq!(state["data"]["apiKey"]["status"], "COMPROMISED", "{state}");
    let audit = app
        .gql(
            Some(&s.admin_token),
            "query($k: ID!) { apiKeyEvents(keyId: $k) { nodes { action actorName leakUrl leakRevoked } } }",
            json!({ "k": id }),
        )
        .await;
    assert_eq!(
        audit["data"]["apiKeyEvents"]["nodes"][0],
        json!({ "action": "LEAK_REPORTED", "actorName": "Leak report", "leakUrl": url, "leakRevoked": true }),
        "{audit}"
    );

    // Rotating issues a fresh secret and clears the status.
    let fresh = app.rotate(&s.admin_token, &id).await;
    assert_eq!(code(&app, &app.url, &fresh).await, "VALID");
    assert_eq!(code(&app, &app.url, &secret).await, "INVALID");
    let state = app.gql(Some(&s.admin_token), ops::GET_KEY_STATE, json!({ "id": id })).await;
    assert_eq!(state["data"]["apiKey"]["status"], "ACTIVE");
    app.stop().await;
}

async fn tenants_that_only_want_to_be_told_keep_their_keys(app: TestApp) {
    let s = app.seed("Acme").await;
    let settings = "{ tenantSettings { leakResponse } }";
    let body = app.gql(Some(&s.admin_token), settings, json!({})).await;
    assert_eq!(body["data"]["tenantSettings"]["leakResponse"], "REVOKE", "the default");
    let set = "mutation { updateTenantSettings(input: {leakResponse: NOTIFY}) { leakResponse } }";
    let academy = app.token(&s.academy_admin, Cloud::Customer);
    assert_eq!(error_code(&app.gql(Some(&academy), set, json!({})).await), "FORBIDDEN");
    let body = app.gql(Some(&s.admin_token), set, json!({})).await;
    assert_eq!(body["data"]["updateTenantSettings"]["leakResponse"], "NOTIFY", "{body}");

    let (_, secret, _) = app.generate(&s.admin_token, &s.integration, "Told only").await;
    report(&app, &app.url, json!({ "key": secret })).await;
    for _ in 0..200 {
        if leaked(&app).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mails = leaked(&app);
    assert_eq!(mails.len(), 3);
    assert!(mails.iter().all(|m| m.leak.as_ref().is_some_and(|l| !l.revoked)));
    assert_eq!(code(&app, &app.url, &secret).await, "VALID", "the key keeps working");
    app.stop().await;
}

async fn the_report_endpoint_is_no_oracle_and_is_rate_limited(app: TestApp) {
    let s = app.seed("Acme").await;
    let (_, secret, _) = app.generate(&s.admin_token, &s.integration, "Real").await;
    let fake = ApiKeySecret::generate().unwrap().expose().to_owned();
    let wrong_secret = latchkey_domain::secret::with_checksum(&format!("{}{}", &secret[..15], "0".repeat(34)));
    let mut answers = Vec::new();
    for key in [secret.as_str(), fake.as_str(), wrong_secret.as_str(), "garbage", ""] {
        answers.push(report(&app, &app.url, json!({ "key": key, "url": "https://example.com" })).await);
    }
    assert!(answers.iter().all(|a| *a == (202, json!({ "received": true }))), "{answers:?}");
    for bad in [
        json!(["x"]),
        json!({ "key": 7 }),
        json!({ "key": "x", "extra": 1 }),
        json!({ "key": "x", "url": "u".repeat(2049) }),
    ] {
        assert_eq!(report(&app, &app.url, bad.clone()).await.0, 400, "{bad}");
    }
    // 30 reports a minute per client (the 5 above count).
    let mut statuses = Vec::new();
    for _ in 0..26 {
        statuses.push(report(&app, &app.url, json!({ "key": "garbage" })).await.0);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 25);
    let resp =
        app.http.post(format!("{}/v1/keys/report-leak", app.url)).json(&json!({ "key": "x" })).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "60");
    app.stop().await;
}

/// The revocation reaches another replica's cached verification within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_reaches_another_replica_within_a_second() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let app = TestApp::start_on(db).await;
    let (replica, _) = app.replica().await;
    let other = replica.url();
    let s = app.seed("Acme").await;
    let (_, secret, _) = app.generate(&s.admin_token, &s.integration, "Replicated").await;
    assert_eq!(code(&app, &other, &secret).await, "VALID", "cached on the other replica");
    report(&app, &app.url, json!({ "key": secret })).await;
    // The report is handled in the background: measure from when this replica revoked it.
    reaches(&app, &app.url, &secret, "COMPROMISED").await;
    let took = reaches(&app, &other, &secret, "COMPROMISED").await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
    replica.stop().await;
    app.stop().await;
}
