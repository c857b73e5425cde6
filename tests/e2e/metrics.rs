//! `/metrics`: served apart from the API, counting what operators alert on,
//! without tenant or key ids, and valid for Prometheus (`promtool check
//! metrics`, Debian's `prometheus` package).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use latchkey_tests::{AppOptions, TestApp, TestDb};

on_both_backends!(metrics_are_served_apart_count_verifications_and_pass_promtool);

const PROMTOOL: &str = "/usr/bin/promtool";

/// The value of the sample named exactly `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn scrape(app: &TestApp, url: &str) -> String {
    let response = app.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    response.text().await.unwrap()
}

/// `promtool check metrics` on `text`: its exit status and what it printed.
fn promtool(text: &str) -> Option<(bool, String)> {
    if !std::path::Path::new(PROMTOOL).exists() {
        let required = std::env::var("LATCHKEY_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
        assert!(!required, "LATCHKEY_REQUIRE_PROMTOOL=1 but {PROMTOOL} is missing");
        eprintln!("\n*** SKIPPED: promtool check — install Debian's prometheus package to run it. ***\n");
        return None;
    }
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), said))
}

async fn metrics_are_served_apart_count_verifications_and_pass_promtool(db: TestDb) {
    let app = TestApp::start_with(db, AppOptions { metrics: true, ..Default::default() }).await;
    let metrics_addr = app.server.as_ref().unwrap().metrics_addr.expect("a metrics listener");
    let url = format!("http://{metrics_addr}/metrics");
    assert_ne!(metrics_addr.port(), app.url.rsplit(':').next().unwrap().parse::<u16>().unwrap());
    let on_api_port = app.http.get(format!("{}/metrics", app.url)).send().await.unwrap();
    assert_eq!(on_api_port.status(), 404, "metrics are not on the API port");

    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Metered").await;
    assert_eq!(app.verify(&secret).await["valid"], true);
    assert_eq!(app.verify(&secret).await["valid"], true);
    assert_eq!(app.verify("lk_nope").await["code"], "MALFORMED");
    let forward = app.http.get(format!("{}/v1/auth", app.url)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(forward.status(), 200);
    let unknown = app.http.get(format!("{}/nothing/{}", app.url, s.tenant.id)).send().await.unwrap();
    assert_eq!(unknown.status(), 404);

    // The owner's notice is counted once delivered (the dispatcher counts a round at its end).
    let mut text = scrape(&app, &url).await;
    for _ in 0..100 {
        if sample(&text, r#"latchkey_mail_deliveries_total{result="sent"}"#) == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = scrape(&app, &url).await;
    }
    let expect = |series: &str, value: f64| assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    expect(r#"latchkey_mail_deliveries_total{result="sent"}"#, 1.0);
    expect(r#"latchkey_mail_deliveries_total{result="failed"}"#, 0.0);
    expect(r#"latchkey_verifications_total{result="VALID"}"#, 3.0);
    expect(r#"latchkey_verifications_total{result="MALFORMED"}"#, 1.0);
    expect(r#"latchkey_verifications_total{result="INVALID"}"#, 0.0);
    expect(r#"latchkey_verification_cache_lookups_total{result="miss"}"#, 1.0);
    expect(r#"latchkey_verification_cache_lookups_total{result="hit"}"#, 2.0);
    expect("latchkey_verification_cache_entries", 1.0);
    expect(r#"latchkey_http_request_duration_seconds_count{method="POST",route="/v1/keys/verify",status="200"}"#, 3.0);
    expect(r#"latchkey_http_request_duration_seconds_count{method="GET",route="/v1/auth",status="200"}"#, 1.0);
    expect(r#"latchkey_http_request_duration_seconds_count{method="GET",route="unmatched",status="404"}"#, 2.0);
    expect("latchkey_outbox_pending", 0.0);
    expect("latchkey_outbox_failed", 0.0);
    expect("latchkey_outbox_oldest_pending_age_seconds", 0.0);
    assert!(sample(&text, "latchkey_db_connections_open").unwrap() >= 1.0, "{text}");
    assert!(text.contains("latchkey_legacy_hash_queue_wait_seconds_bucket"), "{text}");
    assert!(text.contains("latchkey_revocation_listener_reconnects_total"), "{text}");
    for secretish in
        [s.tenant.id.to_string(), id, secret.clone(), s.integration.id.to_string(), secret[..15].to_owned()]
    {
        assert!(!text.contains(&secretish), "metrics carry no ids or secrets: {secretish}");
    }

    let Some((ok, said)) = promtool(&text) else { return app.stop().await };
    assert!(ok && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
    // And promtool does fail what Prometheus would not take.
    let (ok, _) = promtool("latchkey_broken{result=\"VALID\" 1\n").unwrap();
    assert!(!ok, "promtool rejects a malformed exposition");
    app.stop().await;
}
