//! Benchmark of webhook delivery: 10,000 key changes (generates over
//! GraphQL, 16 at a time) to 3 endpoints on loopback receivers, on SQLite
//! and PostgreSQL. Reports the deliveries per second (30,000 in all, from
//! the first commit to the last receipt) and the time from a change's
//! commit (its mutation's response) to each receipt: median, p99, max.
//!
//! Run: `cargo bench -p latchkey-tests --bench webhooks` (release build);
//! `LATCHKEY_BENCH_WEBHOOK_CHANGES` sets the number of changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use latchkey_tests::webhooks::Receiver;
use latchkey_tests::{AppOptions, Backend, TestApp, TestDb, ops};
use serde_json::json;

async fn run(backend: Backend, name: &str, changes: usize) {
    let Some(db) = TestDb::new(backend).await else {
        println!("{name:<10} skipped: database unavailable");
        return;
    };
    let mut webhooks = latchkey_tests::test_webhooks();
    webhooks.dispatcher = latchkey_app::webhook_dispatch::WebhookDispatcherConfig::default();
    let app = TestApp::start_with(db, AppOptions { webhooks, ..AppOptions::default() }).await;
    let s = app.seed("Bench").await;
    let receivers = [Receiver::start().await, Receiver::start().await, Receiver::start().await];
    let create = "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { userErrors { code } } }";
    for receiver in &receivers {
        let input = json!({ "input": { "url": receiver.url(), "eventTypes": ["api_key.created"] } });
        let body = app.gql(Some(&s.admin_token), create, input).await;
        assert_eq!(body["data"]["createWebhookEndpoint"]["userErrors"], json!([]), "{body}");
    }
    let started = Instant::now();
    let committed: Vec<(String, Instant)> = futures_util::stream::iter(0..changes)
        .map(|i| {
            let (app, s) = (&app, &s);
            async move {
                let input = json!({ "input": { "ownerId": s.integration.id, "description": format!("change {i}") } });
                let body = app.gql(Some(&s.admin_token), ops::GENERATE, input).await;
                (body["data"]["generateApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned(), Instant::now())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let changes_done = started.elapsed();
    let committed: HashMap<String, Instant> = committed.into_iter().collect();
    let mut latencies = Vec::with_capacity(changes * 3);
    let mut last = started;
    for receiver in &receivers {
        for received in receiver.wait_for(changes, Duration::from_secs(900)).await {
            let key = received.json()["data"]["apiKey"]["id"].as_str().unwrap().to_owned();
            let at = committed[&key];
            latencies.push(received.at.saturating_duration_since(at));
            last = last.max(received.at);
        }
    }
    latencies.sort();
    let total = latencies.len();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<10} {changes} key changes in {:.1} s ({:.0}/s); {total} deliveries to 3 endpoints in {:.1} s: {:.0} deliveries/s",
        changes_done.as_secs_f64(),
        changes as f64 / changes_done.as_secs_f64(),
        (last - started).as_secs_f64(),
        total as f64 / (last - started).as_secs_f64(),
    );
    println!(
        "{name:<10} commit -> receipt: median {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(latencies[total / 2]),
        ms(latencies[total * 99 / 100]),
        ms(latencies[total - 1])
    );
    app.stop().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let changes = std::env::var("LATCHKEY_BENCH_WEBHOOK_CHANGES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    run(Backend::Sqlite, "sqlite", changes).await;
    run(Backend::Postgres, "postgres", changes).await;
}
