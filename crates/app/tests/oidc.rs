//! OIDC sign-in in the application layer, on SQLite with a manual clock and a
//! scripted key-set source standing for the provider: when the key set is
//! fetched (unknown `kid`, age), how often (30 s at most), what a failed
//! fetch keeps, and a deployment without a shared secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, TimeZone, Utc};
use latchkey_app::oidc::{KeySetFuture, KeySetSource, OidcSettings};
use latchkey_app::{App, Authentication, Principal, VerifierConfig};
use latchkey_domain::clock::ManualClock;
use latchkey_domain::oidc::{KeySet, OidcRules};
use latchkey_domain::{Clock, Role};
use latchkey_store::{NewUser, Store, StoreOptions};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer;
use serde_json::json;

const ISSUER: &str = "https://idp.example";

/// The provider's published key set as the test scripts it; counts fetches.
#[derive(Debug)]
struct ScriptedProvider {
    published: Mutex<Result<Vec<u8>, String>>,
    fetches: AtomicUsize,
}

impl ScriptedProvider {
    fn publish(&self, kids: &[u8]) {
        let keys: Vec<_> = kids.iter().map(|&n| public_jwk(n)).collect();
        *self.published.lock().unwrap() = Ok(json!({ "keys": keys }).to_string().into_bytes());
    }

    fn go_down(&self) {
        *self.published.lock().unwrap() = Err("connection refused".into());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl KeySetSource for ScriptedProvider {
    fn fetch(&self) -> KeySetFuture<'_> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let published = self.published.lock().unwrap().clone();
        Box::pin(async move { KeySet::parse(&published?).map_err(|e| e.to_string()) })
    }
}

/// The signing key named `k{n}`.
fn signing_key(n: u8) -> SigningKey {
    SigningKey::from_slice(&[n; 32]).unwrap()
}

fn public_jwk(n: u8) -> serde_json::Value {
    let point = signing_key(n).verifying_key().to_encoded_point(false);
    json!({ "kty": "EC", "crv": "P-256", "kid": format!("k{n}"),
        "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()), "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()) })
}

/// An access token for Ada signed with key `k{n}`, issued at `now`.
fn token(n: u8, now: DateTime<Utc>) -> String {
    let header = json!({ "alg": "ES256", "kid": format!("k{n}") });
    let claims = json!({ "iss": ISSUER, "aud": "latchkey", "sub": "00u-ada", "tid": "acme-directory",
        "iat": now.timestamp(), "exp": now.timestamp() + 3600 });
    let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", encode(&header), encode(&claims));
    let signature: p256::ecdsa::Signature = signing_key(n).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

struct World {
    app: App,
    provider: Arc<ScriptedProvider>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl World {
    async fn sign_in(&self, key: u8) -> Result<String, String> {
        let header = format!("Bearer {}", token(key, self.clock.now()));
        match self.app.authenticate(Some(&header), None).await.unwrap() {
            Authentication::Authenticated(Principal::Admin { user, .. }) => Ok(user.email),
            Authentication::Refused(reason) => Err(reason),
            other => panic!("{other:?}"),
        }
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(Duration::seconds(secs));
    }
}

/// Ada, an internal admin of Acme (`acme-directory` at the provider, her
/// `sub` her SCIM externalId); Latchkey with OIDC only; the provider publishing `k1`.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display());
    let store = Store::connect(&url, &StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let tenant = store.create_tenant("Acme", start).await.unwrap();
    store.set_tenant_external_id(tenant.id, Some("acme-directory")).await.unwrap();
    let ada = NewUser {
        tenant_id: tenant.id,
        email: "ada@acme.example".into(),
        name: "Ada".into(),
        role: Role::InternalAdmin,
    };
    let ada = store.create_user(ada, start).await.unwrap();
    // Linked to provisioning, as an admin does with setUserScimManaged.
    assert!(store.set_user_scim_managed(tenant.id, ada.id, true).await.unwrap());
    assert!(store.scim_user(tenant.id, ada.id).await.unwrap().is_some(), "linked to SCIM");
    let write = latchkey_store::ScimUserWrite {
        user_name: ada.email.clone(),
        email: ada.email.clone(),
        name: ada.name.clone(),
        role: ada.role,
        active: true,
        external_id: Some("00u-ada".into()),
        given_name: None,
        family_name: None,
    };
    let tx = store.begin().await.unwrap();
    tx.replace_scim_user(tenant.id, ada.id, write, start).await.unwrap();
    tx.commit().await.unwrap();
    let provider =
        Arc::new(ScriptedProvider { published: Mutex::new(Err("not yet".into())), fetches: AtomicUsize::new(0) });
    provider.publish(&[1]);
    let rules = OidcRules {
        issuer: ISSUER.into(),
        audience: "latchkey".into(),
        tenant_claim: "tid".into(),
        subject_claim: "sub".into(),
        max_lifetime_secs: 24 * 3600,
    };
    let app = App::new(store, clock.clone(), None, &VerifierConfig::default(), Arc::new(tokio::sync::Notify::new()))
        .unwrap()
        .with_oidc(OidcSettings::new(rules), provider.clone());
    World { app, provider, clock, _dir: dir }
}

#[tokio::test]
async fn the_key_set_is_fetched_when_needed_and_never_more_than_twice_a_minute() {
    let w = world().await;
    assert_eq!(w.provider.fetches(), 0, "nothing is fetched before a token needs it");
    assert_eq!(w.sign_in(1).await.unwrap(), "ada@acme.example");
    assert_eq!(w.sign_in(1).await.unwrap(), "ada@acme.example");
    assert_eq!(w.provider.fetches(), 1, "the set is cached");

    // The provider rotates to k2. Within 30 s of the last fetch, k2 is not looked for.
    w.provider.publish(&[2]);
    w.advance(10);
    assert!(w.sign_in(2).await.unwrap_err().contains("does not publish"));
    assert_eq!(w.provider.fetches(), 1);
    w.advance(21);
    assert_eq!(w.sign_in(2).await.unwrap(), "ada@acme.example");
    assert_eq!(w.provider.fetches(), 2);
    // k1 is gone from the set now, and the last fetch is recent.
    assert!(w.sign_in(1).await.unwrap_err().contains("does not publish"));
    assert_eq!(w.provider.fetches(), 2);

    // A hundred made-up kids within the interval: no fetch at all.
    for n in 100..200 {
        assert!(w.sign_in(n).await.is_err());
    }
    assert_eq!(w.provider.fetches(), 2);
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_good_keys() {
    let w = world().await;
    assert!(w.sign_in(1).await.is_ok());
    w.provider.go_down();
    w.advance(31);
    assert!(w.sign_in(3).await.unwrap_err().contains("does not publish"), "a new kid is refused");
    assert_eq!(w.provider.fetches(), 2);
    assert!(w.sign_in(1).await.is_ok(), "the last good set still works");
    // An hour on, the set is refreshed on its next use; failing again keeps it.
    w.advance(3600);
    assert!(w.sign_in(1).await.is_ok());
    assert_eq!(w.provider.fetches(), 3);
    // Back up with k1 and k3: the next use after the interval learns k3.
    w.provider.publish(&[1, 3]);
    w.advance(31);
    assert!(w.sign_in(3).await.is_ok());
    assert_eq!(w.provider.fetches(), 4);
}

#[tokio::test]
async fn without_a_shared_secret_only_the_providers_tokens_sign_in() {
    let w = world().await;
    let hs256 = latchkey_domain::admin_token::AdminTokenKey::new(&[7; 32]).unwrap().sign(
        &latchkey_domain::admin_token::AdminClaims {
            sub: latchkey_domain::UserId::new_at(w.clock.now()),
            tid: latchkey_domain::TenantId::new_at(w.clock.now()),
            cloud: latchkey_domain::Cloud::Employee,
            exp: w.clock.now().timestamp() + 60,
            iat: w.clock.now().timestamp(),
        },
    );
    let refused = w.app.authenticate(Some(&format!("Bearer {hs256}")), None).await.unwrap();
    assert!(
        matches!(&refused, Authentication::Refused(r) if r.contains("only tokens of its identity provider")),
        "{refused:?}"
    );
    assert_eq!(w.provider.fetches(), 0, "an HS256 token never reaches the provider's keys");
}
