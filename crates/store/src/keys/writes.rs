//! The writes of a key's lifecycle, inside a unit of work the application
//! opened: insert, rotate, edit, delete, expiry, disable, restrictions,
//! compromise, transfer, expiry notices and imports. None of them decides
//! what a change means (audit, notices, revocations): the application does.

use chrono::{DateTime, Utc};
use latchkey_domain::key_policy::UnusedWarning;
use latchkey_domain::restrictions::Restrictions;
use latchkey_domain::{ApiKey, ApiKeyId, Description, DisabledReason, TenantId, User, UserId};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, Set};

use super::row::{NewCredential, NewKey, api_key, key_from};
use super::table::{NoticeStage, key_in};
use crate::entities::{imported_credential, leak_report};
use crate::tx::{Tx, Written};
use crate::users::user_in;
use crate::{Store, StoreError, StoreResult, storable};

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
    /// Whether the kept secret stops as soon as the new one first verifies.
    pub end_overlap_on_first_use: bool,
}

impl Store {
    /// Inserts a key made before key management existed: no creator, no last
    /// edit, no event. Used by imports and the demo.
    pub async fn import_legacy_key(&self, new: NewKey, created_at: DateTime<Utc>) -> StoreResult<ApiKey> {
        let created_at = storable(created_at);
        let model = new.into_model(created_at, None).insert(self.conn()).await?;
        Ok(key_from(model))
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

/// The key `id` of `tenant`, as a condition.
fn the_key(tenant: TenantId, id: ApiKeyId) -> Condition {
    Condition::all().add(api_key::Column::Id.eq(id.0)).add(api_key::Column::TenantId.eq(tenant.0))
}

/// An enabled key neither created, used nor enabled after `idle_since`.
pub(super) fn still_idle_since(idle_since: DateTime<Utc>) -> Condition {
    let not_after = |column: api_key::Column| column.is_null().or(column.lte(idle_since));
    Condition::all()
        .add(api_key::Column::DisabledAt.is_null())
        .add(api_key::Column::CompromisedAt.is_null())
        .add(api_key::Column::CreatedAt.lte(idle_since))
        .add(not_after(api_key::Column::LastUsedAt))
        .add(not_after(api_key::Column::EnabledAt))
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
        let Rotation { credential, expires_at, previous_until, end_overlap_on_first_use } = rotation;
        let end_overlap_on_first_use = end_overlap_on_first_use && previous_until.is_some();
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
            .col_expr(api_key::Column::EndOverlapOnFirstUse, Expr::value(end_overlap_on_first_use))
            .col_expr(api_key::Column::LastEditedAt, Expr::value(now))
            .col_expr(api_key::Column::LastEditedBy, Expr::value(edited_by.0))
            .filter(the_key(tenant, id))
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
            .filter(the_key(tenant, id))
            .exec(self.conn())
            .await?;
        Ok(key_in(self.conn(), tenant, id).await?.map(key_from))
    }

    /// Deletes a key; whether this deleted it (false when a concurrent
    /// delete won, or there was none).
    pub async fn delete_key(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<bool> {
        let deleted = api_key::Entity::delete_many().filter(the_key(tenant, id)).exec(self.conn()).await?;
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
            .col_expr(api_key::Column::EndOverlapOnFirstUse, Expr::value(false))
            .filter(the_key(tenant, id))
            .filter(api_key::Column::PreviousExpiresAt.gt(now))
            .exec(self.conn())
            .await?;
        self.written(tenant, id, updated.rows_affected).await
    }

    /// [`Tx::end_previous_secret`] for a key whose previous secret stops on
    /// the first use of its current one, only while its current credential
    /// is still `version` and that rule still holds.
    pub async fn end_previous_secret_on_first_use(
        &self,
        id: ApiKeyId,
        version: i32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ApiKey>> {
        let now = storable(now);
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::PreviousExpiresAt, Expr::value(now))
            .col_expr(api_key::Column::EndOverlapOnFirstUse, Expr::value(false))
            .filter(api_key::Column::Id.eq(id.0))
            .filter(api_key::Column::CredentialVersion.eq(version))
            .filter(api_key::Column::EndOverlapOnFirstUse.eq(true))
            .filter(api_key::Column::PreviousExpiresAt.gt(now))
            .exec(self.conn())
            .await?;
        if updated.rows_affected == 0 {
            return Ok(None);
        }
        Ok(api_key::Entity::find_by_id(id.0).one(self.conn()).await?.map(key_from))
    }

    /// Records a self-rotation of `id` at `now`, only while its current
    /// credential is `version`, it may rotate itself, and it did not since
    /// `not_since`; whether it was recorded (the caller then rotates it in
    /// the same transaction). Concurrent claims of one key: one wins.
    pub async fn claim_self_rotation(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        version: i32,
        not_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let not_since = storable(not_since);
        let claimed = api_key::Entity::update_many()
            .col_expr(api_key::Column::SelfRotatedAt, Expr::value(storable(now)))
            .filter(the_key(tenant, id))
            .filter(api_key::Column::CredentialVersion.eq(version))
            .filter(api_key::Column::SelfRotation.eq(true))
            .filter(api_key::Column::SelfRotatedAt.is_null().or(api_key::Column::SelfRotatedAt.lte(not_since)))
            .exec(self.conn())
            .await?;
        Ok(claimed.rows_affected > 0)
    }

    /// Sets whether a key may rotate itself (and its last edit); the key as
    /// it is now.
    pub async fn set_key_self_rotation(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        allowed: bool,
        edited_by: UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Written<ApiKey>> {
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::SelfRotation, Expr::value(allowed))
            .col_expr(api_key::Column::LastEditedAt, Expr::value(storable(now)))
            .col_expr(api_key::Column::LastEditedBy, Expr::value(edited_by.0))
            .filter(the_key(tenant, id))
            .filter(api_key::Column::SelfRotation.ne(allowed))
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
            .filter(the_key(tenant, id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Disables a key at `now` for `reason`, or enables it (`None`: which
    /// restarts its unused-key clock and drops the warning), unless it
    /// already is so.
    pub async fn set_key_disabled(
        &self,
        tenant: TenantId,
        id: ApiKeyId,
        reason: Option<DisabledReason>,
        now: DateTime<Utc>,
    ) -> StoreResult<Written<ApiKey>> {
        let now = storable(now);
        let update = api_key::Entity::update_many().filter(the_key(tenant, id));
        let update = match reason {
            Some(reason) => update
                .col_expr(api_key::Column::DisabledAt, Expr::value(now))
                .col_expr(api_key::Column::DisabledReason, Expr::value(reason.as_str()))
                .filter(api_key::Column::DisabledAt.is_null()),
            None => update
                .col_expr(api_key::Column::DisabledAt, Expr::value(Option::<DateTime<Utc>>::None))
                .col_expr(api_key::Column::DisabledReason, Expr::value(Option::<String>::None))
                .col_expr(api_key::Column::EnabledAt, Expr::value(now))
                .col_expr(api_key::Column::UnusedWarnedFor, Expr::value(Option::<DateTime<Utc>>::None))
                .col_expr(api_key::Column::UnusedDisableAt, Expr::value(Option::<DateTime<Utc>>::None))
                .filter(api_key::Column::DisabledAt.is_not_null()),
        };
        let updated = update.exec(self.conn()).await?;
        self.written(tenant, id, updated.rows_affected).await
    }

    /// Records `warning` as sent for `key`, unless it was already (another
    /// replica's pass) or the key was used, enabled or disabled meanwhile;
    /// whether this call recorded it.
    pub async fn claim_unused_warning(&self, key: ApiKeyId, warning: UnusedWarning) -> StoreResult<bool> {
        let idle_since = storable(warning.idle_since);
        let claimed = api_key::Entity::update_many()
            .col_expr(api_key::Column::UnusedWarnedFor, Expr::value(idle_since))
            .col_expr(api_key::Column::UnusedDisableAt, Expr::value(storable(warning.disable_at)))
            .filter(api_key::Column::Id.eq(key.0))
            .filter(still_idle_since(idle_since))
            .filter(api_key::Column::UnusedWarnedFor.is_null().or(api_key::Column::UnusedWarnedFor.ne(idle_since)))
            .exec(self.conn())
            .await?;
        Ok(claimed.rows_affected > 0)
    }

    /// Disables `key` at `now` for going unused since `idle_since` (its
    /// owner was warned for that), unless it was used, enabled or disabled
    /// meanwhile; whether this call disabled it.
    pub async fn disable_unused_key(
        &self,
        key: ApiKeyId,
        idle_since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let idle_since = storable(idle_since);
        let disabled = api_key::Entity::update_many()
            .col_expr(api_key::Column::DisabledAt, Expr::value(storable(now)))
            .col_expr(api_key::Column::DisabledReason, Expr::value(DisabledReason::Unused.as_str()))
            .filter(api_key::Column::Id.eq(key.0))
            .filter(still_idle_since(idle_since))
            .filter(api_key::Column::UnusedWarnedFor.eq(idle_since))
            .exec(self.conn())
            .await?;
        Ok(disabled.rows_affected > 0)
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
            .filter(the_key(tenant, id))
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
