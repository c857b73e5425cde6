//! API keys: the key table, the key lifecycle, and credential lookup.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use latchkey_domain::policy::{KEY_OWNER_ROLES, role_may_own_keys};
use latchkey_domain::restrictions::{PermissionSet, Restrictions, StoredRestrictions, owner_permissions};
use latchkey_domain::{
    ApiKey, ApiKeyId, ApiKeySecret, AuditAction, AuditEntry, Description, ExpiryNotice, KeyEvent, KeyEventKind,
    KeyStatus, LeakReport, LeakResponse, LookupId, Role, SearchTerm, TenantId, User, UserId,
};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Set, TransactionTrait,
};
use sea_orm::{Condition, Order};

use crate::audit::insert_audit;
use crate::entities::{api_key, imported_credential, leak_report, tenant, user};
use crate::events::insert_event;
use crate::revocations::notify_revocation;
use crate::users::user_in;
use crate::{Store, StoreError, StoreResult, storable};

/// A freshly hashed credential (never the secret itself).
#[derive(Clone, Debug)]
pub struct NewCredential {
    /// The public lookup id embedded in the secret.
    pub lookup_id: LookupId,
    /// Argon2id PHC string.
    pub hash: String,
    /// The secret's last four characters.
    pub last_four: String,
}

impl NewCredential {
    /// The credential of `secret`, stored as `hash`.
    pub fn new(secret: &ApiKeySecret, hash: String) -> Self {
        NewCredential { lookup_id: secret.lookup_id(), hash, last_four: secret.last_four() }
    }
}

/// A key to insert.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its owner (must be a user of the tenant).
    pub owner_id: UserId,
    /// Its validated description.
    pub description: Description,
    /// Its credential.
    pub credential: NewCredential,
    /// When it stops working; none for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it may do, where and from where.
    pub restrictions: Restrictions,
    /// For a key imported in its original format: what it is found by.
    pub import_lookup: Option<String>,
}

impl NewKey {
    /// An unrestricted key of `tenant_id` for `owner_id` that never expires.
    pub fn new(tenant_id: TenantId, owner_id: UserId, description: Description, credential: NewCredential) -> Self {
        NewKey {
            tenant_id,
            owner_id,
            description,
            credential,
            expires_at: None,
            restrictions: Restrictions::default(),
            import_lookup: None,
        }
    }

    /// A key imported in another system's format: found by `lookup`, stored
    /// as `hash`; its Latchkey lookup id is one no `lk_` key can present.
    pub fn imported(
        tenant_id: TenantId,
        owner_id: UserId,
        description: Description,
        lookup: String,
        hash: String,
        last_four: String,
        created_at: DateTime<Utc>,
    ) -> Self {
        // `~` is not base62: no presented `lk_` key has this lookup id.
        let unique = latchkey_domain::ids::time_ordered_uuid(created_at).simple().to_string();
        let unreachable = format!("~{}", &unique[unique.len() - 15..]);
        let credential = NewCredential { lookup_id: LookupId::from_stored(unreachable), hash, last_four };
        NewKey { import_lookup: Some(lookup), ..NewKey::new(tenant_id, owner_id, description, credential) }
    }

    /// The same key, restricted by `restrictions`.
    pub fn restricted_to(mut self, restrictions: Restrictions) -> Self {
        self.restrictions = restrictions;
        self
    }

    /// The same key, expiring at `expires_at` (none for never).
    pub fn expiring_at(mut self, expires_at: Option<DateTime<Utc>>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// The row for this key, created at `created_at` by `created_by` (none
    /// for a key from before key management, which has no last edit either).
    fn into_model(self, created_at: DateTime<Utc>, created_by: Option<UserId>) -> api_key::ActiveModel {
        let created_by = created_by.map(|u| u.0);
        let stored = self.restrictions.to_stored();
        api_key::ActiveModel {
            id: Set(ApiKeyId::new_at(created_at).0),
            tenant_id: Set(self.tenant_id.0),
            owner_id: Set(self.owner_id.0),
            description_folded: Set(self.description.folded()),
            description: Set(self.description.into_string()),
            lookup_id: Set(self.credential.lookup_id.as_str().to_owned()),
            credential_hash: Set(self.credential.hash),
            credential_version: Set(1),
            last_four: Set(self.credential.last_four),
            created_at: Set(created_at),
            created_by: Set(created_by),
            last_edited_at: Set(created_by.map(|_| created_at)),
            last_edited_by: Set(created_by),
            last_used_at: Set(None),
            expires_at: Set(self.expires_at.map(storable)),
            expiry_notice_stage: Set(0),
            disabled_at: Set(None),
            previous_lookup_id: Set(None),
            previous_credential_hash: Set(None),
            previous_last_four: Set(None),
            previous_expires_at: Set(None),
            permissions: Set(stored.permissions),
            clouds: Set(stored.clouds),
            allowed_ips: Set(stored.allowed_ips),
            compromised_at: Set(None),
            import_lookup: Set(self.import_lookup),
            previous_import_lookup: Set(None),
        }
    }
}

/// What a verification needs: found by lookup id, across tenants. A key has
/// one such credential, and a second while a rotation's overlap keeps its
/// previous secret.
#[derive(Clone, Debug)]
pub struct StoredCredential {
    /// The public lookup id it was found by.
    pub lookup_id: LookupId,
    /// Whether this is the key's previous secret (kept by a rotation's overlap).
    pub previous: bool,
    /// Until when this secret works: the key's expiry, or for a previous
    /// secret the earlier of that and the overlap's end. None for no limit.
    pub works_until: Option<DateTime<Utc>>,
    /// Whether the key is disabled.
    pub disabled: bool,
    /// Whether the key was reported leaked and revoked.
    pub compromised: bool,
    /// Whether its owner was deactivated (or may no longer own keys): the key
    /// is suspended.
    pub owner_inactive: bool,
    /// What the key may do, where and from where.
    pub restrictions: Arc<Restrictions>,
    /// What its owner may do (a key never does more).
    pub owner_may: PermissionSet,
    /// The key.
    pub key_id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its owner.
    pub owner_id: UserId,
    /// The stored hash (`$sha256$…`, or a legacy argon2id PHC string).
    pub hash: String,
    /// Incremented by every rotation.
    pub version: i32,
}

/// How the key table is ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyOrderField {
    /// By creation (id order).
    #[default]
    CreatedAt,
    /// By expiry; keys that never expire come last.
    ExpiresAt,
    /// By last use; keys never used come last.
    LastUsedAt,
}

/// Where a page continues: after this key, which had this value of the
/// ordering field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyCursor {
    /// The last key of the previous page.
    pub id: ApiKeyId,
    /// Its value of the ordering field (none for the keys that come last).
    pub value: Option<DateTime<Utc>>,
}

/// Which columns find a credential: Latchkey's own lookup ids, or the
/// lookups of imported keys.
#[derive(Clone, Copy)]
struct LookupColumns {
    current: api_key::Column,
    previous: api_key::Column,
    imported: bool,
}

impl LookupColumns {
    const KEY: Self = LookupColumns {
        current: api_key::Column::LookupId,
        previous: api_key::Column::PreviousLookupId,
        imported: false,
    };
    const IMPORT: Self = LookupColumns {
        current: api_key::Column::ImportLookup,
        previous: api_key::Column::PreviousImportLookup,
        imported: true,
    };
}

/// What verification reads of a key (and its owner's role), in one query.
#[derive(sea_orm::FromQueryResult)]
struct CredentialRow {
    lookup_id: String,
    previous_lookup_id: Option<String>,
    import_lookup: Option<String>,
    previous_import_lookup: Option<String>,
    id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    owner_id: uuid::Uuid,
    credential_hash: String,
    previous_credential_hash: Option<String>,
    credential_version: i32,
    expires_at: Option<DateTime<Utc>>,
    previous_expires_at: Option<DateTime<Utc>>,
    disabled_at: Option<DateTime<Utc>>,
    compromised_at: Option<DateTime<Utc>>,
    permissions: Option<String>,
    clouds: Option<String>,
    allowed_ips: Option<String>,
    owner_role: Option<String>,
    owner_active: Option<i32>,
}

/// A page request on the key table.
#[derive(Clone, Debug)]
pub struct KeyQuery {
    /// Page size (the caller bounds it).
    pub first: u64,
    /// Continue after this key.
    pub after: Option<KeyCursor>,
    /// The order (ties are broken by id, in the same direction).
    pub order: KeyOrderField,
    /// Ascending rather than descending.
    pub ascending: bool,
    /// Only keys in one of these states at `now` (empty: all).
    pub statuses: Vec<KeyStatus>,
    /// The time statuses are judged at.
    pub now: DateTime<Utc>,
    /// Only keys of this owner.
    pub owner: Option<UserId>,
    /// Only keys whose description contains this (case-insensitive).
    pub search: Option<SearchTerm>,
}

/// A page of the key table.
#[derive(Clone, Debug)]
pub struct KeyPage {
    /// The keys, newest first.
    pub keys: Vec<ApiKey>,
    /// Whether older keys remain.
    pub has_next_page: bool,
    /// All keys matching the filters (ignoring the cursor).
    pub total_count: u64,
}

pub(crate) fn key_from(m: api_key::Model) -> ApiKey {
    ApiKey {
        id: ApiKeyId(m.id),
        tenant_id: TenantId(m.tenant_id),
        owner_id: UserId(m.owner_id),
        description: m.description,
        last_four: m.last_four,
        created_at: m.created_at,
        created_by: m.created_by.map(UserId),
        last_edited_at: m.last_edited_at,
        last_edited_by: m.last_edited_by.map(UserId),
        last_used_at: m.last_used_at,
        expires_at: m.expires_at,
        disabled_at: m.disabled_at,
        previous_last_four: m.previous_last_four,
        previous_expires_at: m.previous_expires_at,
        restrictions: Restrictions::from_stored(&StoredRestrictions {
            permissions: m.permissions,
            clouds: m.clouds,
            allowed_ips: m.allowed_ips,
        }),
        compromised_at: m.compromised_at,
    }
}

async fn key_in<C: ConnectionTrait>(conn: &C, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<api_key::Model>> {
    Ok(api_key::Entity::find_by_id(id.0).filter(api_key::Column::TenantId.eq(tenant.0)).one(conn).await?)
}

/// A key of `tenant`, row-locked until the transaction ends on PostgreSQL
/// (so concurrent changes record a true before and after; SQLite has one writer).
pub(crate) async fn locked_key(
    txn: &sea_orm::DatabaseTransaction,
    tenant: TenantId,
    id: ApiKeyId,
) -> StoreResult<Option<api_key::Model>> {
    let mut select = api_key::Entity::find_by_id(id.0).filter(api_key::Column::TenantId.eq(tenant.0));
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        select = select.lock_exclusive();
    }
    Ok(select.one(txn).await?)
}

/// After a conditional update of one key: the key as it is now when the
/// update changed it, or (with the transaction rolled back) why not.
async fn after_conditional_update(
    txn: sea_orm::DatabaseTransaction,
    tenant: TenantId,
    id: ApiKeyId,
    rows_affected: u64,
) -> StoreResult<Result<(sea_orm::DatabaseTransaction, ApiKey), KeyChange>> {
    let Some(key) = key_in(&txn, tenant, id).await?.map(key_from) else {
        txn.rollback().await?;
        return Ok(Err(KeyChange::NotFound));
    };
    if rows_affected == 0 {
        txn.rollback().await?;
        return Ok(Err(KeyChange::Unchanged(key)));
    }
    Ok(Ok((txn, key)))
}

pub(crate) async fn owner_of<C: ConnectionTrait>(conn: &C, key: &ApiKey) -> StoreResult<User> {
    user_in(conn, key.tenant_id, key.owner_id)
        .await?
        .ok_or_else(|| StoreError::MissingReference(format!("owner {} of key {}", key.owner_id, key.id)))
}

/// `%term%` with LIKE's wildcards in the term escaped.
pub(crate) fn contains_pattern(term: &str) -> LikeExpr {
    let mut escaped = String::with_capacity(term.len() + 2);
    escaped.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    LikeExpr::new(escaped).escape('\\')
}

/// The keys in `status` at `now` (see `ApiKey::status` for the precedence).
fn status_condition(status: KeyStatus, now: DateTime<Utc>) -> Condition {
    let intact = || Condition::all().add(api_key::Column::CompromisedAt.is_null());
    let enabled = || intact().add(api_key::Column::DisabledAt.is_null());
    // Owners whose keys are suspended: deactivated, or of a role that may not own keys.
    let suspending_owners = || {
        sea_orm::sea_query::Query::select()
            .column(user::Column::Id)
            .from(user::Entity)
            .cond_where(
                Condition::any()
                    .add(user::Column::DeactivatedAt.is_not_null())
                    .add(user::Column::Role.is_not_in(KEY_OWNER_ROLES.map(Role::as_str))),
            )
            .to_owned()
    };
    let owner_may_use = || enabled().add(api_key::Column::OwnerId.not_in_subquery(suspending_owners()));
    match status {
        KeyStatus::Compromised => Condition::all().add(api_key::Column::CompromisedAt.is_not_null()),
        KeyStatus::Disabled => intact().add(api_key::Column::DisabledAt.is_not_null()),
        KeyStatus::Suspended => enabled().add(api_key::Column::OwnerId.in_subquery(suspending_owners())),
        KeyStatus::Expired => owner_may_use().add(api_key::Column::ExpiresAt.lte(now)),
        KeyStatus::Active => owner_may_use()
            .add(Condition::any().add(api_key::Column::ExpiresAt.is_null()).add(api_key::Column::ExpiresAt.gt(now))),
    }
}

fn filtered(tenant: TenantId, query: &KeyQuery) -> Select<api_key::Entity> {
    let mut select = api_key::Entity::find().filter(api_key::Column::TenantId.eq(tenant.0));
    if let Some(owner) = query.owner {
        select = select.filter(api_key::Column::OwnerId.eq(owner.0));
    }
    if let Some(term) = &query.search {
        select = select.filter(Expr::col(api_key::Column::DescriptionFolded).like(contains_pattern(term.as_str())));
    }
    if !query.statuses.is_empty() {
        let any = query.statuses.iter().fold(Condition::any(), |any, s| any.add(status_condition(*s, query.now)));
        select = select.filter(any);
    }
    select
}

/// The column a key table order sorts by before the id; none for creation
/// order, which is id order.
fn order_column(field: KeyOrderField) -> Option<api_key::Column> {
    match field {
        KeyOrderField::CreatedAt => None,
        KeyOrderField::ExpiresAt => Some(api_key::Column::ExpiresAt),
        KeyOrderField::LastUsedAt => Some(api_key::Column::LastUsedAt),
    }
}

/// Orders a page and starts it after its cursor: keyset paging on
/// (value is null, value, id), so a page is stable under inserts and nulls
/// come last in either direction.
fn ordered_after(mut select: Select<api_key::Entity>, query: &KeyQuery) -> Select<api_key::Entity> {
    let direction = if query.ascending { Order::Asc } else { Order::Desc };
    let column = order_column(query.order);
    if let Some(after) = query.after {
        let id_beyond =
            if query.ascending { api_key::Column::Id.gt(after.id.0) } else { api_key::Column::Id.lt(after.id.0) };
        let condition = match (column, after.value) {
            (None, _) => Condition::all().add(id_beyond),
            (Some(column), Some(value)) => Condition::any()
                .add(if query.ascending { column.gt(value) } else { column.lt(value) })
                .add(Condition::all().add(column.eq(value)).add(id_beyond))
                .add(column.is_null()),
            (Some(column), None) => Condition::all().add(column.is_null()).add(id_beyond),
        };
        select = select.filter(condition);
    }
    if let Some(column) = column {
        select = select.order_by(Expr::col(column).is_null(), Order::Asc).order_by(column, direction.clone());
    }
    select.order_by(api_key::Column::Id, direction)
}

/// Copies the key's current credential into its previous-secret columns
/// (kept until `until`), or clears them when `until` is none. Expressions
/// read the row as it was before the update, so this must be part of the
/// update that replaces the current credential.
fn keep_previous(
    update: sea_orm::UpdateMany<api_key::Entity>,
    until: Option<DateTime<Utc>>,
) -> sea_orm::UpdateMany<api_key::Entity> {
    match until {
        Some(until) => update
            .col_expr(api_key::Column::PreviousImportLookup, Expr::col(api_key::Column::ImportLookup))
            .col_expr(api_key::Column::PreviousLookupId, Expr::col(api_key::Column::LookupId))
            .col_expr(api_key::Column::PreviousCredentialHash, Expr::col(api_key::Column::CredentialHash))
            .col_expr(api_key::Column::PreviousLastFour, Expr::col(api_key::Column::LastFour))
            .col_expr(api_key::Column::PreviousExpiresAt, Expr::value(storable(until))),
        None => update
            .col_expr(api_key::Column::PreviousImportLookup, Expr::value(Option::<String>::None))
            .col_expr(api_key::Column::PreviousLookupId, Expr::value(Option::<String>::None))
            .col_expr(api_key::Column::PreviousCredentialHash, Expr::value(Option::<String>::None))
            .col_expr(api_key::Column::PreviousLastFour, Expr::value(Option::<String>::None))
            .col_expr(api_key::Column::PreviousExpiresAt, Expr::value(Option::<DateTime<Utc>>::None)),
    }
}

/// A rotation: the new credential, the new expiry, and how long the
/// previous secret keeps working.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The new credential.
    pub credential: NewCredential,
    /// The key's expiry from now on (none for never).
    pub expires_at: Option<DateTime<Utc>>,
    /// Until when the replaced secret keeps working; none to end it at once
    /// (a previous secret kept by an earlier rotation ends at once either way).
    pub previous_until: Option<DateTime<Utc>>,
}

/// What importing one key did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportWrite {
    /// Written, audited and its owner told.
    Imported(Box<ApiKey>),
    /// The key is already there (as imported): nothing written.
    Present,
    /// The credential was imported before and has since been rotated away or
    /// deleted: it never comes back.
    Retired,
}

/// What a leak report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakRecorded {
    /// Recorded: the key was revoked (or not, as its tenant says), and this
    /// many people are mailed.
    Recorded {
        /// Whether the key was revoked now.
        revoked: bool,
        /// How many people are mailed.
        notified: usize,
    },
    /// This key and token were reported before: nothing changed.
    AlreadyReported,
    /// No such key (any more).
    NotFound,
}

/// A change to one key that may be refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// Done; the key as it is now.
    Done(ApiKey),
    /// There was nothing to do (e.g. no overlap to end); the key as it is.
    Unchanged(ApiKey),
    /// No such key in the tenant.
    NotFound,
}

impl Store {
    /// Inserts a generated key and its `generated` event in one transaction.
    /// The actor is the admin who generated it. Fails with
    /// [`StoreError::Conflict`] if the lookup id is taken (the caller retries
    /// with a new secret).
    pub async fn insert_generated_key(&self, new: NewKey, actor: &User, now: DateTime<Utc>) -> StoreResult<ApiKey> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let model = new.into_model(now, Some(actor.id)).insert(&txn).await?;
        let key = key_from(model);
        let owner = owner_of(&txn, &key).await?;
        insert_event(&txn, &KeyEvent::new(KeyEventKind::Generated, &key, &owner, actor, now)).await?;
        insert_audit(&txn, &AuditEntry::new(AuditAction::Generated, &key, actor, now)).await?;
        txn.commit().await?;
        Ok(key)
    }

    /// Inserts a key made before key management existed: no creator, no last
    /// edit, no event. Used by imports and the demo.
    pub async fn import_legacy_key(&self, new: NewKey, created_at: DateTime<Utc>) -> StoreResult<ApiKey> {
        let created_at = storable(created_at);
        let model = new.into_model(created_at, None).insert(self.conn()).await?;
        Ok(key_from(model))
    }

    /// A key of `tenant`; `None` when unknown or another tenant's.
    pub async fn key(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
        Ok(key_in(self.reader(), tenant, id).await?.map(key_from))
    }

    /// A page of `tenant`'s key table, in the query's order.
    pub async fn list_keys(&self, tenant: TenantId, query: &KeyQuery) -> StoreResult<KeyPage> {
        let total_count = filtered(tenant, query).count(self.reader()).await?;
        let page = ordered_after(filtered(tenant, query), query);
        let mut rows = page.limit(query.first.saturating_add(1)).all(self.reader()).await?;
        let has_next_page = rows.len() as u64 > query.first;
        rows.truncate(usize::try_from(query.first).unwrap_or(usize::MAX));
        Ok(KeyPage { keys: rows.into_iter().map(key_from).collect(), has_next_page, total_count })
    }

    /// Replaces a key's credential (keeping the replaced one until
    /// `rotation.previous_until`, if given) and writes its `rotated` event, in
    /// one transaction. `None` when the key is unknown or another tenant's.
    pub async fn rotate_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        rotation: Rotation,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKey>> {
        let now = storable(now);
        let Rotation { credential, expires_at, previous_until } = rotation;
        let txn = self.conn().begin().await?;
        // Write first: on PostgreSQL this takes the row lock, so concurrent
        // rotations of one key serialise and the last one wins whole.
        let updated = keep_previous(api_key::Entity::update_many(), previous_until)
            .col_expr(api_key::Column::ExpiresAt, Expr::value(expires_at.map(storable)))
            .col_expr(api_key::Column::ExpiryNoticeStage, Expr::value(0i16))
            .col_expr(api_key::Column::CompromisedAt, Expr::value(Option::<DateTime<Utc>>::None))
            // A rotated imported key is a Latchkey key from now on.
            .col_expr(api_key::Column::ImportLookup, Expr::value(Option::<String>::None))
            .col_expr(api_key::Column::LookupId, Expr::value(credential.lookup_id.as_str()))
            .col_expr(api_key::Column::CredentialHash, Expr::value(credential.hash))
            .col_expr(api_key::Column::LastFour, Expr::value(credential.last_four))
            .col_expr(api_key::Column::CredentialVersion, Expr::col(api_key::Column::CredentialVersion).add(1))
            .col_expr(api_key::Column::LastEditedAt, Expr::value(now))
            .col_expr(api_key::Column::LastEditedBy, Expr::value(actor.id.0))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let Some(model) = key_in(&txn, tenant, id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        let key = key_from(model);
        let owner = owner_of(&txn, &key).await?;
        insert_event(&txn, &KeyEvent::new(KeyEventKind::Rotated, &key, &owner, actor, now)).await?;
        let mut entry = AuditEntry::new(AuditAction::Rotated, &key, actor, now);
        entry.previous_secret_expires_at = key.previous_expires_at;
        insert_audit(&txn, &entry).await?;
        notify_revocation(&txn, key.id).await?;
        txn.commit().await?;
        Ok(Some(key))
    }

    /// Changes a key's description (no event is mailed for this). `None` when
    /// the key is unknown or another tenant's.
    pub async fn update_key_description(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        description: Description,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKey>> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        // The old description, for the audit trail.
        let Some(before) = locked_key(&txn, tenant, id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::DescriptionFolded, Expr::value(description.folded()))
            .col_expr(api_key::Column::Description, Expr::value(description.as_str()))
            .col_expr(api_key::Column::LastEditedAt, Expr::value(now))
            .col_expr(api_key::Column::LastEditedBy, Expr::value(actor.id.0))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(None);
        }
        let Some(key) = key_in(&txn, tenant, id).await?.map(key_from) else {
            txn.rollback().await?;
            return Ok(None);
        };
        let mut entry = AuditEntry::new(AuditAction::DescriptionChanged, &key, actor, now);
        entry.old_description = Some(before.description);
        entry.new_description = Some(description.into_string());
        insert_audit(&txn, &entry).await?;
        txn.commit().await?;
        Ok(Some(key))
    }

    /// Deletes a key and writes its `deleted` event, in one transaction.
    /// Returns the key as it was; `None` when unknown or another tenant's.
    pub async fn delete_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKey>> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let Some(model) = key_in(&txn, tenant, id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        let deleted = api_key::Entity::delete_many()
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(&txn)
            .await?;
        if deleted.rows_affected == 0 {
            // A concurrent delete won; it wrote the event.
            txn.rollback().await?;
            return Ok(None);
        }
        let key = key_from(model);
        let owner = owner_of(&txn, &key).await?;
        insert_event(&txn, &KeyEvent::new(KeyEventKind::Deleted, &key, &owner, actor, now)).await?;
        insert_audit(&txn, &AuditEntry::new(AuditAction::Deleted, &key, actor, now)).await?;
        notify_revocation(&txn, key.id).await?;
        txn.commit().await?;
        Ok(Some(key))
    }

    /// Ends the overlap of a key's previous secret now: from now on it answers
    /// `EXPIRED`. Audited; pushed to every replica's cache.
    pub async fn expire_previous_secret(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<KeyChange> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::PreviousExpiresAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::PreviousExpiresAt.gt(now))
            .exec(&txn)
            .await?;
        let (txn, key) = match after_conditional_update(txn, tenant, id, updated.rows_affected).await? {
            Ok(changed) => changed,
            Err(unchanged) => return Ok(unchanged),
        };
        let mut entry = AuditEntry::new(AuditAction::PreviousSecretExpired, &key, actor, now);
        entry.previous_secret_expires_at = Some(now);
        insert_audit(&txn, &entry).await?;
        notify_revocation(&txn, key.id).await?;
        txn.commit().await?;
        Ok(KeyChange::Done(key))
    }

    /// Forgets previous secrets whose overlap ended before `ended_before`
    /// (their lookup id, hash and last four): from then on presenting one is
    /// like presenting any unknown key. Returns how many were cleared.
    pub async fn clear_previous_secrets_ended_before(&self, ended_before: DateTime<Utc>) -> StoreResult<u64> {
        let cleared = keep_previous(api_key::Entity::update_many(), None)
            .filter(api_key::Column::PreviousExpiresAt.lt(storable(ended_before)))
            .exec(self.conn())
            .await?;
        Ok(cleared.rows_affected)
    }

    /// Sets (or with `None` clears) a key's expiry, re-arming its expiry
    /// notices. Audited with the old and new expiry; pushed to every
    /// replica's cache (cached verifications carry the old deadline).
    pub async fn set_key_expiry(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        expires_at: Option<DateTime<Utc>>,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<KeyChange> {
        let now = storable(now);
        let expires_at = expires_at.map(storable);
        let txn = self.conn().begin().await?;
        let Some(before) = locked_key(&txn, tenant, id).await? else {
            txn.rollback().await?;
            return Ok(KeyChange::NotFound);
        };
        if before.expires_at == expires_at {
            txn.rollback().await?;
            return Ok(KeyChange::Unchanged(key_from(before)));
        }
        api_key::Entity::update_many()
            .col_expr(api_key::Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(api_key::Column::ExpiryNoticeStage, Expr::value(0i16))
            .filter(api_key::Column::Id.eq(id.0))
            .exec(&txn)
            .await?;
        let old_expires_at = before.expires_at;
        let key = ApiKey { expires_at, ..key_from(before) };
        let mut entry = AuditEntry::new(AuditAction::ExpiryChanged, &key, actor, now);
        entry.old_expires_at = old_expires_at;
        entry.new_expires_at = expires_at;
        insert_audit(&txn, &entry).await?;
        notify_revocation(&txn, key.id).await?;
        txn.commit().await?;
        Ok(KeyChange::Done(key))
    }

    /// Disables (or enables) a key; the owner is mailed and the change
    /// audited. Disabling is pushed to every replica's cache. Enabling
    /// restores the same secret.
    pub async fn set_key_disabled(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        disabled: bool,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<KeyChange> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let (value, currently) = if disabled {
            (Some(now), api_key::Column::DisabledAt.is_null())
        } else {
            (None, api_key::Column::DisabledAt.is_not_null())
        };
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::DisabledAt, Expr::value(value))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(currently)
            .exec(&txn)
            .await?;
        let (txn, key) = match after_conditional_update(txn, tenant, id, updated.rows_affected).await? {
            Ok(changed) => changed,
            Err(unchanged) => return Ok(unchanged),
        };
        let owner = owner_of(&txn, &key).await?;
        let (kind, action) = if disabled {
            (KeyEventKind::Disabled, AuditAction::Disabled)
        } else {
            (KeyEventKind::Enabled, AuditAction::Enabled)
        };
        insert_event(&txn, &KeyEvent::new(kind, &key, &owner, actor, now)).await?;
        insert_audit(&txn, &AuditEntry::new(action, &key, actor, now)).await?;
        if disabled {
            notify_revocation(&txn, key.id).await?;
        }
        txn.commit().await?;
        Ok(KeyChange::Done(key))
    }

    /// Replaces a key's restrictions; the owner is mailed the before and
    /// after, the change is audited, and every replica's cache forgets the
    /// key. Rotation keeps restrictions.
    pub async fn update_key_restrictions(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        restrictions: Restrictions,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<KeyChange> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let Some(before) = locked_key(&txn, tenant, id).await?.map(key_from) else {
            txn.rollback().await?;
            return Ok(KeyChange::NotFound);
        };
        if before.restrictions == restrictions {
            txn.rollback().await?;
            return Ok(KeyChange::Unchanged(before));
        }
        let stored = restrictions.to_stored();
        api_key::Entity::update_many()
            .col_expr(api_key::Column::Permissions, Expr::value(stored.permissions))
            .col_expr(api_key::Column::Clouds, Expr::value(stored.clouds))
            .col_expr(api_key::Column::AllowedIps, Expr::value(stored.allowed_ips))
            .col_expr(api_key::Column::LastEditedAt, Expr::value(now))
            .col_expr(api_key::Column::LastEditedBy, Expr::value(actor.id.0))
            .filter(api_key::Column::Id.eq(id.0))
            .exec(&txn)
            .await?;
        let change = Some((before.restrictions.describe(), restrictions.describe()));
        let key = ApiKey { restrictions, last_edited_at: Some(now), last_edited_by: Some(actor.id), ..before };
        let owner = owner_of(&txn, &key).await?;
        let mut event = KeyEvent::new(KeyEventKind::RestrictionsChanged, &key, &owner, actor, now);
        event.restrictions_change = change.clone();
        insert_event(&txn, &event).await?;
        let mut entry = AuditEntry::new(AuditAction::RestrictionsChanged, &key, actor, now);
        entry.restrictions_change = change;
        insert_audit(&txn, &entry).await?;
        notify_revocation(&txn, key.id).await?;
        txn.commit().await?;
        Ok(KeyChange::Done(key))
    }

    /// Records a report that `key`'s secret leaked (`token_digest`: SHA-256
    /// of the leaked token), once per key and token: a repeated report
    /// changes and mails nothing. Unless its tenant says `notify`, the key is
    /// revoked at once (`COMPROMISED`, on every replica). The owner and every
    /// active internal admin of the tenant are mailed; the audit trail records it.
    pub async fn report_leak(
        &self,
        id: ApiKeyId,
        token_digest: &str,
        reporter: &str,
        url: Option<&str>,
        source: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<LeakRecorded> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let Some(model) = api_key::Entity::find_by_id(id.0).one(&txn).await? else {
            txn.rollback().await?;
            return Ok(LeakRecorded::NotFound);
        };
        let report = leak_report::ActiveModel {
            id: Set(latchkey_domain::ids::time_ordered_uuid(now)),
            key_id: Set(id.0),
            token_digest: Set(token_digest.to_owned()),
            source: Set(reporter.to_owned()),
            url: Set(url.map(str::to_owned)),
            reported_at: Set(now),
        };
        // The unique (key, token) index makes a retried report a no-op.
        let inserted = leak_report::Entity::insert(report)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([leak_report::Column::KeyId, leak_report::Column::TokenDigest])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if inserted == 0 {
            txn.rollback().await?;
            return Ok(LeakRecorded::AlreadyReported);
        }
        let mut key = key_from(model);
        let response = tenant::Entity::find_by_id(key.tenant_id.0)
            .one(&txn)
            .await?
            .and_then(|t| LeakResponse::parse(&t.leak_response))
            .unwrap_or(LeakResponse::Revoke);
        let revoked = response == LeakResponse::Revoke && key.compromised_at.is_none();
        if revoked {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::CompromisedAt, Expr::value(now))
                .filter(api_key::Column::Id.eq(id.0))
                .exec(&txn)
                .await?;
            key.compromised_at = Some(now);
            notify_revocation(&txn, key.id).await?;
        }
        let leak = LeakReport {
            reporter: reporter.to_owned(),
            url: url.map(str::to_owned),
            source: source.map(str::to_owned),
            revoked,
        };
        let mut actor = latchkey_domain::lifecycle::system_actor(key.tenant_id);
        actor.name = reporter.to_owned();
        let owner = owner_of(&txn, &key).await?;
        let admins = crate::users::active_internal_admins(&txn, key.tenant_id).await?;
        let owner_id = owner.id;
        let mut recipients = vec![owner];
        recipients.extend(admins.into_iter().filter(|admin| admin.id != owner_id));
        for recipient in &recipients {
            let mut event = KeyEvent::new(KeyEventKind::Leaked, &key, recipient, &actor, now);
            event.leak = Some(leak.clone());
            insert_event(&txn, &event).await?;
        }
        let mut entry = AuditEntry::new(AuditAction::LeakReported, &key, &actor, now);
        entry.leak = Some(leak);
        insert_audit(&txn, &entry).await?;
        txn.commit().await?;
        Ok(LeakRecorded::Recorded { revoked, notified: recipients.len() })
    }

    /// Queues the expiry notices due at `now` (7 days before, 1 day before,
    /// expired) for up to `limit` enabled keys, and audits each expiry. Each
    /// notice is queued once per key and expiry date, however many replicas
    /// run this at once: a key's notice stage only moves forward, by a
    /// conditional update in the notice's transaction. Returns how many
    /// notices were queued.
    pub async fn queue_expiry_notices(&self, now: DateTime<Utc>, limit: u64) -> StoreResult<usize> {
        let now = storable(now);
        let due = ExpiryNotice::LEADS.iter().fold(Condition::any(), |any, (notice, lead)| {
            any.add(
                Condition::all()
                    .add(api_key::Column::ExpiryNoticeStage.lt(notice.stage()))
                    .add(api_key::Column::ExpiresAt.lte(now + *lead)),
            )
        });
        let candidates = api_key::Entity::find()
            .filter(api_key::Column::DisabledAt.is_null())
            .filter(api_key::Column::ExpiresAt.is_not_null())
            .filter(due)
            .order_by_asc(api_key::Column::ExpiresAt)
            .limit(limit)
            .all(self.reader())
            .await?;
        let mut queued = 0;
        for candidate in candidates {
            let Some(expires_at) = candidate.expires_at else { continue };
            let Some(notice) = ExpiryNotice::due(expires_at, now) else { continue };
            if candidate.expiry_notice_stage >= notice.stage() {
                continue;
            }
            let txn = self.conn().begin().await?;
            let claimed = api_key::Entity::update_many()
                .col_expr(api_key::Column::ExpiryNoticeStage, Expr::value(notice.stage()))
                .filter(api_key::Column::Id.eq(candidate.id))
                .filter(api_key::Column::ExpiryNoticeStage.lt(notice.stage()))
                .filter(api_key::Column::ExpiresAt.eq(expires_at))
                .filter(api_key::Column::DisabledAt.is_null())
                .exec(&txn)
                .await?;
            if claimed.rows_affected == 0 {
                // Another replica queued it, or the key changed meanwhile.
                txn.rollback().await?;
                continue;
            }
            let key = key_from(candidate);
            let owner = owner_of(&txn, &key).await?;
            let actor = latchkey_domain::lifecycle::system_actor(key.tenant_id);
            let kind = if notice == ExpiryNotice::Expired { KeyEventKind::Expired } else { KeyEventKind::Expiring };
            insert_event(&txn, &KeyEvent::new(kind, &key, &owner, &actor, now)).await?;
            if notice == ExpiryNotice::Expired {
                insert_audit(&txn, &AuditEntry::new(AuditAction::Expired, &key, &actor, expires_at)).await?;
            }
            txn.commit().await?;
            queued += 1;
        }
        Ok(queued)
    }

    /// Enabled keys of any tenant that expire before `until` (expired ones
    /// included), soonest first, for operators.
    pub async fn keys_expiring_before(&self, until: DateTime<Utc>) -> StoreResult<Vec<ApiKey>> {
        Ok(api_key::Entity::find()
            .filter(api_key::Column::DisabledAt.is_null())
            .filter(api_key::Column::ExpiresAt.lte(storable(until)))
            .order_by_asc(api_key::Column::ExpiresAt)
            .order_by_asc(api_key::Column::Id)
            .all(self.reader())
            .await?
            .into_iter()
            .map(key_from)
            .collect())
    }

    /// The stored credentials of several lookup ids, in any tenant, with one
    /// query (unknown ids are absent). Reads only the columns verification
    /// needs: this is the cold path of every gateway.
    pub async fn credentials_by_lookup_ids(&self, lookup_ids: &[LookupId]) -> StoreResult<Vec<StoredCredential>> {
        let wanted: Vec<&str> = lookup_ids.iter().map(LookupId::as_str).collect();
        self.credentials_found_by(LookupColumns::KEY, &wanted).await
    }

    /// The stored credentials of imported keys found by any of `lookups`
    /// (`prefix:…`, `sha256:…`, `sha512:…`; see `latchkey_domain::import`),
    /// with one indexed query.
    pub async fn credentials_by_import_lookups(&self, lookups: &[String]) -> StoreResult<Vec<StoredCredential>> {
        let wanted: Vec<&str> = lookups.iter().map(String::as_str).collect();
        self.credentials_found_by(LookupColumns::IMPORT, &wanted).await
    }

    async fn credentials_found_by(&self, by: LookupColumns, wanted: &[&str]) -> StoreResult<Vec<StoredCredential>> {
        let rows: Vec<CredentialRow> = api_key::Entity::find()
            .select_only()
            .columns([
                api_key::Column::LookupId,
                api_key::Column::PreviousLookupId,
                api_key::Column::ImportLookup,
                api_key::Column::PreviousImportLookup,
                api_key::Column::Id,
                api_key::Column::TenantId,
                api_key::Column::OwnerId,
                api_key::Column::CredentialHash,
                api_key::Column::PreviousCredentialHash,
                api_key::Column::CredentialVersion,
                api_key::Column::ExpiresAt,
                api_key::Column::PreviousExpiresAt,
                api_key::Column::DisabledAt,
                api_key::Column::CompromisedAt,
                api_key::Column::Permissions,
                api_key::Column::Clouds,
                api_key::Column::AllowedIps,
            ])
            // The owner's role bounds what the key may do, and a deactivated
            // owner suspends it; read with the key.
            .column_as(Expr::cust("(SELECT role FROM users WHERE users.id = api_keys.owner_id)"), "owner_role")
            .column_as(
                Expr::cust(
                    "(SELECT CASE WHEN users.deactivated_at IS NULL THEN 1 ELSE 0 END FROM users \
                     WHERE users.id = api_keys.owner_id)",
                ),
                "owner_active",
            )
            .filter(
                Condition::any()
                    .add(by.current.is_in(wanted.iter().copied()))
                    .add(by.previous.is_in(wanted.iter().copied())),
            )
            .into_model::<CredentialRow>()
            .all(self.reader())
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let restrictions = Arc::new(Restrictions::from_stored(&StoredRestrictions {
                permissions: row.permissions.clone(),
                clouds: row.clouds.clone(),
                allowed_ips: row.allowed_ips.clone(),
            }));
            // An owner whose role cannot be read may do nothing (fail closed).
            let owner_role = row.owner_role.as_deref().and_then(Role::parse);
            let owner_may = owner_role.map_or(PermissionSet::none(), owner_permissions);
            let owner_inactive = row.owner_active != Some(1) || !owner_role.is_some_and(role_may_own_keys);
            let (expires, disabled, compromised) =
                (row.expires_at, row.disabled_at.is_some(), row.compromised_at.is_some());
            let credential = |lookup_id: String, hash: String, previous: bool, works_until| StoredCredential {
                lookup_id: LookupId::from_stored(lookup_id),
                previous,
                works_until,
                disabled,
                compromised,
                owner_inactive,
                restrictions: restrictions.clone(),
                owner_may,
                key_id: ApiKeyId(row.id),
                tenant_id: TenantId(row.tenant_id),
                owner_id: UserId(row.owner_id),
                hash,
                version: row.credential_version,
            };
            let (current, previous) = if by.imported {
                (row.import_lookup.clone(), row.previous_import_lookup.clone())
            } else {
                (Some(row.lookup_id.clone()), row.previous_lookup_id.clone())
            };
            if let Some(lookup) = current.filter(|l| wanted.contains(&l.as_str())) {
                found.push(credential(lookup, row.credential_hash.clone(), false, expires));
            }
            if let (Some(lookup), Some(hash), Some(until)) =
                (previous, row.previous_credential_hash.clone(), row.previous_expires_at)
                && wanted.contains(&lookup.as_str())
            {
                let until = expires.map_or(until, |expires| Ord::min(expires, until));
                found.push(credential(lookup, hash, true, Some(until)));
            }
        }
        Ok(found)
    }

    /// Inserts a key imported from another system, as a key from before key
    /// management, with its `imported` audit entry and owner notice (by
    /// `actor`), in one transaction. A credential imported before is never
    /// written again: not while its key is there (an import can run twice),
    /// nor after it was rotated away or deleted.
    pub async fn insert_imported_key(
        &self,
        new: NewKey,
        created_at: DateTime<Utc>,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<ImportWrite> {
        let (created_at, now) = (storable(created_at), storable(now));
        let identity = new.import_lookup.clone().unwrap_or_else(|| new.credential.lookup_id.as_str().to_owned());
        let txn = self.conn().begin().await?;
        if let Some(before) = imported_credential::Entity::find_by_id(identity.clone()).one(&txn).await? {
            let present = key_in(&txn, TenantId(before.tenant_id), ApiKeyId(before.key_id))
                .await?
                .is_some_and(|k| k.import_lookup.as_deref().unwrap_or(&k.lookup_id) == identity);
            txn.rollback().await?;
            return Ok(if present { ImportWrite::Present } else { ImportWrite::Retired });
        }
        let exists = match &new.import_lookup {
            Some(lookup) => api_key::Entity::find().filter(
                Condition::any()
                    .add(api_key::Column::ImportLookup.eq(lookup.as_str()))
                    .add(api_key::Column::PreviousImportLookup.eq(lookup.as_str())),
            ),
            None => api_key::Entity::find().filter(
                Condition::any()
                    .add(api_key::Column::LookupId.eq(new.credential.lookup_id.as_str()))
                    .add(api_key::Column::PreviousLookupId.eq(new.credential.lookup_id.as_str())),
            ),
        };
        if exists.one(&txn).await?.is_some() {
            txn.rollback().await?;
            return Ok(ImportWrite::Present);
        }
        let model = match new.into_model(created_at, None).insert(&txn).await.map_err(StoreError::from) {
            Ok(model) => model,
            Err(StoreError::Conflict(_)) => {
                txn.rollback().await?;
                return Ok(ImportWrite::Present);
            }
            Err(e) => return Err(e),
        };
        let key = key_from(model);
        imported_credential::ActiveModel {
            lookup: Set(identity),
            tenant_id: Set(key.tenant_id.0),
            key_id: Set(key.id.0),
            imported_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let owner = owner_of(&txn, &key).await?;
        insert_event(&txn, &KeyEvent::new(KeyEventKind::Imported, &key, &owner, actor, now)).await?;
        insert_audit(&txn, &AuditEntry::new(AuditAction::Imported, &key, actor, now)).await?;
        txn.commit().await?;
        Ok(ImportWrite::Imported(Box::new(key)))
    }

    /// The stored credential for a lookup id, in any tenant.
    pub async fn credential_by_lookup_id(&self, lookup_id: &LookupId) -> StoreResult<Option<StoredCredential>> {
        Ok(self.credentials_by_lookup_ids(std::slice::from_ref(lookup_id)).await?.pop())
    }

    /// Replaces the stored hash of a credential that just verified by
    /// `new_hash` (the same secret under another scheme), only if the key
    /// still has that very credential: a rotation or deletion that happened
    /// meanwhile wins. Whether it was replaced.
    pub async fn upgrade_credential_hash(&self, verified: &StoredCredential, new_hash: &str) -> StoreResult<bool> {
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::CredentialHash, Expr::value(new_hash))
            .filter(api_key::Column::Id.eq(verified.key_id.0))
            .filter(api_key::Column::CredentialVersion.eq(verified.version))
            .filter(api_key::Column::CredentialHash.eq(verified.hash.as_str()))
            .exec(self.conn())
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// The stored hash of a key, for operators and tests (never leaves the service).
    pub async fn credential_hash(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<String>> {
        Ok(key_in(self.conn(), tenant, id).await?.map(|m| m.credential_hash))
    }

    /// Records that keys were used, moving `last_used_at` forward only, in
    /// one transaction (so a large batch holds the writer once, briefly).
    pub async fn record_key_use(&self, uses: &[(ApiKeyId, DateTime<Utc>)]) -> StoreResult<()> {
        let txn = self.conn().begin().await?;
        for (id, at) in uses {
            let at = storable(*at);
            api_key::Entity::update_many()
                .col_expr(api_key::Column::LastUsedAt, Expr::value(at))
                .filter(api_key::Column::Id.eq(id.0))
                .filter(api_key::Column::LastUsedAt.is_null().or(api_key::Column::LastUsedAt.lt(at)))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::contains_pattern;

    #[test]
    fn like_wildcards_in_search_terms_are_escaped() {
        let built = format!("{:?}", contains_pattern("50%_off\\"));
        assert!(built.contains(r"%50\\%\\_off\\\\%"), "{built}");
    }
}
