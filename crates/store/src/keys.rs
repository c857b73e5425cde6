//! API keys: the key table, the key lifecycle, and credential lookup.

use chrono::{DateTime, Utc};
use std::sync::Arc;

use latchkey_domain::policy::{KEY_OWNER_ROLES, role_may_own_keys};
use latchkey_domain::restrictions::{PermissionSet, Restrictions, StoredRestrictions, owner_permissions};
use latchkey_domain::{
    ApiKey, ApiKeyId, ApiKeySecret, Description, ExpiryNotice, KeyStatus, LookupId, Role, SearchTerm, TenantId, User,
    UserId,
};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Select, Set, TransactionTrait,
};
use sea_orm::{Condition, Order};

use crate::entities::{api_key, imported_credential, leak_report, user};
use crate::tx::{Tx, Written};
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

    /// What identifies its credential for good: the import lookup of an
    /// imported key, else its lookup id.
    pub fn import_identity(&self) -> String {
        self.import_lookup.clone().unwrap_or_else(|| self.credential.lookup_id.as_str().to_owned())
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
        select =
            select.filter(Expr::col(api_key::Column::DescriptionFolded).like(crate::contains_pattern(term.as_str())));
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
impl Store {
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

/// Whether a credential about to be imported was written before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportState {
    /// Never seen: it may be written.
    New,
    /// Its key is there, with this credential.
    Present,
    /// It was imported and has since been rotated away or deleted.
    Retired,
}

/// The expiry-notice stage a key has reached (see `ExpiryNotice::stage`).
pub type NoticeStage = i16;

impl Store {
    /// Enabled keys of any tenant whose next expiry notice (7 days before,
    /// 1 day before, expired) is due at `now`, with the stage they reached,
    /// soonest expiry first, at most `limit`.
    pub async fn keys_due_for_expiry_notice(
        &self,
        now: DateTime<Utc>,
        limit: u64,
    ) -> StoreResult<Vec<(ApiKey, NoticeStage)>> {
        let now = storable(now);
        let due = ExpiryNotice::LEADS.iter().fold(Condition::any(), |any, (notice, lead)| {
            any.add(
                Condition::all()
                    .add(api_key::Column::ExpiryNoticeStage.lt(notice.stage()))
                    .add(api_key::Column::ExpiresAt.lte(now + *lead)),
            )
        });
        Ok(api_key::Entity::find()
            .filter(api_key::Column::DisabledAt.is_null())
            .filter(api_key::Column::ExpiresAt.is_not_null())
            .filter(due)
            .order_by_asc(api_key::Column::ExpiresAt)
            .limit(limit)
            .all(self.reader())
            .await?
            .into_iter()
            .map(|m| {
                let stage = m.expiry_notice_stage;
                (key_from(m), stage)
            })
            .collect())
    }
}

/// Keys inside a unit of work. Every write is scoped by tenant, except those
/// that start from a credential (leak reports, expiry notices), which is how
/// a key finds its tenant.
impl Tx {
    /// Inserts a key created at `created_at` by `created_by` (none for a key
    /// from before key management, which has no last edit either). Fails with
    /// [`StoreError::Conflict`] if its lookup id is taken.
    pub async fn insert_key(
        &self,
        new: NewKey,
        created_at: DateTime<Utc>,
        created_by: Option<UserId>,
    ) -> StoreResult<ApiKey> {
        Ok(key_from(new.into_model(storable(created_at), created_by).insert(self.conn()).await?))
    }

    /// A key of `tenant`, row-locked until the unit of work ends.
    pub async fn locked_key(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
        let select = api_key::Entity::find_by_id(id.0).filter(api_key::Column::TenantId.eq(tenant.0));
        Ok(self.locking(select).one(self.conn()).await?.map(key_from))
    }

    /// A key of any tenant, row-locked: for a change that starts from a
    /// credential (a leak report).
    pub async fn locked_key_of_any_tenant(&self, id: ApiKeyId) -> StoreResult<Option<ApiKey>> {
        Ok(self.locking(api_key::Entity::find_by_id(id.0)).one(self.conn()).await?.map(key_from))
    }

    /// The keys `owner` of `tenant` owns, in creation order, row-locked.
    pub async fn locked_keys_owned_by(&self, tenant: TenantId, owner: UserId) -> StoreResult<Vec<ApiKey>> {
        let select = api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::OwnerId.eq(owner.0))
            .order_by_asc(api_key::Column::Id);
        Ok(self.locking(select).all(self.conn()).await?.into_iter().map(key_from).collect())
    }

    /// The owner of `key` (a key always has one).
    pub async fn owner_of(&self, key: &ApiKey) -> StoreResult<User> {
        user_in(self.conn(), key.tenant_id, key.owner_id)
            .await?
            .ok_or_else(|| StoreError::MissingReference(format!("owner {} of key {}", key.owner_id, key.id)))
    }

    /// Replaces a key's credential (keeping the replaced one until
    /// `rotation.previous_until`, if given), its expiry (notices re-armed)
    /// and clears its compromise. The key as it is now; `None` when it is
    /// unknown or another tenant's.
    pub async fn replace_credential(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        rotation: Rotation,
        edited_by: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKey>> {
        let now = storable(now);
        let Rotation { credential, expires_at, previous_until } = rotation;
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
            .col_expr(api_key::Column::LastEditedBy, Expr::value(edited_by.0))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        Ok(key_in(self.conn(), tenant, id).await?.map(key_from))
    }

    /// Sets a key's description (and its last edit). The key as it is now;
    /// `None` when it is unknown or another tenant's.
    pub async fn set_key_description(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        description: &Description,
        edited_by: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKey>> {
        let now = storable(now);
        api_key::Entity::update_many()
            .col_expr(api_key::Column::DescriptionFolded, Expr::value(description.folded()))
            .col_expr(api_key::Column::Description, Expr::value(description.as_str()))
            .col_expr(api_key::Column::LastEditedAt, Expr::value(now))
            .col_expr(api_key::Column::LastEditedBy, Expr::value(edited_by.0))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(key_in(self.conn(), tenant, id).await?.map(key_from))
    }

    /// Deletes a key; whether this deleted it (false when a concurrent
    /// delete won, or there was none).
    pub async fn delete_key(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<bool> {
        let deleted = api_key::Entity::delete_many()
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(deleted.rows_affected > 0)
    }

    /// Ends a previous secret's overlap at `now`, if it was still running.
    pub async fn end_previous_secret(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        now: DateTime<Utc>,
    ) -> StoreResult<Written<ApiKey>> {
        let now = storable(now);
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::PreviousExpiresAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::PreviousExpiresAt.gt(now))
            .exec(self.conn())
            .await?;
        self.written(tenant, id, updated.rows_affected).await
    }

    /// Sets (or with `None` clears) a key's expiry; its expiry notices start over.
    pub async fn set_key_expiry(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        expires_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::ExpiresAt, Expr::value(expires_at.map(storable)))
            .col_expr(api_key::Column::ExpiryNoticeStage, Expr::value(0i16))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Disables a key at `disabled_at` (or enables it with `None`), unless it
    /// already is so.
    pub async fn set_key_disabled(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        disabled_at: Option<DateTime<Utc>>,
    ) -> StoreResult<Written<ApiKey>> {
        let currently = match disabled_at {
            Some(_) => api_key::Column::DisabledAt.is_null(),
            None => api_key::Column::DisabledAt.is_not_null(),
        };
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::DisabledAt, Expr::value(disabled_at.map(storable)))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(currently)
            .exec(self.conn())
            .await?;
        self.written(tenant, id, updated.rows_affected).await
    }

    /// Replaces a key's restrictions (and its last edit).
    pub async fn set_key_restrictions(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        restrictions: &Restrictions,
        edited_by: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let stored = restrictions.to_stored();
        api_key::Entity::update_many()
            .col_expr(api_key::Column::Permissions, Expr::value(stored.permissions))
            .col_expr(api_key::Column::Clouds, Expr::value(stored.clouds))
            .col_expr(api_key::Column::AllowedIps, Expr::value(stored.allowed_ips))
            .col_expr(api_key::Column::LastEditedAt, Expr::value(storable(now)))
            .col_expr(api_key::Column::LastEditedBy, Expr::value(edited_by.0))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Marks a key compromised at `at`.
    pub async fn set_key_compromised(&self, id: ApiKeyId, at: DateTime<Utc>) -> StoreResult<()> {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::CompromisedAt, Expr::value(storable(at)))
            .filter(api_key::Column::Id.eq(id.0))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Gives `keys` of `tenant` to `owner`.
    pub async fn set_keys_owner(&self, tenant: TenantId, keys: &[ApiKeyId], owner: UserId) -> StoreResult<()> {
        for chunk in keys.chunks(500) {
            api_key::Entity::update_many()
                .col_expr(api_key::Column::OwnerId, Expr::value(sea_orm::Value::from(owner.0)))
                .filter(api_key::Column::TenantId.eq(tenant.0))
                .filter(api_key::Column::Id.is_in(chunk.iter().map(|k| k.0)))
                .exec(self.conn())
                .await?;
        }
        Ok(())
    }

    /// Records a leak report of `key` (`token_digest`: SHA-256 of the leaked
    /// token) unless this key and token were reported before (a unique
    /// index): whether it was recorded now.
    pub async fn insert_leak_report(
        &self,
        key: ApiKeyId,
        token_digest: &str,
        reporter: &str,
        url: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let now = storable(now);
        let report = leak_report::ActiveModel {
            id: Set(latchkey_domain::ids::time_ordered_uuid(now)),
            key_id: Set(key.0),
            token_digest: Set(token_digest.to_owned()),
            source: Set(reporter.to_owned()),
            url: Set(url.map(str::to_owned)),
            reported_at: Set(now),
        };
        let inserted = leak_report::Entity::insert(report)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([leak_report::Column::KeyId, leak_report::Column::TokenDigest])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await?;
        Ok(inserted > 0)
    }

    /// Moves `key`'s expiry-notice stage forward to `stage`, only while its
    /// expiry is still `expires_at`, it is enabled and no one moved it
    /// there first: whether this claimed the notice.
    pub async fn claim_expiry_notice(
        &self,
        key: ApiKeyId,
        stage: NoticeStage,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let claimed = api_key::Entity::update_many()
            .col_expr(api_key::Column::ExpiryNoticeStage, Expr::value(stage))
            .filter(api_key::Column::Id.eq(key.0))
            .filter(api_key::Column::ExpiryNoticeStage.lt(stage))
            .filter(api_key::Column::ExpiresAt.eq(storable(expires_at)))
            .filter(api_key::Column::DisabledAt.is_null())
            .exec(self.conn())
            .await?;
        Ok(claimed.rows_affected > 0)
    }

    /// Whether the credential of `new` (its import lookup, else its lookup
    /// id) was written before.
    pub async fn import_state(&self, new: &NewKey) -> StoreResult<ImportState> {
        let identity = new.import_identity();
        if let Some(before) = imported_credential::Entity::find_by_id(identity.clone()).one(self.conn()).await? {
            let present = key_in(self.conn(), TenantId(before.tenant_id), ApiKeyId(before.key_id))
                .await?
                .is_some_and(|k| k.import_lookup.as_deref().unwrap_or(&k.lookup_id) == identity);
            return Ok(if present { ImportState::Present } else { ImportState::Retired });
        }
        let (current, previous, value) = match &new.import_lookup {
            Some(lookup) => (api_key::Column::ImportLookup, api_key::Column::PreviousImportLookup, lookup.as_str()),
            None => (api_key::Column::LookupId, api_key::Column::PreviousLookupId, new.credential.lookup_id.as_str()),
        };
        let exists = api_key::Entity::find()
            .filter(Condition::any().add(current.eq(value)).add(previous.eq(value)))
            .one(self.conn())
            .await?;
        Ok(if exists.is_some() { ImportState::Present } else { ImportState::New })
    }

    /// Remembers that `key` was imported with `identity` (see
    /// [`NewKey::import_identity`]), so that credential is never written again.
    pub async fn remember_import(&self, identity: String, key: &ApiKey, now: DateTime<Utc>) -> StoreResult<()> {
        imported_credential::ActiveModel {
            lookup: Set(identity),
            tenant_id: Set(key.tenant_id.0),
            key_id: Set(key.id.0),
            imported_at: Set(storable(now)),
        }
        .insert(self.conn())
        .await?;
        Ok(())
    }

    /// After a conditional update of one key: the key as it is now, and
    /// whether the update changed it.
    async fn written(&self, tenant: TenantId, id: ApiKeyId, rows_affected: u64) -> StoreResult<Written<ApiKey>> {
        Ok(match key_in(self.conn(), tenant, id).await?.map(key_from) {
            None => Written::NotFound,
            Some(key) if rows_affected == 0 => Written::Unchanged(key),
            Some(key) => Written::Done(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::contains_pattern;

    #[test]
    fn like_wildcards_in_search_terms_are_escaped() {
        let built = format!("{:?}", contains_pattern("50%_off\\"));
        assert!(built.contains(r"%50\\%\\_off\\\\%"), "{built}");
    }
}
