//! Benchmark of the key table and key generation, over real HTTP, on SQLite
//! and PostgreSQL:
//!
//! * hashing a new secret (current scheme) and, for comparison, with the
//!   legacy argon2id parameters every generate and rotate paid before,
//! * `generateApiKey` end to end,
//! * a page of 50 from a tenant with 10,000 keys: first page, a deep page
//!   (cursor in the middle), and a description search.
//!
//! Run: `cargo bench -p latchkey-tests --bench keys` (release build).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::join_all;
use latchkey_domain::hashing::{hash_secret, legacy_argon2id_hash};
use latchkey_domain::{ApiKeySecret, Description};
use latchkey_store::{NewCredential, NewKey};
use latchkey_tests::{Backend, TestApp, TestDb};
use serde_json::json;

const KEYS: usize = 10_000;

struct Stats {
    median: Duration,
    p95: Duration,
    n: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats { median: at(0.5), p95: at(0.95), n: samples.len() }
}

fn row(backend: &str, what: &str, s: &Stats) {
    println!(
        "{backend:<10} {what:<44} median {:>9.3} ms   p95 {:>9.3} ms   (n={})",
        s.median.as_secs_f64() * 1e3,
        s.p95.as_secs_f64() * 1e3,
        s.n
    );
}

async fn time<F, Fut>(n: usize, mut f: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f(i).await;
        samples.push(started.elapsed());
    }
    stats(samples)
}

async fn bench(backend: Backend) {
    let name = format!("{backend:?}");
    let Some(db) = TestDb::new(backend).await else {
        println!("{name:<10} skipped: database unavailable");
        return;
    };
    let app = TestApp::start_on(db).await;
    let s = app.seed("Bench").await;

    let current = time(20, |_| async {
        let secret = ApiKeySecret::generate().unwrap();
        std::hint::black_box(hash_secret(&secret));
    })
    .await;
    row(&name, "hash a new secret (sha256)", &current);
    let legacy = time(20, |_| async {
        let secret = ApiKeySecret::generate().unwrap();
        tokio::task::spawn_blocking(move || legacy_argon2id_hash(&secret).unwrap()).await.unwrap();
    })
    .await;
    row(&name, "legacy hash (argon2id m=19456,t=2,p=1)", &legacy);

    let generate = time(30, |i| {
        let app = &app;
        let s = &s;
        async move {
            app.generate(&s.admin_token, &s.integration, &format!("generated {i}")).await;
        }
    })
    .await;
    row(&name, "generateApiKey over HTTP", &generate);

    // 10,000 keys: distinct lookup ids, one shared hash (the key table never
    // reads it).
    let started = Instant::now();
    let template = ApiKeySecret::generate().unwrap();
    let hash = hash_secret(&template);
    let base = Utc::now() - chrono::Duration::days(30);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        join_all(chunk.iter().map(|&i| {
            let store = app.store.clone();
            let hash = hash.clone();
            let tenant = s.tenant.id;
            let owner = if i % 3 == 0 { s.admin.id } else { s.integration.id };
            async move {
                let secret = ApiKeySecret::generate().unwrap();
                let credential = NewCredential::new(&secret, hash);
                let description = Description::parse(&format!("bench key {i:05}")).unwrap();
                let new = NewKey::new(tenant, owner, description, credential);
                store.import_legacy_key(new, base + chrono::Duration::seconds(i as i64)).await.unwrap();
            }
        }))
        .await;
    }
    println!("{name:<10} seeded {KEYS} keys in {:.1} s", started.elapsed().as_secs_f64());

    let page = "query($after: String, $search: String) { apiKeys(first: 50, after: $after, search: $search) { \
        totalCount pageInfo { hasNextPage endCursor } nodes { id lastFour description owner { id name } createdAt \
        createdBy { id } lastEditedAt lastEditedBy { id } lastUsedAt } } }";
    let first = time(200, |_| {
        let app = &app;
        let token = &s.admin_token;
        async move {
            let body = app.gql(Some(token), page, json!({})).await;
            assert_eq!(body["data"]["apiKeys"]["nodes"].as_array().unwrap().len(), 50);
        }
    })
    .await;
    row(&name, "apiKeys first page of 50 (10k keys)", &first);

    // A cursor half-way down.
    let mut after: Option<String> = None;
    for _ in 0..(KEYS / 50 / 2) {
        let body = app.gql(Some(&s.admin_token), page, json!({ "after": after })).await;
        after = body["data"]["apiKeys"]["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    let deep = time(200, |_| {
        let app = &app;
        let token = &s.admin_token;
        let after = after.clone();
        async move {
            let body = app.gql(Some(token), page, json!({ "after": after })).await;
            assert_eq!(body["data"]["apiKeys"]["nodes"].as_array().unwrap().len(), 50);
        }
    })
    .await;
    row(&name, "apiKeys page of 50 at key 5,000", &deep);

    let search = time(100, |_| {
        let app = &app;
        let token = &s.admin_token;
        async move {
            let body = app.gql(Some(token), page, json!({ "search": "KEY 09" })).await;
            assert_eq!(body["data"]["apiKeys"]["totalCount"], 1000);
        }
    })
    .await;
    row(&name, "apiKeys search (1,000 of 10k match)", &search);
    app.stop().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!("latchkey key benchmark ({} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    runtime.block_on(async {
        bench(Backend::Sqlite).await;
        bench(Backend::Postgres).await;
    });
}
