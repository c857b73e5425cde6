//! Owners who leave: deactivating and reactivating users, and giving keys to
//! another owner. A deactivated user's keys are kept but suspended (the
//! verifier refuses them with `OWNER_INACTIVE`); every replica's cache
//! forgets them in the transaction that suspends them.

use chrono::{DateTime, Utc};
use latchkey_domain::{ApiKey, ApiKeyId, AuditAction, AuditEntry, KeyEvent, KeyEventKind, TenantId, User, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use sea_orm::{TransactionTrait, Value};

use crate::audit::insert_audit;
use crate::entities::{api_key, user};
use crate::events::insert_event;
use crate::keys::{KeyChange, key_from, locked_key, owner_of};
use crate::revocations::notify_revocation;
use crate::users::user_in;
use crate::{Store, StoreResult, storable};

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
    /// Deactivates (`active: false`) or reactivates a user of `tenant`. A
    /// deactivation suspends the keys it owns on every replica at once (their
    /// revocation is sent in this transaction); a reactivation lets the keys
    /// it still owns work again.
    pub async fn set_user_active(
        &self,
        tenant: TenantId,
        id: UserId,
        active: bool,
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
            for key in &keys {
                notify_revocation(&txn, *key).await?;
            }
        }
        txn.commit().await?;
        Ok(ActivityChange::Done(user, keys))
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

async fn keys_owned_by<C: ConnectionTrait>(conn: &C, tenant: TenantId, owner: UserId) -> StoreResult<Vec<ApiKeyId>> {
    let ids: Vec<uuid::Uuid> = api_key::Entity::find()
        .select_only()
        .column(api_key::Column::Id)
        .filter(api_key::Column::TenantId.eq(tenant.0))
        .filter(api_key::Column::OwnerId.eq(owner.0))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(ids.into_iter().map(ApiKeyId).collect())
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
