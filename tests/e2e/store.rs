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
    audit_entries_from_before_m0011_keep_their_details,
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
        unused_since: None,
        breaking: None,
        count_up_to: Some(2),
    };
    let page = store.list_keys(tenant.id, &query).await.unwrap();
    assert_eq!(page.total_count, Some(0));
    // A count stops where it is told to: three keys, counted up to two.
    let owner =
        NewUser { tenant_id: tenant.id, email: "o@t.example".into(), name: "O".into(), role: Role::IntegrationUser };
    let owner = store.create_user(owner, Utc::now()).await.unwrap();
    for _ in 0..3 {
        let key = NewKey::new(tenant.id, owner.id, Description::parse("k").unwrap(), credential());
        store.import_legacy_key(key, Utc::now()).await.unwrap();
    }
    let page = store.list_keys(tenant.id, &query).await.unwrap();
    assert_eq!((page.total_count, page.keys.len()), (Some(2), 3));
    let uncapped = KeyQuery { count_up_to: Some(10), ..query };
    assert_eq!(store.list_keys(tenant.id, &uncapped).await.unwrap().total_count, Some(3));
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
    let used_at = |at| latchkey_store::UsageBatch {
        counts: Vec::new(),
        last_uses: vec![(
            key.id,
            latchkey_domain::usage::LastUse { at, cloud: None, client_address: None, user_agent: None },
        )],
    };
    store.record_usage(&used_at(later)).await.unwrap();
    store.record_usage(&used_at(now + Duration::minutes(1))).await.unwrap();
    let stored = store.key(tenant.id, key.id).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(latchkey_store::storable(later)), "an older use never moves it back");
    store.record_usage(&used_at(later + Duration::milliseconds(1))).await.unwrap();
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

/// Entries written before audit changes were one enum (m0011) keep what
/// they recorded: the per-kind columns are moved into `details`, text with
/// quotes, backslashes and line breaks intact.
async fn audit_entries_from_before_m0011_keep_their_details(db: TestDb) {
    use latchkey_domain::AuditChange;
    use latchkey_migrations::{Migrator, MigratorTrait};
    use sea_orm::sea_query::{Alias, Query};
    use sea_orm::{ConnectionTrait, Database};

    let conn = Database::connect(&db.url).await.unwrap();
    Migrator::up(&conn, Some(10)).await.unwrap();
    let store = db.store().await;
    let tenant = store.create_tenant("T", Utc::now()).await.unwrap();
    let at = |h: u32| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 1, 2, h, 0, 0).unwrap();
    let tricky = "say \"hi\" \\ back\nslash";
    type Row = (&'static str, Vec<(&'static str, sea_orm::Value)>);
    let rows: Vec<Row> = vec![
        ("generated", vec![]),
        ("description_changed", vec![("old_description", "old".into()), ("new_description", tricky.into())]),
        ("rotated", vec![("previous_secret_expires_at", at(5).into())]),
        ("rotated", vec![]),
        ("previous_secret_expired", vec![("previous_secret_expires_at", at(6).into())]),
        (
            "expiry_changed",
            vec![("old_expires_at", Option::<chrono::DateTime<Utc>>::None.into()), ("new_expires_at", at(7).into())],
        ),
        (
            "restrictions_changed",
            vec![("restrictions_before", "Full access".into()), ("restrictions_after", "users:read".into())],
        ),
        (
            "leak_reported",
            vec![
                ("leak_url", "https://github.com/x".into()),
                ("leak_source", "commit".into()),
                ("leak_revoked", true.into()),
            ],
        ),
        ("owner_changed", vec![("owner_before", "Ada".into()), ("owner_after", "Grace".into())]),
        ("settings_changed", vec![("old_description", "false".into()), ("new_description", "true".into())]),
    ];
    for (i, (action, extra)) in rows.iter().enumerate() {
        let mut columns = vec![
            "id",
            "tenant_id",
            "key_id",
            "action",
            "actor_id",
            "actor_name",
            "occurred_at",
            "key_description",
            "key_last_four",
        ];
        let id = latchkey_domain::ids::time_ordered_uuid(at(1) + Duration::seconds(i as i64));
        let mut values: Vec<sea_orm::Value> = vec![
            id.into(),
            tenant.id.0.into(),
            uuid::Uuid::nil().into(),
            (*action).into(),
            uuid::Uuid::nil().into(),
            "Latchkey".into(),
            (at(1) + Duration::seconds(i as i64)).into(),
            "k".into(),
            "abcd".into(),
        ];
        for (column, value) in extra {
            columns.push(column);
            values.push(value.clone());
        }
        let insert = Query::insert()
            .into_table(Alias::new("key_audit"))
            .columns(columns.into_iter().map(Alias::new))
            .values_panic(values.into_iter().map(Into::into))
            .to_owned();
        conn.execute_raw(conn.get_database_backend().build(&insert)).await.unwrap();
    }
    store.migrate().await.unwrap();
    let page = store.list_audit(tenant.id, None, 50, None).await.unwrap();
    let mut changes: Vec<AuditChange> = page.entries.into_iter().map(|e| e.change).collect();
    changes.reverse();
    assert_eq!(
        changes,
        vec![
            AuditChange::Generated,
            AuditChange::DescriptionChanged { old: "old".into(), new: tricky.into() },
            AuditChange::Rotated { previous_secret_until: Some(at(5)) },
            AuditChange::Rotated { previous_secret_until: None },
            AuditChange::PreviousSecretExpired { at: at(6), new_secret_used: false },
            AuditChange::ExpiryChanged { old: None, new: Some(at(7)) },
            AuditChange::RestrictionsChanged { before: "Full access".into(), after: "users:read".into() },
            AuditChange::LeakReported {
                url: Some("https://github.com/x".into()),
                source: Some("commit".into()),
                revoked: true
            },
            AuditChange::OwnerChanged { before: "Ada".into(), after: "Grace".into() },
            AuditChange::SettingChanged { old: "false".into(), new: "true".into() },
        ]
    );
    let _ = conn.close().await;
}
