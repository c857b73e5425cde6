//! Owner mail through the durable outbox, delivered to a real SMTP server on
//! loopback, parsed as MIME.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use latchkey_domain::EventDelivery;
use latchkey_domain::admin_token::AdminTokenKey;
use latchkey_domain::{Description, NoticeKind};
use latchkey_notify::mail::{MailNotifier, MailSettings, MailTransport};
use latchkey_notify::{Dispatcher, DispatcherConfig};
use latchkey_store::{NewCredential, NewKey, StoreOptions};
use latchkey_tests::process::ServerProcess;
use latchkey_tests::proxy::Proxy;
use latchkey_tests::smtp::{Mode, SmtpServer};
use latchkey_tests::{AppOptions, Backend, JWT_SECRET, TestApp, TestDb, fast_dispatcher, ops, seed_tenant};
use mail_parser::MimeHeaders;
use serde_json::{Value, json};

on_both_backends!(
    generate_rotate_delete_each_mail_the_owner_once_and_edit_mails_nobody,
    mail_sent_while_smtp_is_down_arrives_once_it_is_back,
    permanent_failures_are_kept_listed_and_resent_on_retry,
    transient_failures_are_retried_then_given_up,
    two_dispatchers_send_each_of_200_notices_exactly_once,
    mail_of_a_killed_server_is_sent_after_restart,
    without_smtp_mail_is_written_as_eml_files,
);

async fn app_with_smtp(backend: Backend, smtp_url: String) -> Option<TestApp> {
    latchkey_tests::logs::install();
    let db = TestDb::new(backend).await?;
    Some(TestApp::start_with(db, AppOptions { smtp_url: Some(smtp_url), ..AppOptions::default() }).await)
}

async fn wait_for_event(
    app: &TestApp,
    done: impl Fn(&latchkey_store::StoredEvent) -> bool,
) -> latchkey_store::StoredEvent {
    for _ in 0..300 {
        if let Some(e) = app.store.list_events(None, 10).await.unwrap().into_iter().find(|e| done(e)) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("event never reached the expected state: {:?}", app.store.list_events(None, 10).await.unwrap());
}

async fn generate_rotate_delete_each_mail_the_owner_once_and_edit_mails_nobody(backend: Backend) {
    let smtp = SmtpServer::start();
    let Some(app) = app_with_smtp(backend, smtp.url()).await else { return };
    let s = app.seed("Acme").await;
    let hostile = "<script>alert(1)</script> & \"Sync\"";

    let started = Instant::now();
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, hostile).await;
    let received = smtp.wait_for(1, Duration::from_secs(10)).await;
    let latency = started.elapsed();
    assert_eq!(received.len(), 1);
    assert!(latency < Duration::from_secs(2), "picked up promptly: {latency:?}");

    app.gql(Some(&s.admin_token), ops::UPDATE_DESCRIPTION, json!({ "id": id, "d": "Renamed" })).await;
    let new_secret = app.rotate(&s.admin_token, &id).await;
    app.gql(Some(&s.admin_token), ops::DELETE, json!({ "id": id })).await;
    smtp.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let received = smtp.received();
    assert_eq!(received.len(), 3, "one message per event, none for the edit");

    let events = app.store.events_of_key(s.tenant.id, id.parse().unwrap()).await.unwrap();
    let expectations = [
        (NoticeKind::Generated, hostile, &secret),
        (NoticeKind::Rotated, "Renamed", &new_secret),
        (NoticeKind::Deleted, "Renamed", &new_secret),
    ];
    for ((message, event), (kind, description, current_secret)) in received.iter().zip(&events).zip(expectations) {
        assert_eq!(event.event.kind, kind);
        assert_eq!(event.delivery, EventDelivery::Sent);
        assert_eq!(message.to, vec![s.integration.email.clone()], "envelope recipient: the owner");
        let raw = message.raw();
        assert!(!raw.contains(&secret[15..49]) && !raw.contains(&new_secret[15..49]), "no secret in any message");
        let parsed = message.parsed();
        assert_eq!(parsed.to().unwrap().first().unwrap().address(), Some(s.integration.email.as_str()));
        assert_eq!(parsed.from().unwrap().first().unwrap().address(), Some("no-reply@localhost"));
        assert_eq!(parsed.message_id(), Some(format!("key-event-{}@localhost", event.event.id).as_str()));
        let subject = parsed.subject().unwrap();
        assert!(subject.contains("API key") && subject.contains(kind.as_str()), "{subject}");
        assert!(subject.contains(description), "{subject}");
        let text = parsed.body_text(0).unwrap();
        let when = event.event.occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let last_four = &current_secret[current_secret.len() - 4..];
        for needle in [
            description,
            last_four,
            kind.as_str(),
            s.admin.name.as_str(),
            when.as_str(),
            "http://console.test/settings/integrations/api",
        ] {
            assert!(text.contains(needle), "{kind:?}: {needle:?} not in {text}");
        }
        let html = parsed.body_html(0).unwrap();
        assert!(!html.contains("<script"), "{html}");
        if kind == NoticeKind::Generated {
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Sync&quot;"), "{html}");
        }
        assert!(html.contains("href=\"http://console.test/settings/integrations/api\""));
        assert!(parsed.headers().iter().all(|h| !h.name().eq_ignore_ascii_case("bcc")));
        assert!(parsed.content_type().is_some());
    }
    app.stop().await;
}

async fn mail_sent_while_smtp_is_down_arrives_once_it_is_back(backend: Backend) {
    // The SMTP server is reached through a proxy that drops every
    // connection while "down" (a port of our own: no other test can take it).
    let smtp = SmtpServer::start();
    let down = Proxy::start(smtp.addr).await;
    down.cut();
    let Some(app) = app_with_smtp(backend, format!("smtp://{}", down.addr)).await else { return };
    let s = app.seed("Acme").await;
    app.generate(&s.admin_token, &s.integration, "Sent while down").await;
    let failed_once = wait_for_event(&app, |e| e.attempts >= 1 && e.last_error.is_some()).await;
    assert_eq!(failed_once.delivery, EventDelivery::Pending, "a dropped connection is retried");
    assert!(smtp.received().is_empty());

    down.restore();
    let received = smtp.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(received.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.received().len(), 1, "delivered once");
    let sent = wait_for_event(&app, |e| e.delivery == EventDelivery::Sent).await;
    assert!(sent.attempts >= 2);
    app.stop().await;
}

fn latchkey_cli(db: &TestDb, args: &[&str]) -> Value {
    let out = std::process::Command::new(latchkey_tests::latchkey_bin())
        .args(args)
        .env("LATCHKEY_DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn permanent_failures_are_kept_listed_and_resent_on_retry(backend: Backend) {
    let smtp = SmtpServer::start();
    smtp.set_mode(Mode::RefusePermanently);
    let Some(app) = app_with_smtp(backend, smtp.url()).await else { return };
    let s = app.seed("Acme").await;
    app.generate(&s.admin_token, &s.integration, "Refused").await;
    let failed = wait_for_event(&app, |e| e.delivery == EventDelivery::Failed).await;
    assert_eq!(failed.attempts, 1, "a 5xx is not retried");
    assert!(failed.last_error.as_deref().unwrap().contains("554"), "{:?}", failed.last_error);

    let listed = latchkey_cli(&app.db, &["outbox", "list", "--status", "failed"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], failed.event.id.to_string());
    assert_eq!(listed[0]["event"], "generated");
    assert_eq!(listed[0]["recipient"], s.integration.email);
    assert!(listed[0]["lastError"].as_str().unwrap().contains("554"));
    assert_eq!(latchkey_cli(&app.db, &["outbox", "list", "--status", "pending"]), json!([]));

    smtp.set_mode(Mode::Accept);
    let retried = latchkey_cli(&app.db, &["outbox", "retry", &failed.event.id.to_string()]);
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["attempts"], 0);
    let received = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 1);
    wait_for_event(&app, |e| e.delivery == EventDelivery::Sent).await;
    assert_eq!(latchkey_cli(&app.db, &["outbox", "list", "--status", "sent"]).as_array().unwrap().len(), 1);

    // Retrying something that does not exist says so.
    let out = std::process::Command::new(latchkey_tests::latchkey_bin())
        .args(["outbox", "retry", &uuid::Uuid::now_v7().to_string()])
        .env("LATCHKEY_DATABASE_URL", &app.db.url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no notice"));
    app.stop().await;
}

async fn transient_failures_are_retried_then_given_up(backend: Backend) {
    let smtp = SmtpServer::start();
    smtp.set_mode(Mode::RefuseTemporarily);
    let Some(app) = app_with_smtp(backend, smtp.url()).await else { return };
    let s = app.seed("Acme").await;
    app.generate(&s.admin_token, &s.integration, "Greylisted").await;
    let failed = wait_for_event(&app, |e| e.delivery == EventDelivery::Failed).await;
    assert_eq!(failed.attempts, fast_dispatcher().max_attempts, "retried up to the limit");
    let reason = failed.last_error.unwrap();
    assert!(reason.contains("gave up after 5 attempts") && reason.contains("451"), "{reason}");
    assert!(smtp.received().is_empty());
    app.stop().await;
}

async fn two_dispatchers_send_each_of_200_notices_exactly_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let store = db.store().await;
    store.migrate().await.unwrap();
    let seeded = seed_tenant(&store, &AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap(), "Bulk").await;
    let (tenant, admin) = (seeded.tenant, seeded.admin);
    let hash = latchkey_domain::hashing::hash_secret(&latchkey_domain::ApiKeySecret::generate().unwrap());
    for i in 0..200 {
        let secret = latchkey_domain::ApiKeySecret::generate().unwrap();
        let credential = NewCredential::new(&secret, hash.clone());
        let new = NewKey::new(tenant.id, admin.id, Description::parse(&format!("k{i}")).unwrap(), credential);
        latchkey_tests::insert_generated_key(&store, new, &admin).await;
    }
    assert_eq!(store.event_counts().await.unwrap(), (200, 0, 0));

    let smtp = SmtpServer::start();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let own_pool = latchkey_store::Store::connect(&db.url, &StoreOptions::default()).await.unwrap();
        let notifier = Arc::new(MailNotifier::new(
            MailTransport::smtp(&smtp.url(), Duration::from_secs(5)).unwrap(),
            MailSettings::new("Latchkey <no-reply@localhost>", "http://console.test").unwrap(),
        ));
        // SQLite is one process's embedded database: two dispatchers on one
        // file are checked for exactly-once only, one send at a time each
        // (concurrent writers there mostly wait on the file lock).
        let concurrency = if backend == Backend::Postgres { 4 } else { 1 };
        let config = DispatcherConfig { batch_size: 10, concurrency, ..fast_dispatcher() };
        let dispatcher = Dispatcher::new(
            own_pool,
            Arc::new(latchkey_domain::SystemClock),
            notifier,
            config,
            Arc::new(tokio::sync::Notify::new()),
        );
        runs.push(tokio::spawn(dispatcher.run(stop_rx.clone())));
    }
    let received = smtp.wait_for(200, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.send(true).unwrap();
    for run in runs {
        run.await.unwrap();
    }
    let received = if smtp.received().len() > received.len() { smtp.received() } else { received };
    assert_eq!(received.len(), 200, "every notice sent exactly once");
    let ids: HashSet<String> = received.iter().map(|m| m.parsed().message_id().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 200, "no duplicates");
    assert_eq!(store.event_counts().await.unwrap(), (0, 200, 0));
}

async fn mail_of_a_killed_server_is_sent_after_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let store = db.store().await;
    store.migrate().await.unwrap();
    let seeded = seed_tenant(&store, &AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap(), "Acme").await;
    let (admin, token) = (seeded.admin, seeded.admin_token);
    // No mail leaves while the first server lives: its SMTP proxy drops every connection.
    let smtp = SmtpServer::start();
    let down = Proxy::start(smtp.addr).await;
    down.cut();
    let smtp_url = format!("smtp://{}", down.addr);
    let envs = [
        ("LATCHKEY_DATABASE_URL", db.url.as_str()),
        ("LATCHKEY_JWT_SECRET", JWT_SECRET),
        ("LATCHKEY_SMTP_URL", smtp_url.as_str()),
        ("LATCHKEY_MAIL_RETRY_MAX_SECS", "1"),
        ("LATCHKEY_SMTP_TIMEOUT_SECS", "2"),
        ("LATCHKEY_MAIL_LEASE_SECS", "3"),
    ];

    let first = ServerProcess::spawn(&envs);
    let http = reqwest::Client::new();
    let body: Value = http
        .post(format!("{}/graphql", first.url))
        .bearer_auth(&token)
        .json(&json!({ "query": latchkey_tests::ops::GENERATE, "variables": { "input": { "ownerId": admin.id, "description": "Survives a crash" } } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["generateApiKey"]["userErrors"], json!([]), "{body}");
    first.kill9();
    assert_eq!(store.event_counts().await.unwrap(), (1, 0, 0), "the notice was committed with the key");

    down.restore();
    let second = ServerProcess::spawn(&envs);
    let received = smtp.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(received.len(), 1, "delivered after restart:\n{}", second.log());
    assert!(received[0].parsed().subject().unwrap().contains("Survives a crash"));

    // SIGTERM: a graceful stop, exit 0.
    let status = second.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(store.event_counts().await.unwrap(), (0, 1, 0));
}

async fn without_smtp_mail_is_written_as_eml_files(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let app =
        TestApp::start_with(db, AppOptions { mail_dir: Some(dir.path().to_owned()), ..AppOptions::default() }).await;
    let s = app.seed("Acme").await;
    app.generate(&s.admin_token, &s.integration, "Filed").await;
    let event = wait_for_event(&app, |e| e.delivery == EventDelivery::Sent).await;
    let path = dir.path().join(format!("{}.eml", event.event.id));
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert_eq!(parsed.subject(), Some("Your API key \"Filed\" was generated"));
    assert_eq!(parsed.to().unwrap().first().unwrap().address(), Some(s.integration.email.as_str()));
    app.stop().await;
}
