//! Use cases of the application layer on SQLite, without HTTP: permission
//! checks, refusals that change nothing, revocation, verification and its
//! limits, the upgrade of legacy hashes. Time comes from a manual clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures_util::future::join_all;
use latchkey_app::RequestContext;
use latchkey_app::{
    App, AppError, Authentication, DeleteKey, EditDescription, GenerateKey, KeyTableQuery, Principal, RotateKey,
    VerifierConfig, VerifyOutcome,
};
use latchkey_domain::admin_token::AdminTokenKey;
use latchkey_domain::clock::ManualClock;
use latchkey_domain::error::ViolationCode;
use latchkey_domain::hashing::{HashScheme, legacy_argon2id_hash};
use latchkey_domain::secret::with_checksum;
use latchkey_domain::{ApiKeySecret, Clock, Cloud, Description, Role, Tenant, User};
use latchkey_store::{NewCredential, NewKey, NewUser, Store, StoreOptions};

struct World {
    app: App,
    store: Store,
    clock: Arc<ManualClock>,
    tenant: Tenant,
    admin: User,
    bot: User,
    academy: User,
    _dir: tempfile::TempDir,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap()
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display());
    let store = Store::connect(&url, &StoreOptions::default()).await.unwrap();
    store.migrate().await.unwrap();
    let clock = Arc::new(ManualClock::new(start()));
    let tenant = store.create_tenant("Acme", start()).await.unwrap();
    let user = |email: &str, role| NewUser { tenant_id: tenant.id, email: email.into(), name: email.into(), role };
    let admin = store.create_user(user("admin@acme.example", Role::InternalAdmin), start()).await.unwrap();
    let bot = store.create_user(user("bot@acme.example", Role::IntegrationUser), start()).await.unwrap();
    let academy = store.create_user(user("academy@acme.example", Role::AcademyAdmin), start()).await.unwrap();
    let app = App::new(
        store.clone(),
        clock.clone(),
        Some(AdminTokenKey::new(&[7; 32]).unwrap()),
        &VerifierConfig::default(),
        Arc::new(tokio::sync::Notify::new()),
    )
    .unwrap();
    World { app, store, clock, tenant, admin, bot, academy, _dir: dir }
}

impl World {
    fn signed_in(&self, user: &User, cloud: Cloud) -> Authentication {
        Authentication::Authenticated(Principal::Admin { user: user.clone(), tenant: self.tenant.clone(), cloud })
    }

    fn admin(&self) -> Authentication {
        self.signed_in(&self.admin, Cloud::Employee)
    }

    async fn generate(&self, description: &str) -> (String, String) {
        let auth = self.admin();
        let command =
            GenerateKey { owner_id: self.bot.id.to_string(), description: description.into(), ..Default::default() };
        let made = self.app.key_admin(&auth).unwrap().generate(command).await.unwrap().unwrap();
        (made.key.key.id.to_string(), made.secret.expose().to_owned())
    }

    async fn key_count(&self) -> u64 {
        let auth = self.admin();
        self.app
            .key_admin(&auth)
            .unwrap()
            .key_table(KeyTableQuery { count_total: true, ..Default::default() })
            .await
            .unwrap()
            .total_count
    }
}

#[tokio::test]
async fn only_internal_admins_in_the_employee_cloud_get_the_key_use_cases() {
    let w = world().await;
    assert!(w.app.key_admin(&w.admin()).is_ok());
    for auth in [
        w.signed_in(&w.admin, Cloud::Customer),
        w.signed_in(&w.academy, Cloud::Employee),
        w.signed_in(&w.bot, Cloud::Employee),
    ] {
        assert!(matches!(w.app.key_admin(&auth), Err(AppError::Forbidden(_))), "{auth:?}");
    }
    assert!(matches!(w.app.key_admin(&Authentication::Anonymous), Err(AppError::Unauthenticated(_))));
}

#[tokio::test]
async fn generate_names_its_actor_and_time_and_refusals_change_nothing() {
    let w = world().await;
    let auth = w.admin();
    let admin = w.app.key_admin(&auth).unwrap();
    let made = admin
        .generate(GenerateKey { owner_id: w.bot.id.to_string(), description: "  Sync  ".into(), ..Default::default() })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(made.key.key.description, "Sync");
    assert_eq!(made.key.owner, w.bot);
    assert_eq!(made.key.created_by.as_ref(), Some(&w.admin));
    assert_eq!(made.key.key.created_at, start());
    assert_eq!(made.key.key.last_four, made.secret.expose()[51..]);

    let refused = admin
        .generate(GenerateKey { owner_id: w.academy.id.to_string(), description: String::new(), ..Default::default() })
        .await
        .unwrap()
        .unwrap_err();
    let codes: Vec<_> = refused.iter().map(|v| (v.field, v.violation.code)).collect();
    assert_eq!(codes, [("description", ViolationCode::Blank), ("ownerId", ViolationCode::InvalidOwner)]);
    assert_eq!(w.key_count().await, 1, "nothing was written");
}

#[tokio::test]
async fn rotate_and_delete_revoke_at_once_and_edits_are_stamped_with_the_clock() {
    let w = world().await;
    let (id, old) = w.generate("Gateway").await;
    assert!(matches!(
        w.app.verify_key(&old, None, &RequestContext::default()).await.unwrap(),
        VerifyOutcome::Valid(..)
    ));
    w.clock.advance(Duration::hours(1));
    let auth = w.admin();
    let admin = w.app.key_admin(&auth).unwrap();
    let rotated = admin.rotate(RotateKey { id: id.clone(), ..Default::default() }).await.unwrap().unwrap();
    assert_eq!(rotated.key.key.last_edited_at, Some(start() + Duration::hours(1)));
    assert_eq!(
        w.app.verify_key(&old, None, &RequestContext::default()).await.unwrap(),
        VerifyOutcome::Invalid,
        "the cached old secret is gone"
    );
    let new = rotated.secret.expose().to_owned();
    assert!(matches!(
        w.app.verify_key(&new, None, &RequestContext::default()).await.unwrap(),
        VerifyOutcome::Valid(..)
    ));

    let edited = admin.edit_description(EditDescription { id: id.clone(), description: "Renamed".into() }).await;
    assert_eq!(edited.unwrap().unwrap().key.description, "Renamed");
    let missing = admin.edit_description(EditDescription { id: "nope".into(), description: "x".into() }).await;
    assert_eq!(missing.unwrap().unwrap_err()[0].violation.code, ViolationCode::NotFound);

    admin.delete(DeleteKey { id: id.clone() }).await.unwrap().unwrap();
    assert_eq!(w.app.verify_key(&new, None, &RequestContext::default()).await.unwrap(), VerifyOutcome::Invalid);
    assert_eq!(admin.delete(DeleteKey { id }).await.unwrap().unwrap_err()[0].violation.code, ViolationCode::NotFound);
}

#[tokio::test]
async fn a_correct_key_is_never_refused_for_anyone_elses_failures() {
    let w = world().await;
    let (_, secret) = w.generate("Target").await;
    let (_, other) = w.generate("Neighbour").await;
    let gateway: IpAddr = "10.0.0.1".parse().unwrap();
    // A leaked prefix: wrong secrets with the key's lookup id, from the shared gateway address.
    for n in 0..20 {
        let wrong = with_checksum(&format!("{}{:0>34}", &secret[..15], n));
        let outcome = w.app.verify_key(&wrong, Some(gateway), &RequestContext::default()).await.unwrap();
        let expected = if n < 10 { VerifyOutcome::Invalid } else { VerifyOutcome::RateLimited };
        assert_eq!(outcome, expected, "failure {n}");
    }
    // Random well-formed keys from the same address, past the per-client limit.
    for _ in 0..310 {
        let random = ApiKeySecret::generate().unwrap();
        w.app.verify_key(random.expose(), Some(gateway), &RequestContext::default()).await.unwrap();
    }
    let random = ApiKeySecret::generate().unwrap();
    assert_eq!(
        w.app.verify_key(random.expose(), Some(gateway), &RequestContext::default()).await.unwrap(),
        VerifyOutcome::RateLimited
    );
    // Both correct keys, never verified before (cold), from that very address.
    for key in [&secret, &other] {
        assert!(matches!(
            w.app.verify_key(key, Some(gateway), &RequestContext::default()).await.unwrap(),
            VerifyOutcome::Valid(..)
        ));
    }
}

async fn legacy_key(w: &World) -> (latchkey_domain::ApiKeyId, ApiKeySecret) {
    let secret = ApiKeySecret::generate().unwrap();
    let credential = NewCredential::new(&secret, legacy_argon2id_hash(&secret).unwrap());
    let new = NewKey::new(w.tenant.id, w.bot.id, Description::parse("Old").unwrap(), credential);
    let key = w.store.import_legacy_key(new, start() - Duration::days(400)).await.unwrap();
    (key.id, secret)
}

#[tokio::test]
async fn legacy_hashes_verify_and_are_upgraded_on_first_success() {
    let w = world().await;
    let (id, secret) = legacy_key(&w).await;
    let scheme = || async { HashScheme::of(&w.store.credential_hash(w.tenant.id, id).await.unwrap().unwrap()) };
    assert_eq!(scheme().await, Some(HashScheme::LegacyArgon2id));
    let wrong = with_checksum(&format!("{}{}", &secret.expose()[..15], "Z".repeat(34)));
    assert_eq!(w.app.verify_key(&wrong, None, &RequestContext::default()).await.unwrap(), VerifyOutcome::Invalid);
    assert_eq!(scheme().await, Some(HashScheme::LegacyArgon2id), "a failure upgrades nothing");
    assert!(matches!(
        w.app.verify_key(secret.expose(), None, &RequestContext::default()).await.unwrap(),
        VerifyOutcome::Valid(..)
    ));
    assert_eq!(scheme().await, Some(HashScheme::Sha256));
    // Still the same key, now on the fast path (a fresh verifier: nothing cached).
    let fresh = App::new(
        w.store.clone(),
        w.clock.clone(),
        Some(AdminTokenKey::new(&[7; 32]).unwrap()),
        &VerifierConfig::default(),
        Arc::new(tokio::sync::Notify::new()),
    )
    .unwrap();
    assert!(matches!(
        fresh.verify_key(secret.expose(), None, &RequestContext::default()).await.unwrap(),
        VerifyOutcome::Valid(..)
    ));
}

#[tokio::test]
async fn a_rotation_during_the_upgrade_wins() {
    let w = world().await;
    let (id, secret) = legacy_key(&w).await;
    let verified = w.store.credential_by_lookup_id(&secret.lookup_id()).await.unwrap().unwrap();
    let auth = w.admin();
    let rotated = w
        .app
        .key_admin(&auth)
        .unwrap()
        .rotate(RotateKey { id: id.to_string(), ..Default::default() })
        .await
        .unwrap()
        .unwrap();
    let parsed = latchkey_domain::ParsedKey::parse(secret.expose()).unwrap();
    let upgraded = w
        .store
        .upgrade_credential_hash(&verified, &latchkey_domain::hashing::sha256_stored(parsed.expose()))
        .await
        .unwrap();
    assert!(!upgraded, "the old credential is gone: the upgrade must not resurrect it");
    assert_eq!(
        w.app.verify_key(secret.expose(), None, &RequestContext::default()).await.unwrap(),
        VerifyOutcome::Invalid
    );
    assert!(matches!(
        w.app.verify_key(rotated.secret.expose(), None, &RequestContext::default()).await.unwrap(),
        VerifyOutcome::Valid(..)
    ));
}

#[tokio::test]
async fn concurrent_guesses_at_a_legacy_key_run_no_more_hashes_than_its_budget() {
    let w = world().await;
    let (_, secret) = legacy_key(&w).await;
    let guesses: Vec<String> =
        (0..150).map(|n| with_checksum(&format!("{}{:0>34}", &secret.expose()[..15], n))).collect();
    let anything = RequestContext::default();
    let outcomes: Vec<VerifyOutcome> = join_all(guesses.iter().map(|g| w.app.verify_key(g, None, &anything)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let invalid = outcomes.iter().filter(|o| **o == VerifyOutcome::Invalid).count();
    let limited = outcomes.iter().filter(|o| **o == VerifyOutcome::RateLimited).count();
    assert_eq!(invalid + limited, 150);
    assert!(invalid <= 10, "at most the budget of 10 hashes ran: {invalid}");
}

#[tokio::test]
async fn admin_tokens_expire_by_the_apps_clock() {
    let w = world().await;
    let key = AdminTokenKey::new(&[7; 32]).unwrap();
    let issued = start().timestamp();
    let claims = latchkey_domain::admin_token::AdminClaims {
        sub: w.admin.id,
        tid: w.tenant.id,
        cloud: Cloud::Employee,
        exp: issued + 60,
        iat: issued,
    };
    let header = format!("Bearer {}", key.sign(&claims));
    let auth = w.app.authenticate(Some(&header), None).await.unwrap();
    assert_eq!(w.app.viewer(&auth).unwrap().user, Some(w.admin.clone()));
    w.clock.advance(Duration::minutes(5)); // past the expiry and its clock-skew leeway
    let auth = w.app.authenticate(Some(&header), None).await.unwrap();
    assert!(matches!(auth, Authentication::Refused(ref reason) if reason.contains("expired")), "{auth:?}");
    assert!(matches!(w.app.viewer(&auth), Err(AppError::Unauthenticated(_))));
}

#[tokio::test]
async fn the_key_table_pages_filters_and_shows_who_did_what() {
    let w = world().await;
    for n in 0..5 {
        w.generate(&format!("Export {n}")).await;
        w.clock.advance(Duration::seconds(1));
    }
    let auth = w.admin();
    let admin = w.app.key_admin(&auth).unwrap();
    let first =
        admin.key_table(KeyTableQuery { first: Some(2), count_total: true, ..Default::default() }).await.unwrap();
    assert_eq!((first.items.len(), first.has_next_page, first.total_count), (2, true, 5));
    assert_eq!(first.items[0].key.description, "Export 4", "newest first");
    let after = Some(latchkey_app::KeyCursor { id: first.items[1].key.id, value: None, count: 0 });
    let rest = admin.key_table(KeyTableQuery { first: Some(10), after, ..Default::default() }).await.unwrap();
    assert_eq!(
        rest.items.iter().map(|v| v.key.description.as_str()).collect::<Vec<_>>(),
        ["Export 2", "Export 1", "Export 0"]
    );
    let search = KeyTableQuery { search: Some("EXPORT 3".into()), count_total: true, ..Default::default() };
    assert_eq!(admin.key_table(search).await.unwrap().total_count, 1);
    let nobody = KeyTableQuery { owner_id: Some(w.admin.id.to_string()), count_total: true, ..Default::default() };
    assert_eq!(admin.key_table(nobody).await.unwrap().total_count, 0);
    let garbage = KeyTableQuery { owner_id: Some("not-an-id".into()), count_total: true, ..Default::default() };
    assert_eq!(admin.key_table(garbage).await.unwrap().total_count, 0);
    // Not asked for, nothing is counted.
    assert_eq!(admin.key_table(KeyTableQuery::default()).await.unwrap().total_count, 0);
    for first in [0, 101] {
        let query = KeyTableQuery { first: Some(first), ..Default::default() };
        assert!(matches!(admin.key_table(query).await, Err(AppError::BadUserInput(_))), "{first}");
    }
    let trail = admin.audit_trail(latchkey_app::AuditQuery::default()).await.unwrap();
    assert_eq!(trail.total_count, 5);
    assert!(trail.items.iter().all(|v| v.actor.as_ref() == Some(&w.admin)));
    let owners: Vec<_> = admin.owner_candidates().await.unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(owners, [w.admin.id, w.bot.id], "the admin first; academy admins cannot own keys");
}

#[tokio::test]
async fn overlap_expiry_and_disable_decide_what_verifies() {
    let w = world().await;
    let auth = w.admin();
    let admin = w.app.key_admin(&auth).unwrap();
    let (id, old) = w.generate("Sync").await;
    let verify = |secret: String| {
        let app = w.app.clone();
        async move { app.verify_key(&secret, None, &RequestContext::default()).await.unwrap() }
    };
    assert!(matches!(verify(old.clone()).await, VerifyOutcome::Valid(..)));

    // An overlap of a minute: both work, then only the new one; cached or not.
    let rotation =
        RotateKey { id: id.clone(), overlap_seconds: Some(60), expires_at: None, end_overlap_on_first_use: false };
    let new = admin.rotate(rotation).await.unwrap().unwrap();
    assert_eq!(new.key.previous_secret_until, Some(start() + Duration::seconds(60)));
    let new = new.secret.expose().to_owned();
    assert!(matches!(verify(old.clone()).await, VerifyOutcome::Valid(..)));
    w.clock.advance(Duration::seconds(60));
    assert_eq!(verify(old.clone()).await, VerifyOutcome::Expired);
    assert!(matches!(verify(new.clone()).await, VerifyOutcome::Valid(..)));

    // Out-of-range input is refused on its field and changes nothing.
    for (overlap, expires, field) in [
        (Some(-1), None, "overlapSeconds"),
        (Some(604_801), None, "overlapSeconds"),
        (None, Some(w.clock.now()), "expiresAt"),
        (None, Some(w.clock.now() + Duration::days(367)), "expiresAt"),
    ] {
        let refused = admin
            .rotate(RotateKey {
                id: id.clone(),
                overlap_seconds: overlap,
                expires_at: expires,
                end_overlap_on_first_use: false,
            })
            .await;
        let violations = refused.unwrap().unwrap_err();
        assert_eq!((violations[0].field, violations[0].violation.code), (field, ViolationCode::Invalid));
    }
    assert!(matches!(verify(new.clone()).await, VerifyOutcome::Valid(..)), "not rotated by refused input");

    // Disabled, enabled; expired at its expiry.
    let disable = |disabled| latchkey_app::SetDisabled { id: id.clone(), disabled };
    admin.set_disabled(disable(true)).await.unwrap().unwrap();
    assert_eq!(verify(new.clone()).await, VerifyOutcome::Disabled);
    admin.set_disabled(disable(false)).await.unwrap().unwrap();
    assert!(matches!(verify(new.clone()).await, VerifyOutcome::Valid(..)));
    let expiry = latchkey_app::SetExpiry { id: id.clone(), expires_at: Some(w.clock.now() + Duration::hours(1)) };
    let view = admin.set_expiry(expiry).await.unwrap().unwrap();
    assert_eq!(view.status, latchkey_domain::KeyStatus::Active);
    assert!(matches!(verify(new.clone()).await, VerifyOutcome::Valid(..)), "cached with its deadline");
    w.clock.advance(Duration::hours(1));
    assert_eq!(verify(new.clone()).await, VerifyOutcome::Expired, "the cached entry is not answered past it");

    // The expired notice is queued once, however often the scheduler runs.
    assert_eq!(w.app.queue_expiry_notices(100).await.unwrap(), 1);
    assert_eq!(w.app.queue_expiry_notices(100).await.unwrap(), 0);
    let kinds: Vec<_> = w
        .store
        .events_of_key(w.tenant.id, id.parse().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.kind.as_str())
        .collect();
    assert_eq!(kinds, ["generated", "rotated", "disabled", "enabled", "expired"]);
}

#[tokio::test]
async fn deactivating_an_owner_suspends_its_cached_keys_and_a_transfer_revives_them() {
    let w = world().await;
    let auth = w.admin();
    let admin = w.app.key_admin(&auth).unwrap();
    let (id, secret) = w.generate("Sync").await;
    let ask = RequestContext::default();
    assert!(matches!(w.app.verify_key(&secret, None, &ask).await.unwrap(), VerifyOutcome::Valid(..)), "cached");

    let command = latchkey_app::SetUserActive { id: w.bot.id.to_string(), active: false };
    assert!(!admin.set_user_active(command).await.unwrap().unwrap().active);
    assert_eq!(w.app.verify_key(&secret, None, &ask).await.unwrap(), VerifyOutcome::OwnerInactive);
    let table = admin.key_table(KeyTableQuery::default()).await.unwrap();
    assert_eq!(table.items[0].status, latchkey_domain::KeyStatus::Suspended);

    // Not to an inactive owner, nor one who may not own keys; then to the admin.
    for owner in [&w.bot, &w.academy] {
        let command = latchkey_app::TransferKey { id: id.clone(), owner_id: owner.id.to_string() };
        let refused = admin.transfer(command).await.unwrap().unwrap_err();
        assert_eq!(refused[0].violation.code, ViolationCode::InvalidOwner);
    }
    let command = latchkey_app::TransferKey { id: id.clone(), owner_id: w.admin.id.to_string() };
    let moved = admin.transfer(command).await.unwrap().unwrap();
    assert_eq!((moved.owner.id, moved.status), (w.admin.id, latchkey_domain::KeyStatus::Active));
    let VerifyOutcome::Valid(key, _) = w.app.verify_key(&secret, None, &ask).await.unwrap() else { panic!("revived") };
    assert_eq!(key.owner_id, w.admin.id);
}

/// Usage in process: every hit of a cached key counts (one tally, handed over
/// at each new second and at the flush), a cache eviction loses nothing, the
/// hour and the day agree, and an integration reads only its own key.
#[tokio::test]
async fn every_verification_is_counted_once_through_cache_evictions_and_flushes() {
    use latchkey_app::usage::UsageQuery;
    use latchkey_domain::usage::Granularity;
    let w = world().await;
    let (id, secret) = w.generate("Counted").await;
    let id: latchkey_domain::ApiKeyId = id.parse().unwrap();
    let request = RequestContext::default();
    // 250 hits over three seconds, with the cache dropped in the middle.
    for n in 0..250 {
        if n == 100 || n == 200 {
            w.clock.advance(Duration::seconds(1));
        }
        if n == 150 {
            w.app.verifier().apply(latchkey_store::RevocationSignal::Resync);
        }
        assert!(matches!(w.app.verify_key(&secret, None, &request).await.unwrap(), VerifyOutcome::Valid(..)));
    }
    w.app.verifier().flush_usage().await.unwrap();
    let hour = Granularity::Hour.bucket_of(w.clock.now());
    let query = |granularity: Granularity, width: Duration| UsageQuery {
        from: granularity.bucket_of(hour),
        to: granularity.bucket_of(hour) + width,
        granularity,
    };
    let by_hour = w.app.key_usage(&w.admin(), id, query(Granularity::Hour, Duration::hours(1))).await.unwrap();
    assert_eq!((by_hour.valid, by_hour.refused), (250, 0));
    let by_day = w.app.key_usage(&w.admin(), id, query(Granularity::Day, Duration::days(1))).await.unwrap();
    assert_eq!(by_day.valid, 250);
    assert!(w.app.verifier().flush_usage().await.unwrap() == 0, "nothing is written twice");

    // The key itself may read its own usage, not another key's.
    let Authentication::Authenticated(me) = w.app.authenticate(Some(&format!("Bearer {secret}")), None).await.unwrap()
    else {
        panic!("the key authenticates")
    };
    let me = Authentication::Authenticated(me);
    let own = w.app.key_usage(&me, id, query(Granularity::Hour, Duration::hours(1))).await.unwrap();
    assert_eq!(own.valid, 250);
    let (other, _) = w.generate("Other").await;
    let refused = w.app.key_usage(&me, other.parse().unwrap(), query(Granularity::Hour, Duration::hours(1))).await;
    assert!(matches!(refused, Err(AppError::Forbidden(_))), "{refused:?}");
}

#[tokio::test]
async fn one_process_admits_exactly_its_limit_and_its_credits_under_concurrency() {
    use latchkey_app::keys::{KeyCreditsInput, RateLimitInput};
    use latchkey_domain::limits::Cost;
    let w = world().await;
    let auth = w.admin();
    let command = GenerateKey {
        owner_id: w.bot.id.to_string(),
        description: "Limited".into(),
        rate_limits: vec![RateLimitInput { name: "minute".into(), limit: 1_000, period_seconds: 60 }],
        credits: Some(KeyCreditsInput { remaining: 700, refill: None }),
        ..Default::default()
    };
    let made = w.app.key_admin(&auth).unwrap().generate(command).await.unwrap().unwrap();
    let secret = made.secret.expose().to_owned();
    let verify = |cost: i64| {
        let (app, secret) = (w.app.clone(), secret.clone());
        async move {
            let request = RequestContext { cost: Cost::new(cost).unwrap(), ..RequestContext::default() };
            app.verify_key(&secret, None, &request).await.unwrap()
        }
    };
    // 1,200 requests at once: the credits (700) bind first, exactly. (A
    // refusal may name either: the window's last units can be held by
    // requests the credits refuse a moment later.)
    let outcomes = join_all((0..1_200).map(|_| verify(1))).await;
    let admitted = outcomes.iter().filter(|o| matches!(o, VerifyOutcome::Valid(..))).count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, VerifyOutcome::UsageExceeded { .. } | VerifyOutcome::RateLimitExceeded(_)))
        .count();
    assert_eq!((admitted, refused), (700, 500));
    // The window saw only the admitted ones: 300 are left of it.
    let auth = w.admin();
    let admin = w.app.key_admin(&auth).unwrap();
    let input = latchkey_app::limits::AddCredits { id: made.key.key.id.to_string(), amount: 1_000 };
    admin.add_credits(input).await.unwrap().unwrap();
    let outcomes = join_all((0..400).map(|_| verify(1))).await;
    let admitted = outcomes.iter().filter(|o| matches!(o, VerifyOutcome::Valid(..))).count();
    assert_eq!(admitted, 300, "the rate limit binds now");
    let refusal = outcomes.iter().find(|o| !matches!(o, VerifyOutcome::Valid(..))).unwrap();
    assert!(matches!(refusal, VerifyOutcome::RateLimitExceeded(r) if r.remaining == 0 && &*r.name == "minute"));
    // The next window: the rest of the credits (700) is spent exactly, at cost 7.
    w.clock.advance(Duration::minutes(1));
    let outcomes = join_all((0..150).map(|_| verify(7))).await;
    assert_eq!(outcomes.iter().filter(|o| matches!(o, VerifyOutcome::Valid(..))).count(), 100);
    let VerifyOutcome::UsageExceeded { remaining, .. } = verify(1).await else { panic!("out of credits") };
    assert_eq!(remaining, 0);
}
