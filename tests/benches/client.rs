//! Benchmarks of `latchkey-client` against a real Latchkey in process:
//!
//! * criterion: a cached verification (`Verifier::verify` answered from
//!   the in-process cache), with no requirement and with a cloud and a
//!   permission to decide;
//! * revocation latency over 1,000 revocations: a key is disabled and
//!   enabled on one replica, and the time until the verifier (streaming
//!   from the other replica) has dropped the key from its cache is taken
//!   from the mutation's answer (after the commit: a lower bound) and from
//!   its request (an upper bound: it includes the mutation's own work).
//!   On PostgreSQL (`LATCHKEY_TEST_POSTGRES_URL`, the default local
//!   cluster) across two replicas; on SQLite in one process otherwise.
//!
//! Run: `cargo bench -p latchkey-tests --bench client`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use criterion::Criterion;
use latchkey_client::{Cloud, RequestContext, Verification, Verifier};
use latchkey_tests::{Backend, TestApp, TestDb, ops};
use serde_json::json;

const REVOCATIONS: usize = 1_000;

async fn key(
    app: &TestApp,
    token: &str,
    owner: &latchkey_domain::User,
    restrictions: serde_json::Value,
) -> (String, String) {
    let input = json!({ "input": { "ownerId": owner.id, "description": "bench", "restrictions": restrictions } });
    let body = app.gql(Some(token), ops::GENERATE_RESTRICTED, input).await;
    let payload = &body["data"]["generateApiKey"];
    (payload["apiKey"]["id"].as_str().unwrap().to_owned(), payload["secret"].as_str().unwrap().to_owned())
}

async fn trusted(verifier: &Verifier) {
    let started = Instant::now();
    while !verifier.stats().trusted {
        assert!(started.elapsed() < Duration::from_secs(10), "the stream did not come up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (app, replica, verifier, secret, id, token, backend) = runtime.block_on(async {
        let db = match TestDb::new(Backend::Postgres).await {
            Some(db) => db,
            None => TestDb::new(Backend::Sqlite).await.unwrap(),
        };
        let backend = format!("{:?}", db.backend);
        let app = TestApp::start_on(db).await;
        let s = app.seed("Bench").await;
        let (replica, stream_url) = match app.db.backend {
            Backend::Postgres => {
                let (replica, _) = app.replica().await;
                let url = replica.url();
                (Some(replica), url)
            }
            Backend::Sqlite => (None, app.url.clone()),
        };
        let (_, stream_key) =
            key(&app, &s.admin_token, &s.integration, json!({ "permissions": ["verify:stream"] })).await;
        let (id, secret) = key(&app, &s.admin_token, &s.integration, json!({ "permissions": ["users:read"] })).await;
        let verifier = Verifier::builder(stream_url, stream_key).build().unwrap();
        trusted(&verifier).await;
        (app, replica, verifier, secret, id, s.admin_token, backend)
    });

    let plain = RequestContext::new();
    let decided = RequestContext::new().cloud(Cloud::Customer).permissions(["users:read"]);
    runtime.block_on(async {
        for context in [&plain, &decided] {
            assert!(matches!(verifier.verify(&secret, context).await, Ok(Verification::Valid(_))));
        }
    });
    let mut criterion = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(5));
    let asked = verifier.stats().asked;
    criterion.bench_function("client: cached verify, no requirement", |b| {
        b.to_async(&runtime).iter(|| verifier.verify(&secret, &plain))
    });
    criterion.bench_function("client: cached verify, a cloud and a permission", |b| {
        b.to_async(&runtime).iter(|| verifier.verify(&secret, &decided))
    });
    assert_eq!(verifier.stats().asked, asked, "every benchmarked verification came from the cache");

    runtime.block_on(async {
        let mut after_commit = Vec::with_capacity(REVOCATIONS);
        let mut from_request = Vec::with_capacity(REVOCATIONS);
        for i in 0..REVOCATIONS {
            // Cached, then disabled (or enabled again): either drops it from the cache.
            verifier.verify(&secret, &plain).await.unwrap();
            let signals = verifier.stats().signals;
            let mutation = if i % 2 == 0 { ops::DISABLE } else { ops::ENABLE };
            let sent = Instant::now();
            let body = app.gql(Some(&token), mutation, json!({ "id": id })).await;
            assert!(body["errors"].is_null(), "{body}");
            let answered = Instant::now();
            while verifier.stats().signals == signals {
                assert!(sent.elapsed() < Duration::from_secs(5), "revocation {i} never reached the client");
                tokio::time::sleep(Duration::from_micros(100)).await;
            }
            from_request.push(sent.elapsed());
            after_commit.push(answered.elapsed());
            if i % 2 == 1 {
                assert!(matches!(verifier.verify(&secret, &plain).await, Ok(Verification::Valid(_))));
            }
        }
        let report = |what: &str, mut samples: Vec<Duration>| {
            samples.sort();
            let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
            println!(
                "client: revocation to cache ({backend}, {what}, n={}): median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                samples.len(),
                at(0.5).as_secs_f64() * 1e3,
                at(0.99).as_secs_f64() * 1e3,
                at(1.0).as_secs_f64() * 1e3
            );
        };
        report("from the mutation's answer", after_commit);
        report("from the mutation's request", from_request);
        drop(verifier);
        if let Some(replica) = replica {
            replica.stop().await;
        }
        app.stop().await;
    });
}
