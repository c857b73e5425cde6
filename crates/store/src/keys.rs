//! API keys: the key table, the key lifecycle, and credential lookup.

use chrono::{DateTime, Utc};
use latchkey_domain::{
    ApiKey, ApiKeyId, ApiKeySecret, AuditAction, AuditEntry, Description, KeyEvent, KeyEventKind, LookupId, SearchTerm,
    TenantId, User, UserId,
};
use sea_orm::sea_query::{Expr, ExprTrait, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Set, TransactionTrait,
};

use crate::audit::insert_audit;
use crate::entities::api_key;
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
}

impl NewKey {
    /// A key of `tenant_id` for `owner_id`.
    pub fn new(tenant_id: TenantId, owner_id: UserId, description: Description, credential: NewCredential) -> Self {
        NewKey { tenant_id, owner_id, description, credential }
    }

    /// The row for this key, created at `created_at` by `created_by` (none
    /// for a key from before key management, which has no last edit either).
    fn into_model(self, created_at: DateTime<Utc>, created_by: Option<UserId>) -> api_key::ActiveModel {
        let created_by = created_by.map(|u| u.0);
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
        }
    }
}

/// What a verification needs: found by lookup id, across tenants.
#[derive(Clone, Debug)]
pub struct StoredCredential {
    /// The public lookup id it was found by.
    pub lookup_id: LookupId,
    /// The key.
    pub key_id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its owner.
    pub owner_id: UserId,
    /// Argon2id PHC string.
    pub hash: String,
    /// Incremented by every rotation.
    pub version: i32,
}

/// A page request on the key table, newest first.
#[derive(Clone, Debug)]
pub struct KeyQuery {
    /// Page size (the caller bounds it).
    pub first: u64,
    /// Only keys older than this one.
    pub after: Option<ApiKeyId>,
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
    }
}

async fn key_in<C: ConnectionTrait>(conn: &C, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<api_key::Model>> {
    Ok(api_key::Entity::find_by_id(id.0).filter(api_key::Column::TenantId.eq(tenant.0)).one(conn).await?)
}

async fn owner_of<C: ConnectionTrait>(conn: &C, key: &ApiKey) -> StoreResult<User> {
    user_in(conn, key.tenant_id, key.owner_id)
        .await?
        .ok_or_else(|| StoreError::MissingReference(format!("owner {} of key {}", key.owner_id, key.id)))
}

/// `%term%` with LIKE's wildcards in the term escaped.
fn contains_pattern(term: &str) -> LikeExpr {
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

fn filtered(tenant: TenantId, query: &KeyQuery) -> Select<api_key::Entity> {
    let mut select = api_key::Entity::find().filter(api_key::Column::TenantId.eq(tenant.0));
    if let Some(owner) = query.owner {
        select = select.filter(api_key::Column::OwnerId.eq(owner.0));
    }
    if let Some(term) = &query.search {
        select = select.filter(Expr::col(api_key::Column::DescriptionFolded).like(contains_pattern(term.as_str())));
    }
    select
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

    /// A page of `tenant`'s key table, newest first.
    pub async fn list_keys(&self, tenant: TenantId, query: &KeyQuery) -> StoreResult<KeyPage> {
        let total_count = filtered(tenant, query).count(self.reader()).await?;
        let mut page = filtered(tenant, query);
        if let Some(after) = query.after {
            page = page.filter(api_key::Column::Id.lt(after.0));
        }
        let mut rows =
            page.order_by_desc(api_key::Column::Id).limit(query.first.saturating_add(1)).all(self.reader()).await?;
        let has_next_page = rows.len() as u64 > query.first;
        rows.truncate(usize::try_from(query.first).unwrap_or(usize::MAX));
        Ok(KeyPage { keys: rows.into_iter().map(key_from).collect(), has_next_page, total_count })
    }

    /// Replaces a key's credential and writes its `rotated` event, in one
    /// transaction. `None` when the key is unknown or another tenant's.
    pub async fn rotate_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        credential: NewCredential,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKey>> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        // Write first: on PostgreSQL this takes the row lock, so concurrent
        // rotations of one key serialise and the last one wins whole.
        let updated = api_key::Entity::update_many()
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
        insert_audit(&txn, &AuditEntry::new(AuditAction::Rotated, &key, actor, now)).await?;
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
        // The old description, for the audit trail (row-locked on PostgreSQL
        // so that concurrent edits record a true before/after).
        let mut before = api_key::Entity::find_by_id(id.0).filter(api_key::Column::TenantId.eq(tenant.0));
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            before = before.lock_exclusive();
        }
        let Some(before) = before.one(&txn).await? else {
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

    /// The stored credentials of several lookup ids, in any tenant, with one
    /// query (unknown ids are absent). Reads only the columns verification
    /// needs: this is the cold path of every gateway.
    pub async fn credentials_by_lookup_ids(&self, lookup_ids: &[LookupId]) -> StoreResult<Vec<StoredCredential>> {
        let rows: Vec<(String, uuid::Uuid, uuid::Uuid, uuid::Uuid, String, i32)> = api_key::Entity::find()
            .select_only()
            .columns([
                api_key::Column::LookupId,
                api_key::Column::Id,
                api_key::Column::TenantId,
                api_key::Column::OwnerId,
                api_key::Column::CredentialHash,
                api_key::Column::CredentialVersion,
            ])
            .filter(api_key::Column::LookupId.is_in(lookup_ids.iter().map(LookupId::as_str)))
            .into_tuple()
            .all(self.reader())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(lookup_id, id, tenant, owner, hash, version)| StoredCredential {
                lookup_id: LookupId::from_stored(lookup_id),
                key_id: ApiKeyId(id),
                tenant_id: TenantId(tenant),
                owner_id: UserId(owner),
                hash,
                version,
            })
            .collect())
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
