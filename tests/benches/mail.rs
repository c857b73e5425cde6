//! Benchmark of owner mail through the outbox, to a real SMTP server on
//! loopback, on SQLite and PostgreSQL:
//!
//! * latency from a committed mutation (its HTTP response) to the message
//!   being accepted by the SMTP server, over 100 generates;
//! * the notices per second one dispatcher, and two dispatchers on one
//!   database, sustain on a backlog of 2,000 notices.
//!
//! Run: `cargo bench -p latchkey-tests --bench mail` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use latchkey_domain::{ApiKeySecret, Description, Role};
use latchkey_notify::mail::{MailNotifier, MailSettings, MailTransport};
use latchkey_notify::{Dispatcher, DispatcherConfig};
use latchkey_store::{NewCredential, NewKey, NewUser, Store, StoreOptions};
use latchkey_tests::smtp::SmtpServer;
use latchkey_tests::{AppOptions, Backend, TestApp, TestDb};

async fn latency(backend: Backend, name: &str) {
    let Some(db) = TestDb::new(backend).await else {
        println!("{name:<10} skipped: database unavailable");
        return;
    };
    let smtp = SmtpServer::start();
    let options =
        AppOptions { smtp_url: Some(smtp.url()), dispatcher: DispatcherConfig::default(), ..AppOptions::default() };
    let app = TestApp::start_with(db, options).await;
    let s = app.seed("Bench").await;
    let mut samples = Vec::new();
    for i in 0..100 {
        app.generate(&s.admin_token, &s.integration, &format!("latency {i}")).await;
        let committed = Instant::now();
        while smtp.received().len() < i + 1 {
            tokio::time::sleep(Duration::from_micros(200)).await;
            assert!(committed.elapsed() < Duration::from_secs(10), "message {i} never arrived");
        }
        samples.push(committed.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<10} mutation committed -> SMTP accepted      median {:>7.2} ms   p95 {:>7.2} ms   max {:>7.2} ms (n=100)",
        ms(samples[50]),
        ms(samples[95]),
        ms(samples[99])
    );
    app.stop().await;
}

async fn backlog(store: &Store, count: usize) {
    let now = Utc::now();
    let tenant = store.create_tenant("Backlog", now).await.unwrap();
    let owner = store
        .create_user(
            NewUser {
                tenant_id: tenant.id,
                email: "owner@backlog.example".into(),
                name: "Owner".into(),
                role: Role::InternalAdmin,
            },
            now,
        )
        .await
        .unwrap();
    let hash = latchkey_domain::hashing::hash_secret(&ApiKeySecret::generate().unwrap());
    for i in 0..count {
        let secret = ApiKeySecret::generate().unwrap();
        let credential = NewCredential::new(&secret, hash.clone());
        let new = NewKey::new(tenant.id, owner.id, Description::parse(&format!("n{i}")).unwrap(), credential);
        latchkey_tests::insert_generated_key(store, new, &owner).await;
    }
}

async fn throughput(backend: Backend, name: &str, dispatchers: usize) {
    const NOTICES: usize = 2000;
    let Some(db) = TestDb::new(backend).await else { return };
    let store = db.store().await;
    store.migrate().await.unwrap();
    backlog(&store, NOTICES).await;
    let smtp = SmtpServer::start();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut runs = Vec::new();
    for _ in 0..dispatchers {
        let pool = Store::connect(&db.url, &StoreOptions::default()).await.unwrap();
        let notifier = Arc::new(MailNotifier::new(
            MailTransport::smtp(&smtp.url(), Duration::from_secs(20)).unwrap(),
            MailSettings::new("Latchkey <no-reply@localhost>", "http://console.test").unwrap(),
        ));
        let dispatcher = Dispatcher::new(
            pool,
            Arc::new(latchkey_domain::SystemClock),
            notifier,
            DispatcherConfig::default(),
            Arc::new(tokio::sync::Notify::new()),
        );
        runs.push(tokio::spawn(dispatcher.run(stop_rx.clone())));
    }
    let received = smtp.wait_for(NOTICES, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    stop.send(true).unwrap();
    for run in runs {
        run.await.unwrap();
    }
    assert_eq!(received.len(), NOTICES);
    let (pending, sent, failed) = store.event_counts().await.unwrap();
    assert_eq!((pending, sent as usize, failed), (0, NOTICES, 0));
    println!(
        "{name:<10} {dispatchers} dispatcher(s), {NOTICES} notices          {:>7.0} notices/s  ({:.2} s)",
        NOTICES as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("latchkey mail benchmark ({} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    runtime.block_on(async {
        for (backend, name) in [(Backend::Sqlite, "Sqlite"), (Backend::Postgres, "Postgres")] {
            latency(backend, name).await;
            throughput(backend, name, 1).await;
            throughput(backend, name, 2).await;
        }
    });
}
