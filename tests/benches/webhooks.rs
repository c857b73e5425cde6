//! Benchmark of webhook delivery: 10,000 key changes (generates over
//! GraphQL, 16 at a time) to 3 endpoints on loopback receivers, on SQLite
//! and PostgreSQL. Reports the deliveries per second (30,000 in all, from
//! the first commit to the last receipt) and the time from a change's
//! commit (its mutation's response) to each receipt: median, p99, max.
//! Flat out the changes outrun the deliveries and the latency is the
//! backlog's; a second run paces 2,000 changes at 200 a second (600
//! deliveries a second) for the latency of a system keeping up.
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

/// `changes` generates, 16 at a time, or started at `pace` per second.
async fn run(backend: Backend, name: &str, changes: usize, pace: Option<u32>) {
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
    let generate = |i: usize| {
        let (app, s) = (&app, &s);
        async move {
            if let Some(pace) = pace {
                tokio::time::sleep_until((started + Duration::from_secs_f64(i as f64 / f64::from(pace))).into()).await;
            }
            let input = json!({ "input": { "ownerId": s.integration.id, "description": format!("change {i}") } });
            let body = app.gql(Some(&s.admin_token), ops::GENERATE, input).await;
            (body["data"]["generateApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned(), Instant::now())
        }
    };
    let in_flight = if pace.is_some() { 64 } else { 16 };
    let committed: Vec<(String, Instant)> =
        futures_util::stream::iter(0..changes).map(generate).buffer_unordered(in_flight).collect().await;
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
    let name = match pace {
        Some(pace) => format!("{name} at {pace} changes/s"),
        None => format!("{name} flat out"),
    };
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
    for (backend, name) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
        run(backend, name, changes, None).await;
        run(backend, name, changes / 5, Some(200)).await;
    }
}
