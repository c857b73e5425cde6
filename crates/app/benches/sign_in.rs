//! What an admin's sign-in costs in `App::authenticate`, on SQLite, for each
//! kind of token in the same run: a shared-secret HS256 token, and access
//! tokens of the identity provider signed RS256, PS256 and ES256 (key set
//! cached), plus a token naming an unknown `kid` within the refresh interval
//! (what each token of a flood of made-up kids costs: no fetch); and, apart,
//! the signature and claim checks alone, to tell crypto from lookups.
//!
//! Run: `cargo bench -p latchkey-app --bench sign_in`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_app::oidc::{KeySetFuture, KeySetSource, OidcSettings};
use latchkey_app::{App, Authentication, VerifierConfig};
use latchkey_domain::admin_token::{AdminClaims, AdminTokenKey};
use latchkey_domain::oidc::{KeySet, OidcRules, SignedToken};
use latchkey_domain::{Clock, Cloud, Role, SystemClock};
use latchkey_store::{NewUser, Store, StoreOptions};
use p256::ecdsa::signature::Signer;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rsa::traits::PublicKeyParts;
use serde_json::json;

/// The provider's key set, always the same.
#[derive(Debug)]
struct Published(Vec<u8>);

impl KeySetSource for Published {
    fn fetch(&self) -> KeySetFuture<'_> {
        Box::pin(async move { KeySet::parse(&self.0).map_err(|e| e.to_string()) })
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    let ec_key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let (app, hs256, admin_email, jwks, rules) = runtime.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
        let store = Store::connect(&url, &StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let now = SystemClock.now();
        let tenant = store.create_tenant("Acme", now).await.unwrap();
        store.set_tenant_external_id(tenant.id, Some("acme-directory")).await.unwrap();
        let admin = NewUser {
            tenant_id: tenant.id,
            email: "ada@acme.example".into(),
            name: "Ada".into(),
            role: Role::InternalAdmin,
        };
        let admin = store.create_user(admin, now).await.unwrap();
        let public = rsa_key.to_public_key();
        let point = ec_key.verifying_key().to_encoded_point(false);
        let jwks = json!({ "keys": [
            { "kty": "RSA", "kid": "r1", "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be()) },
            { "kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()) },
        ]});
        let rules = OidcRules {
            issuer: "https://idp.example".into(),
            audience: "latchkey".into(),
            tenant_claim: "tid".into(),
            subject_claim: "sub".into(),
            max_lifetime_secs: 24 * 3600,
        };
        let token_key = AdminTokenKey::new(&[7; 32]).unwrap();
        let hs256 = token_key.sign(&AdminClaims {
            sub: admin.id,
            tid: tenant.id,
            cloud: Cloud::Employee,
            exp: now.timestamp() + 3600,
            iat: now.timestamp(),
        });
        let app = App::new(
            store,
            Arc::new(SystemClock),
            Some(token_key),
            &VerifierConfig::default(),
            Arc::new(tokio::sync::Notify::new()),
        )
        .unwrap()
        .with_oidc(OidcSettings::new(rules.clone()), Arc::new(Published(jwks.to_string().into_bytes())));
        (app, hs256, admin.email, jwks, rules)
    });
    let now = SystemClock.now().timestamp();
    // Found by verified email: the longest mapping (no externalId matches first).
    let claims = json!({ "iss": "https://idp.example", "aud": "latchkey", "sub": "00u-ada", "tid": "acme-directory",
        "email": admin_email, "email_verified": true, "iat": now, "exp": now + 3600 });
    let sign = |alg: &str, kid: &str| {
        let input = format!(
            "{}.{}",
            b64(json!({ "alg": alg, "kid": kid }).to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature: Vec<u8> = match alg {
            "RS256" => rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa_key.clone()).sign(input.as_bytes()).to_vec(),
            "PS256" => rsa::pss::SigningKey::<sha2::Sha256>::new(rsa_key.clone())
                .sign_with_rng(&mut rsa::rand_core::OsRng, input.as_bytes())
                .to_vec(),
            _ => {
                let s: p256::ecdsa::Signature = ec_key.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
        };
        format!("Bearer {input}.{}", b64(&signature))
    };
    let tokens: Vec<(&str, String)> = vec![
        ("shared secret HS256", format!("Bearer {hs256}")),
        ("OIDC RS256", sign("RS256", "r1")),
        ("OIDC PS256", sign("PS256", "r1")),
        ("OIDC ES256", sign("ES256", "e1")),
    ];
    let mut group = c.benchmark_group("admin sign-in");
    for (name, header) in &tokens {
        // Warm: the first OIDC token fetches the key set.
        let first = runtime.block_on(app.authenticate(Some(header), None)).unwrap();
        assert!(matches!(first, Authentication::Authenticated(_)), "{name}: {first:?}");
        group.bench_function(*name, |b| {
            b.to_async(&runtime).iter(|| async { black_box(app.authenticate(Some(header), None).await.unwrap()) })
        });
    }
    let unknown = sign("ES256", "made-up");
    let refused = runtime.block_on(app.authenticate(Some(&unknown), None)).unwrap();
    assert!(matches!(&refused, Authentication::Refused(r) if r.contains("does not publish")), "{refused:?}");
    group.bench_function("OIDC unknown kid (refused, no fetch)", |b| {
        b.to_async(&runtime).iter(|| async { black_box(app.authenticate(Some(&unknown), None).await.unwrap()) })
    });
    group.finish();

    let keys = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
    let mut group = c.benchmark_group("OIDC token check alone");
    for (name, header) in &tokens[1..] {
        let token = header.strip_prefix("Bearer ").unwrap();
        group.bench_function(*name, |b| {
            b.iter(|| black_box(SignedToken::parse(token).unwrap().verify(&keys, &rules, SystemClock.now()).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
