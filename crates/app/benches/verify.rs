//! Micro-benchmarks of `KeyVerifier::verify` in process, on SQLite:
//! * a cached key (the hot path in front of every integration request), with
//!   and without an expiry (whose deadline every hit checks), and restricted
//!   (cloud, 50 networks, permissions decided on every hit);
//! * a malformed key;
//! * cold keys: distinct keys, each verified once on a fresh cache (lookup +
//!   hash check), stored with the current scheme and, for comparison in the
//!   same run, with the legacy argon2id parameters every key had before;
//! * an unknown lookup id and a wrong secret for a known one (first time
//!   each), whose times must not tell them apart.
//!
//! Run: `cargo bench -p latchkey-app --bench verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_app::metrics::Metrics;
use latchkey_app::{KeyVerifier, RequestContext, VerifierConfig, VerifyOutcome};
use latchkey_domain::hashing::{hash_secret, legacy_argon2id_hash};
use latchkey_domain::secret::with_checksum;
use latchkey_domain::{ApiKeySecret, Clock, Description, Role, SystemClock};
use latchkey_store::{NewCredential, NewKey, NewUser, Store, StoreOptions};

const CURRENT_KEYS: usize = 20_000;

async fn seed(store: &Store, count: usize, legacy: bool) -> Vec<String> {
    seed_expiring(store, count, legacy, None).await
}

/// As [`seed`], every key expiring at `expires_at`.
async fn seed_expiring(
    store: &Store,
    count: usize,
    legacy: bool,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Vec<String> {
    let now = SystemClock.now();
    let tenant = store.create_tenant("Bench", now).await.unwrap();
    let owner = store
        .create_user(
            NewUser {
                tenant_id: tenant.id,
                email: "o@b.example".into(),
                name: "O".into(),
                role: Role::IntegrationUser,
            },
            now,
        )
        .await
        .unwrap();
    let mut secrets = Vec::with_capacity(count);
    for _ in 0..count {
        let secret = ApiKeySecret::generate().unwrap();
        let hash = if legacy { legacy_argon2id_hash(&secret).unwrap() } else { hash_secret(&secret) };
        let new =
            NewKey::new(tenant.id, owner.id, Description::parse("bench").unwrap(), NewCredential::new(&secret, hash))
                .expiring_at(expires_at);
        store.import_legacy_key(new, now).await.unwrap();
        secrets.push(secret.expose().to_owned());
    }
    secrets
}

/// One key restricted to two permissions, the customer cloud and 50 networks.
async fn seed_restricted(store: &Store) -> String {
    let now = SystemClock.now();
    let tenant = store.create_tenant("Restricted", now).await.unwrap();
    let owner = store
        .create_user(
            NewUser {
                tenant_id: tenant.id,
                email: "r@b.example".into(),
                name: "R".into(),
                role: Role::IntegrationUser,
            },
            now,
        )
        .await
        .unwrap();
    let networks: Vec<String> = (0..50).map(|i| format!("10.{i}.0.0/16")).collect();
    let restrictions = latchkey_domain::restrictions::Restrictions::parse(
        Some(&["users:read".into(), "reports:read".into()]),
        &[latchkey_domain::Cloud::Customer],
        &networks,
    )
    .unwrap();
    let secret = ApiKeySecret::generate().unwrap();
    let credential = NewCredential::new(&secret, hash_secret(&secret));
    let new = NewKey::new(tenant.id, owner.id, Description::parse("restricted").unwrap(), credential)
        .restricted_to(restrictions);
    store.import_legacy_key(new, now).await.unwrap();
    secret.expose().to_owned()
}

fn fresh_verifier(store: &Store) -> KeyVerifier {
    let config = VerifierConfig { max_failures_per_client: u32::MAX, ..VerifierConfig::default() };
    KeyVerifier::new(store.clone(), Arc::new(SystemClock), &config, Arc::new(Metrics::new().unwrap()), Arc::default())
        .unwrap()
}

/// Times `iters` cold verifications of `keys` (a fresh verifier whenever the
/// keys run out, so none is ever cached).
async fn cold(store: &Store, keys: &[String], iters: u64, expect: fn(&VerifyOutcome) -> bool) -> Duration {
    let mut total = Duration::ZERO;
    let mut verifier = fresh_verifier(store);
    for i in 0..iters as usize {
        if i > 0 && i % keys.len() == 0 {
            verifier = fresh_verifier(store);
        }
        let key = &keys[i % keys.len()];
        let started = Instant::now();
        let outcome = verifier.verify(black_box(key), None, &RequestContext::default()).await.unwrap();
        total += started.elapsed();
        assert!(expect(&outcome), "{outcome:?}");
    }
    total
}

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let _in_runtime = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
    let (store, current) = rt.block_on(async {
        let store = Store::connect(&url, &StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let current = seed(&store, CURRENT_KEYS, false).await;
        (store, current)
    });
    let valid = |o: &VerifyOutcome| matches!(o, VerifyOutcome::Valid(..));
    let invalid = |o: &VerifyOutcome| *o == VerifyOutcome::Invalid;

    let verifier = fresh_verifier(&store);
    let secret = current[0].clone();
    assert!(valid(&rt.block_on(verifier.verify(&secret, None, &RequestContext::default())).unwrap()));
    let client = Some("127.0.0.1".parse().unwrap());
    c.bench_function("verify cached key", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(valid(&verifier.verify(black_box(&secret), client, &RequestContext::default()).await.unwrap()))
        })
    });
    // The same with an expiry: each hit also reads the clock and compares.
    let expiring = rt.block_on(seed_expiring(&store, 1, false, Some(SystemClock.now() + chrono::Duration::days(30))));
    let expiring = expiring[0].clone();
    assert!(valid(&rt.block_on(verifier.verify(&expiring, None, &RequestContext::default())).unwrap()));
    c.bench_function("verify cached key with an expiry", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(valid(&verifier.verify(black_box(&expiring), client, &RequestContext::default()).await.unwrap()))
        })
    });
    // A restricted key decided against a request context: cloud, address
    // (the last of 50 networks) and permissions, on every hit.
    let restricted = rt.block_on(seed_restricted(&store));
    let context = RequestContext::needing(
        Some(latchkey_domain::Cloud::Customer),
        ["users:read", "reports:read"],
        Some("10.49.7.7".parse().unwrap()),
    );
    assert!(valid(&rt.block_on(verifier.verify(&restricted, None, &context)).unwrap()));
    c.bench_function("verify cached key with restrictions", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(valid(&verifier.verify(black_box(&restricted), client, &context).await.unwrap()))
        })
    });
    let malformed = format!("{}x", &secret[..54]);
    c.bench_function("verify malformed key", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(
                verifier.verify(black_box(&malformed), client, &RequestContext::default()).await.unwrap(),
                VerifyOutcome::Malformed
            )
        })
    });

    let mut group = c.benchmark_group("verify cold key");
    group.bench_function("current scheme (sha256)", |b| {
        b.to_async(&rt).iter_custom(|iters| cold(&store, &current, iters, valid))
    });
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    // Fresh legacy keys for every batch, one per verification: each key is
    // upgraded on its first verification, which is the point, but it must not
    // make a later verification fast.
    group.bench_function("legacy scheme (argon2id m=19456,t=2,p=1), upgraded on the way", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = store.clone();
            async move {
                let keys = seed(&store, iters as usize, true).await;
                cold(&store, &keys, iters, valid).await
            }
        })
    });
    group.finish();

    let unknown: Vec<String> =
        (0..CURRENT_KEYS).map(|_| ApiKeySecret::generate().unwrap().expose().to_owned()).collect();
    let wrong: Vec<String> = current
        .iter()
        .map(|k| with_checksum(&format!("{}{}", &k[..15], &k[15..49].chars().rev().collect::<String>())))
        .collect();
    let mut group = c.benchmark_group("verify refused cold");
    group.bench_function("unknown lookup id", |b| {
        b.to_async(&rt).iter_custom(|iters| cold(&store, &unknown, iters, invalid))
    });
    group.bench_function("wrong secret, known lookup id", |b| {
        b.to_async(&rt).iter_custom(|iters| cold(&store, &wrong, iters, invalid))
    });
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
