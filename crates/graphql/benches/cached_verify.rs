//! Micro-benchmark of `KeyVerifier::verify` on a cached key (the hot path in
//! front of every integration request): checksum, HMAC, map lookup, use
//! recording. Also the malformed-key path. Target: under 2 µs.
//!
//! Run: `cargo bench -p latchkey-graphql --bench cached_verify`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_domain::hashing::hash_secret;
use latchkey_domain::{ApiKeySecret, Description, Role};
use latchkey_graphql::SystemClock;
use latchkey_graphql::verifier::{KeyVerifier, VerifiedKeyCache, VerifierConfig, VerifyOutcome};
use latchkey_store::{NewCredential, NewKey, NewUser, Store, StoreOptions};

fn cached_verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("latchkey-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let (verifier, secret) = rt.block_on(async {
        let store = Store::connect(&url, &StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let now = Utc::now();
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
        let secret = ApiKeySecret::generate().unwrap();
        let credential = NewCredential {
            lookup_id: secret.lookup_id(),
            hash: hash_secret(&secret).unwrap(),
            last_four: secret.last_four(),
        };
        let new = NewKey {
            tenant_id: tenant.id,
            owner_id: owner.id,
            description: Description::parse("bench").unwrap(),
            credential,
        };
        store.import_legacy_key(new, now).await.unwrap();
        let config = VerifierConfig::default();
        let cache = Arc::new(VerifiedKeyCache::new(config.cache_capacity, Duration::from_secs(3600)).unwrap());
        let verifier = KeyVerifier::new(store, Arc::new(SystemClock), cache, &config);
        let cold = verifier.verify(secret.expose(), None).await.unwrap();
        assert!(matches!(cold, VerifyOutcome::Valid(_)));
        (verifier, secret.expose().to_owned())
    });
    let client = Some("127.0.0.1".parse().unwrap());
    c.bench_function("verify cached key", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = verifier.verify(black_box(&secret), client).await.unwrap();
            assert!(matches!(outcome, VerifyOutcome::Valid(_)));
        })
    });
    let malformed = format!("{}x", &secret[..54]);
    c.bench_function("verify malformed key", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = verifier.verify(black_box(&malformed), client).await.unwrap();
            assert_eq!(outcome, VerifyOutcome::Malformed);
        })
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, cached_verify);
criterion_main!(benches);
