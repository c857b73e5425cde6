//! Owners who leave: deactivating and reactivating users, and giving keys to
//! another owner. A deactivated user's keys are kept but suspended (the
//! verifier refuses them with `OWNER_INACTIVE`); every replica's cache
//! forgets them in the transaction that suspends them.

use chrono::{DateTime, Utc};
use latchkey_domain::{
    ApiKey, ApiKeyId, AuditAction, AuditEntry, KeyEvent, KeyEventKind, Suspension, TenantId, User, UserId,
};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use sea_orm::{TransactionTrait, Value};

use crate::audit::insert_audit;
use crate::entities::{api_key, user};
use crate::events::insert_event;
use crate::keys::{KeyChange, key_from, locked_key, owner_of};
use crate::revocations::notify_revocation;
use crate::users::{active_internal_admins, user_from, user_in};
use crate::{Store, StoreResult, storable};

/// Which users of a tenant the directory lists.
#[derive(Clone, Debug, Default)]
pub struct UserFilter {
    /// Only users whose name or email contains this (case-insensitive).
    pub search: Option<latchkey_domain::SearchTerm>,
    /// Only users of this role.
    pub role: Option<latchkey_domain::Role>,
    /// Only active (true) or deactivated (false) users.
    pub active: Option<bool>,
}

/// A page of the directory: users in creation order, each with how many keys
/// it owns, whether more follow, and how many match in all.
#[derive(Clone, Debug)]
pub struct UserPage {
    /// The users and their key counts.
    pub users: Vec<(User, u64)>,
    /// Whether more users follow.
    pub has_next_page: bool,
    /// Users matching the filter in all.
    pub total_count: u64,
}

/// What deactivating or reactivating a user did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActivityChange {
    /// Done: the user as it is now, and the keys it owns (suspended by a
    /// deactivation, working again after a reactivation).
    Done(User, Vec<ApiKeyId>),
    /// It already was so.
    Unchanged(User),
    /// No such user in the tenant.
    NotFound,
}

impl Store {
    /// A page of `tenant`'s users under `filter`, after the user `after`, in
    /// creation order (ids are time-ordered), with their key counts in the
    /// same query.
    pub async fn users_page(
        &self,
        tenant: TenantId,
        filter: &UserFilter,
        after: Option<UserId>,
        first: u64,
    ) -> StoreResult<UserPage> {
        use sea_orm::PaginatorTrait;
        let mut select = user::Entity::find().filter(user::Column::TenantId.eq(tenant.0));
        if let Some(term) = &filter.search {
            let pattern = || crate::keys::contains_pattern(&term.as_str().to_lowercase());
            let name = Expr::expr(sea_orm::sea_query::Func::lower(Expr::col(user::Column::Name))).like(pattern());
            select =
                select.filter(sea_orm::Condition::any().add(name).add(Expr::col(user::Column::Email).like(pattern())));
        }
        if let Some(role) = filter.role {
            select = select.filter(user::Column::Role.eq(role.as_str()));
        }
        match filter.active {
            Some(true) => select = select.filter(user::Column::DeactivatedAt.is_null()),
            Some(false) => select = select.filter(user::Column::DeactivatedAt.is_not_null()),
            None => {}
        }
        let total_count = select.clone().count(self.reader()).await?;
        if let Some(after) = after {
            select = select.filter(user::Column::Id.gt(after.0));
        }
        let rows: Vec<(user::Model, Option<i64>)> = select
            .order_by_asc(user::Column::Id)
            .limit(first + 1)
            .column_as(Expr::cust("(SELECT COUNT(*) FROM api_keys WHERE api_keys.owner_id = users.id)"), "key_count")
            .into_model::<UserWithKeyCount>()
            .all(self.reader())
            .await?
            .into_iter()
            .map(|row| (row.user(), row.key_count))
            .collect();
        let has_next_page = rows.len() as u64 > first;
        let users = rows
            .into_iter()
            .take(usize::try_from(first).unwrap_or(usize::MAX))
            .map(|(model, count)| Ok((user_from(model)?, count.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(UserPage { users, has_next_page, total_count })
    }

    /// The ids of the keys `owner` of `tenant` owns.
    pub async fn key_ids_owned_by(&self, tenant: TenantId, owner: UserId) -> StoreResult<Vec<ApiKeyId>> {
        Ok(keys_owned_by(self.reader(), tenant, owner).await?.into_iter().map(|k| k.id).collect())
    }

    /// How many keys `owner` of `tenant` owns.
    pub async fn key_count_of(&self, tenant: TenantId, owner: UserId) -> StoreResult<u64> {
        use sea_orm::PaginatorTrait;
        Ok(api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::OwnerId.eq(owner.0))
            .count(self.reader())
            .await?)
    }

    /// Deactivates (`active: false`) or reactivates a user of `tenant`, as
    /// `actor`. A deactivation suspends the keys it owns on every replica at
    /// once (their revocation is sent in this transaction) and, when there
    /// are any, queues one notice listing them to each active internal admin
    /// of the tenant; a reactivation lets the keys it still owns work again.
    pub async fn set_user_active(
        &self,
        tenant: TenantId,
        id: UserId,
        active: bool,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<ActivityChange> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let (value, currently) = if active {
            (None, user::Column::DeactivatedAt.is_not_null())
        } else {
            (Some(now), user::Column::DeactivatedAt.is_null())
        };
        let updated = user::Entity::update_many()
            .col_expr(user::Column::DeactivatedAt, Expr::value(value))
            .filter(user::Column::Id.eq(id.0))
            .filter(user::Column::TenantId.eq(tenant.0))
            .filter(currently)
            .exec(&txn)
            .await?;
        let Some(user) = user_in(&txn, tenant, id).await? else {
            txn.rollback().await?;
            return Ok(ActivityChange::NotFound);
        };
        if updated.rows_affected == 0 {
            txn.rollback().await?;
            return Ok(ActivityChange::Unchanged(user));
        }
        let keys = keys_owned_by(&txn, tenant, id).await?;
        if !active {
            suspend(&txn, &user, &keys, actor, now).await?;
        }
        txn.commit().await?;
        Ok(ActivityChange::Done(user, keys.iter().map(|k| k.id).collect()))
    }

    /// Changes a user's role (operators). A role that may not own keys
    /// suspends the keys it owns exactly as a deactivation does (revoked on
    /// every replica, the admins told); a role that may restores them. Returns
    /// the user as it is now and the keys it owns; `None` for no such user.
    pub async fn set_user_role(
        &self,
        tenant: TenantId,
        id: UserId,
        role: latchkey_domain::Role,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(User, Vec<ApiKeyId>)>> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let Some(before) = user_in(&txn, tenant, id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        user::Entity::update_many()
            .col_expr(user::Column::Role, Expr::value(role.as_str()))
            .filter(user::Column::Id.eq(id.0))
            .filter(user::Column::TenantId.eq(tenant.0))
            .exec(&txn)
            .await?;
        let user = User { role, ..before.clone() };
        apply_key_consequences(&txn, &before, &user, actor, now).await?;
        let keys = keys_owned_by(&txn, tenant, id).await?;
        txn.commit().await?;
        Ok(Some((user, keys.iter().map(|k| k.id).collect())))
    }

    /// Gives a key to `new_owner`, whom the caller has checked may own it. The
    /// secret is unchanged; the old and the new owner are mailed, the change
    /// is audited, and every replica's cache forgets the key (it cached the
    /// old owner). A suspended key works again at once.
    pub async fn transfer_key(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        new_owner: &User,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<KeyChange> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let Some(before) = locked_key(&txn, tenant, id).await?.map(key_from) else {
            txn.rollback().await?;
            return Ok(KeyChange::NotFound);
        };
        if before.owner_id == new_owner.id {
            txn.rollback().await?;
            return Ok(KeyChange::Unchanged(before));
        }
        let old_owner = owner_of(&txn, &before).await?;
        set_owner(&txn, tenant, &[id], new_owner.id).await?;
        let key = ApiKey { owner_id: new_owner.id, ..before };
        record_transfer(&txn, &key, &old_owner, new_owner, actor, now).await?;
        txn.commit().await?;
        Ok(KeyChange::Done(key))
    }

    /// Gives every key of `from` to `to` in one transaction, as
    /// [`Store::transfer_key`] does for one. Returns the keys moved.
    pub async fn transfer_keys(
        &self,
        tenant: TenantId,
        from: &User,
        to: &User,
        actor: &User,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<ApiKey>> {
        let now = storable(now);
        let txn = self.conn().begin().await?;
        let mut select = api_key::Entity::find()
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::OwnerId.eq(from.id.0))
            .order_by_asc(api_key::Column::Id);
        if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
            select = select.lock_exclusive();
        }
        let keys: Vec<ApiKey> = select.all(&txn).await?.into_iter().map(key_from).collect();
        let ids: Vec<ApiKeyId> = keys.iter().map(|k| k.id).collect();
        set_owner(&txn, tenant, &ids, to.id).await?;
        let mut moved = Vec::with_capacity(keys.len());
        for before in keys {
            let key = ApiKey { owner_id: to.id, ..before };
            record_transfer(&txn, &key, from, to, actor, now).await?;
            moved.push(key);
        }
        txn.commit().await?;
        Ok(moved)
    }
}

/// Suspends `keys` of `user` (deactivated, or demoted to a role that may not
/// own keys): every replica's cache forgets them, and each active internal
/// admin of the tenant is told once which keys stopped working.
async fn suspend(
    txn: &DatabaseTransaction,
    user: &User,
    keys: &[ApiKey],
    actor: &User,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    for key in keys {
        notify_revocation(txn, key.id).await?;
    }
    let Some(first) = keys.first() else { return Ok(()) };
    let suspension = Suspension {
        user_id: user.id,
        user_name: user.name.clone(),
        keys: keys.iter().map(|k| (k.last_four.clone(), k.description.clone())).collect(),
    };
    for admin in active_internal_admins(txn, user.tenant_id).await? {
        let mut notice = KeyEvent::new(KeyEventKind::KeysSuspended, first, &admin, actor, now);
        notice.suspension = Some(suspension.clone());
        insert_event(txn, &notice).await?;
    }
    Ok(())
}

/// What a change of a user's state means for the keys it owns: losing the
/// right to own keys (deactivated, demoted) suspends them (see [`suspend`]);
/// any other change of that right or of the role revokes their cached
/// verifications, which carry what the owner may do.
pub(crate) async fn apply_key_consequences(
    txn: &DatabaseTransaction,
    before: &User,
    after: &User,
    actor: &User,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let may = latchkey_domain::policy::owner_may_use_keys;
    if may(before) == may(after) && before.role == after.role {
        return Ok(());
    }
    let keys = keys_owned_by(txn, after.tenant_id, after.id).await?;
    if may(before) && !may(after) {
        suspend(txn, after, &keys, actor, now).await
    } else {
        for key in &keys {
            notify_revocation(txn, key.id).await?;
        }
        Ok(())
    }
}

/// A user row and its key count.
#[derive(sea_orm::FromQueryResult)]
struct UserWithKeyCount {
    id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    email: String,
    name: String,
    role: String,
    created_at: DateTime<Utc>,
    deactivated_at: Option<DateTime<Utc>>,
    external_id: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    updated_at: Option<DateTime<Utc>>,
    version: i32,
    deleted_at: Option<DateTime<Utc>>,
    scim_managed: bool,
    key_count: Option<i64>,
}

impl UserWithKeyCount {
    fn user(&self) -> user::Model {
        user::Model {
            id: self.id,
            tenant_id: self.tenant_id,
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role.clone(),
            created_at: self.created_at,
            deactivated_at: self.deactivated_at,
            external_id: self.external_id.clone(),
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            updated_at: self.updated_at,
            version: self.version,
            deleted_at: self.deleted_at,
            scim_managed: self.scim_managed,
        }
    }
}

async fn keys_owned_by<C: ConnectionTrait>(conn: &C, tenant: TenantId, owner: UserId) -> StoreResult<Vec<ApiKey>> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::TenantId.eq(tenant.0))
        .filter(api_key::Column::OwnerId.eq(owner.0))
        .order_by_asc(api_key::Column::Id)
        .all(conn)
        .await?
        .into_iter()
        .map(key_from)
        .collect())
}

async fn set_owner(txn: &DatabaseTransaction, tenant: TenantId, keys: &[ApiKeyId], owner: UserId) -> StoreResult<()> {
    for chunk in keys.chunks(500) {
        api_key::Entity::update_many()
            .col_expr(api_key::Column::OwnerId, Expr::value(Value::from(owner.0)))
            .filter(api_key::Column::TenantId.eq(tenant.0))
            .filter(api_key::Column::Id.is_in(chunk.iter().map(|k| k.0)))
            .exec(txn)
            .await?;
    }
    Ok(())
}

/// The mail to both owners, the audit entry and the revocation of a transfer.
async fn record_transfer(
    txn: &DatabaseTransaction,
    key: &ApiKey,
    old_owner: &User,
    new_owner: &User,
    actor: &User,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let change = Some((old_owner.name.clone(), new_owner.name.clone()));
    for recipient in [old_owner, new_owner] {
        let mut event = KeyEvent::new(KeyEventKind::OwnerChanged, key, recipient, actor, now);
        event.owner_change = change.clone();
        insert_event(txn, &event).await?;
    }
    let mut entry = AuditEntry::new(AuditAction::OwnerChanged, key, actor, now);
    entry.owner_change = change;
    insert_audit(txn, &entry).await?;
    notify_revocation(txn, key.id).await
}
