//! Benchmark of reading usage on PostgreSQL with 10 million usage rows:
//! `ApiKey.usage` of one key over 30 days by day, `tenantUsage` over 30 days
//! by day and 48 hours by hour, and the key table ordered by `USAGE_30D`,
//! all over real HTTP; then the storage per row and per active key per day.
//!
//! Seeded in SQL, within retention (the server's flush drops older rows):
//! 11,000 keys of one tenant (in `api_keys` too), each with an hourly row for every hour of 34
//! days (9 million) and a daily row for each of 100 days (1.1 million).
//!
//! Run: `cargo bench -p latchkey-tests --bench usage` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use latchkey_tests::{Backend, TestApp, TestDb};
use serde_json::{Value, json};

const KEYS: i64 = 11_000;
const HOURLY_DAYS: i64 = 34;
const DAILY_DAYS: i64 = 100;

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what:<52} median {:>8.2} ms   p95 {:>8.2} ms   (n={})",
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        samples.len()
    );
}

async fn timed(app: &TestApp, token: &str, query: &str, vars: Value, n: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let body = app.gql(Some(token), query, vars.clone()).await;
        samples.push(started.elapsed());
        assert!(body["errors"].is_null(), "{body}");
    }
    samples
}

#[tokio::main]
async fn main() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        println!("PostgreSQL is unavailable: skipped");
        return;
    };
    let app = TestApp::start_on(db).await;
    let s = app.seed("Bench").await;
    let (id, _, _) = app.generate(&s.admin_token, &s.integration, "Measured").await;
    let tenant = s.tenant.id;

    let started = Instant::now();
    let hours = HOURLY_DAYS * 24;
    // The measured key and 10,999 copies of it (distinct ids and lookup ids), so
    // the key table orders a tenant of 11,000 keys by their usage.
    app.db
        .execute(&format!(
            "INSERT INTO api_keys (id, tenant_id, owner_id, description, description_folded, lookup_id, \
             credential_hash, credential_version, last_four, created_at) \
             SELECT gen_random_uuid(), tenant_id, owner_id, description || ' ' || g, description_folded || ' ' || g, \
             substr(md5(g::text || random()::text), 1, 16), credential_hash, 1, last_four, created_at \
             FROM api_keys CROSS JOIN generate_series(2, {KEYS}) g WHERE id = '{id}'"
        ))
        .await;
    let keys = format!("(SELECT id FROM api_keys WHERE tenant_id = '{tenant}') k");
    app.db
        .execute(&format!(
            "INSERT INTO key_usage (key_id, tenant_id, bucket_seconds, period_start, outcome, count) \
             SELECT k.id, '{tenant}', 3600, date_trunc('hour', now()) - make_interval(hours => h), \
                    CASE WHEN h % 10 = 0 THEN 'FORBIDDEN' ELSE 'VALID' END, 1 + (h % 7) \
             FROM {keys} CROSS JOIN generate_series(0, {hours} - 1) h"
        ))
        .await;
    app.db
        .execute(&format!(
            "INSERT INTO key_usage (key_id, tenant_id, bucket_seconds, period_start, outcome, count) \
             SELECT k.key_id, k.tenant_id, 86400, date_trunc('day', now()) - make_interval(days => d), 'VALID', 24 \
             FROM (SELECT DISTINCT key_id, tenant_id FROM key_usage) k CROSS JOIN generate_series(0, {DAILY_DAYS} - 1) d"
        ))
        .await;
    app.db
        .execute(
            "INSERT INTO tenant_usage (tenant_id, bucket_seconds, period_start, outcome, count) \
             SELECT tenant_id, bucket_seconds, period_start, outcome, SUM(count) FROM key_usage GROUP BY 1, 2, 3, 4",
        )
        .await;
    app.db.execute("ANALYZE key_usage").await;
    app.db.execute("ANALYZE tenant_usage").await;
    let rows = app.db.count("SELECT COUNT(*) FROM key_usage").await;
    println!("seeded {rows} usage rows in {:.0} s", started.elapsed().as_secs_f64());

    let today = Utc::now().duration_trunc(chrono::Duration::days(1)).unwrap();
    let (from, to) = (today - chrono::Duration::days(29), today + chrono::Duration::days(1));
    let key_query = "query($id: ID!, $from: DateTime!, $to: DateTime!) { apiKey(id: $id) { \
        usage(from: $from, to: $to, granularity: DAY) { valid refused buckets { start valid refused } } } }";
    let vars = json!({ "id": id, "from": from, "to": to });
    timed(&app, &s.admin_token, key_query, vars.clone(), 5).await;
    report("ApiKey.usage, one key, 30 days by day", timed(&app, &s.admin_token, key_query, vars, 100).await);

    let tenant_query = "query($from: DateTime!, $to: DateTime!, $g: UsageGranularity!) { \
        tenantUsage(from: $from, to: $to, granularity: $g) { valid refused buckets { start valid refused } } }";
    let vars = json!({ "from": from, "to": to, "g": "DAY" });
    report("tenantUsage, 30 days by day", timed(&app, &s.admin_token, tenant_query, vars, 100).await);
    let hour = Utc::now().duration_trunc(chrono::Duration::hours(1)).unwrap();
    let vars =
        json!({ "from": hour - chrono::Duration::hours(47), "to": hour + chrono::Duration::hours(1), "g": "HOUR" });
    report("tenantUsage, 48 hours by hour", timed(&app, &s.admin_token, tenant_query, vars, 100).await);
    let table = "{ apiKeys(first: 25, orderBy: {field: USAGE_30D}) { nodes { id usage30d } } }";
    report("apiKeys(orderBy: USAGE_30D), first 25", timed(&app, &s.admin_token, table, json!({}), 50).await);

    let bytes = app.db.count("SELECT pg_total_relation_size('key_usage')").await;
    let per_row = bytes as f64 / rows as f64;
    println!(
        "key_usage: {:.0} MB with indexes, {per_row:.0} bytes per row; a key used every hour under one outcome \
         writes 25 rows a day: {:.1} KB per active key per day",
        bytes as f64 / 1e6,
        per_row * 25.0 / 1e3
    );
    app.stop().await;
}
