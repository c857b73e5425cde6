//! The store on both backends: migrations from empty, forward-only last use,
//! uniqueness rules.

use chrono::{Duration, Utc};
use latchkey_domain::hashing::hash_secret;
use latchkey_domain::{ApiKeySecret, Description, Role};
use latchkey_store::{KeyQuery, NewCredential, NewKey, NewUser, Store, StoreError};
use latchkey_tests::{Backend, TestDb};

on_both_backends!(
    migrations_apply_from_empty_and_are_idempotent,
    last_used_only_moves_forward,
    emails_are_unique_per_tenant_and_users_need_a_tenant,
    lookup_ids_are_unique,
);

async fn migrated(db: &TestDb) -> Store {
    let store = db.store().await;
    store.migrate().await.unwrap();
    store
}

fn credential() -> NewCredential {
    let s = ApiKeySecret::generate().unwrap();
    NewCredential::new(&s, hash_secret(&s))
}

async fn migrations_apply_from_empty_and_are_idempotent(db: TestDb) {
    let store = db.store().await;
    assert!(!store.migrations_current().await.unwrap(), "an empty database has pending migrations");
    store.migrate().await.unwrap();
    assert!(store.migrations_current().await.unwrap());
    store.migrate().await.unwrap();
    assert!(store.migrations_current().await.unwrap());
    let expected =
        if db.backend == Backend::Sqlite { latchkey_store::Backend::Sqlite } else { latchkey_store::Backend::Postgres };
    assert_eq!(store.backend(), expected);
    // The schema is usable end to end.
    let tenant = store.create_tenant("T", Utc::now()).await.unwrap();
    let query = KeyQuery {
        first: 10,
        after: None,
        order: Default::default(),
        ascending: false,
        statuses: vec![],
        now: Utc::now(),
        owner: None,
        search: None,
    };
    let page = store.list_keys(tenant.id, &query).await.unwrap();
    assert_eq!(page.total_count, 0);
}

async fn last_used_only_moves_forward(db: TestDb) {
    let store = migrated(&db).await;
    let now = Utc::now();
    let tenant = store.create_tenant("T", now).await.unwrap();
    let owner = store
        .create_user(
            NewUser {
                tenant_id: tenant.id,
                email: "o@t.example".into(),
                name: "O".into(),
                role: Role::IntegrationUser,
            },
            now,
        )
        .await
        .unwrap();
    let key = store
        .import_legacy_key(NewKey::new(tenant.id, owner.id, Description::parse("k").unwrap(), credential()), now)
        .await
        .unwrap();
    let later = now + Duration::minutes(5);
    store.record_key_use(&[(key.id, later)]).await.unwrap();
    store.record_key_use(&[(key.id, now + Duration::minutes(1))]).await.unwrap();
    let stored = store.key(tenant.id, key.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(latchkey_store::storable(later)), "an older use never moves it back");
    store.record_key_use(&[(key.id, later + Duration::milliseconds(1))]).await.unwrap();
    let stored = store.key(tenant.id, key.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(latchkey_store::storable(later + Duration::milliseconds(1))));
}

async fn emails_are_unique_per_tenant_and_users_need_a_tenant(db: TestDb) {
    let store = migrated(&db).await;
    let now = Utc::now();
    let a = store.create_tenant("A", now).await.unwrap();
    let b = store.create_tenant("B", now).await.unwrap();
    let user = |tenant, email: &str| NewUser {
        tenant_id: tenant,
        email: email.into(),
        name: "N".into(),
        role: Role::InternalAdmin,
    };
    store.create_user(user(a.id, "x@example.com"), now).await.unwrap();
    assert!(matches!(store.create_user(user(a.id, " X@Example.com "), now).await, Err(StoreError::Conflict(_))));
    store.create_user(user(b.id, "x@example.com"), now).await.unwrap();
    let missing = latchkey_domain::TenantId(uuid::Uuid::now_v7());
    assert!(matches!(
        store.create_user(user(missing, "y@example.com"), now).await,
        Err(StoreError::MissingReference(_))
    ));
}

async fn lookup_ids_are_unique(db: TestDb) {
    let store = migrated(&db).await;
    let now = Utc::now();
    let tenant = store.create_tenant("T", now).await.unwrap();
    let owner = store
        .create_user(
            NewUser {
                tenant_id: tenant.id,
                email: "o@t.example".into(),
                name: "O".into(),
                role: Role::IntegrationUser,
            },
            now,
        )
        .await
        .unwrap();
    let cred = credential();
    let new = |c: NewCredential| NewKey::new(tenant.id, owner.id, Description::parse("k").unwrap(), c);
    store.import_legacy_key(new(cred.clone()), now).await.unwrap();
    let again = store.import_legacy_key(new(cred), now + Duration::seconds(1)).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}
