//! Owners who leave, and keys that change hands: transfers, deactivation and
//! reactivation, role changes. A user who may no longer own keys keeps them,
//! suspended (the verifier answers `OWNER_INACTIVE`); [`user_changed`] is the
//! one rule for what a change of a user means for its keys, applied by every
//! front end that changes users (admins, SCIM, operators).

use chrono::{DateTime, Utc};
use latchkey_domain::error::ViolationCode;
use latchkey_domain::key_signals::KeySignalKind;
use latchkey_domain::{
    ApiKey, ApiKeyId, AuditChange, AuditEntry, Notice, NoticeKind, SearchTerm, Suspension, TenantId, User, UserId,
    policy,
};
use latchkey_store::Written;

use crate::App;
use latchkey_domain::webhook_events::{WebhookEvent, fields, user_field};
use latchkey_domain::webhooks::WebhookEventType;
use serde_json::Map;

use crate::change::Change;
use crate::error::{AppError, AppResult};
use crate::keys::{
    FieldViolation, KeyAdmin, KeyView, Outcome, Page, SetUserActive, TransferKey, TransferKeys, UserDirectoryQuery,
    page_size,
};

impl KeyAdmin<'_> {
    /// Gives a key to another eligible owner; the secret is unchanged, and a
    /// suspended key works again at once. The old and the new owner are
    /// mailed. Giving it to its owner changes nothing.
    pub async fn transfer(&self, command: TransferKey) -> AppResult<Outcome<KeyView>> {
        let mut violations = Vec::new();
        let id = command.id.parse::<ApiKeyId>().ok();
        if id.is_none() {
            violations.push(FieldViolation::key_not_found());
        }
        let owner = self.eligible_owner(&command.owner_id, "ownerId", &mut violations).await?;
        let (Some(id), Some(owner)) = (id, owner) else { return Ok(Err(violations)) };
        let mut change = Change::begin(self.app).await?;
        let Some(before) = change.locked_key(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        if before.owner_id == owner.id {
            return Ok(Ok(self.view(before).await?));
        }
        let owned = change.count_keys_owned_by(self.actor.tenant_id, owner.id).await?;
        if let Some(refused) = change.key_policy(self.actor.tenant_id).await?.check_owner_count(owned, "ownerId") {
            return Ok(Err(vec![refused.into()]));
        }
        let old_owner = change.owner_of(&before).await?;
        change.set_keys_owner(self.actor.tenant_id, &[id], owner.id).await?;
        let key = ApiKey { owner_id: owner.id, ..before };
        transferred(&mut change, &key, &old_owner, &owner, self.actor, self.app.clock.now()).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// Gives every key of one user (active or not) to an eligible owner in
    /// one unit of work, as [`KeyAdmin::transfer`] does for one. Returns the
    /// keys moved.
    pub async fn transfer_all(&self, command: TransferKeys) -> AppResult<Outcome<Vec<KeyView>>> {
        let tenant = self.actor.tenant_id;
        let mut violations = Vec::new();
        let from = match command.from_owner_id.parse::<UserId>() {
            Ok(id) => self.app.store.user(tenant, id).await?,
            Err(_) => None,
        };
        if from.is_none() {
            violations.push(FieldViolation::new("fromOwnerId", ViolationCode::NotFound, "User not found."));
        }
        let to = self.eligible_owner(&command.to_owner_id, "toOwnerId", &mut violations).await?;
        let (Some(from), Some(to)) = (from, to) else { return Ok(Err(violations)) };
        if from.id == to.id {
            let same = "The keys already belong to this user.";
            return Ok(Err(vec![FieldViolation::new("toOwnerId", ViolationCode::Invalid, same)]));
        }
        let now = self.app.clock.now();
        let mut change = Change::begin(self.app).await?;
        let keys = change.locked_keys_owned_by(tenant, from.id).await?;
        let owned = change.count_keys_owned_by(tenant, to.id).await?;
        let after_moving = (owned + keys.len() as u64).saturating_sub(1);
        if !keys.is_empty()
            && let Some(refused) = change.key_policy(tenant).await?.check_owner_count(after_moving, "toOwnerId")
        {
            return Ok(Err(vec![refused.into()]));
        }
        let ids: Vec<ApiKeyId> = keys.iter().map(|k| k.id).collect();
        change.set_keys_owner(tenant, &ids, to.id).await?;
        let mut moved = Vec::with_capacity(keys.len());
        for before in keys {
            let key = ApiKey { owner_id: to.id, ..before };
            transferred(&mut change, &key, &from, &to, self.actor, now).await?;
            moved.push(key);
        }
        change.commit().await?;
        Ok(Ok(self.views(moved).await?))
    }

    /// Deactivates a user of the tenant (its keys are suspended on every
    /// replica at once, and it may no longer sign in) or reactivates it (the
    /// keys it still owns work again). An admin cannot deactivate itself.
    pub async fn set_user_active(&self, command: SetUserActive) -> AppResult<Outcome<User>> {
        let not_found = || vec![FieldViolation::new("id", ViolationCode::NotFound, "User not found.")];
        let Ok(id) = command.id.parse::<UserId>() else { return Ok(Err(not_found())) };
        if id == self.actor.id && !command.active {
            let message = "You cannot deactivate yourself; ask another internal admin.";
            return Ok(Err(vec![FieldViolation::new("id", ViolationCode::Invalid, message)]));
        }
        match self.app.set_user_active(self.actor.tenant_id, id, command.active, self.actor).await? {
            Written::Done((user, _)) | Written::Unchanged((user, _)) => Ok(Ok(user)),
            Written::NotFound => Ok(Err(not_found())),
        }
    }

    /// Links a user of the tenant to SCIM provisioning (or unlinks it). SCIM
    /// sees and changes only the users it created and those linked here, so
    /// an identity provider's key cannot take over an admin made elsewhere.
    pub async fn set_user_scim_managed(&self, id: &str, managed: bool) -> AppResult<Outcome<User>> {
        let not_found = || vec![FieldViolation::new("id", ViolationCode::NotFound, "User not found.")];
        let Ok(id) = id.parse::<UserId>() else { return Ok(Err(not_found())) };
        if !self.app.store.set_user_scim_managed(self.actor.tenant_id, id, managed).await? {
            return Ok(Err(not_found()));
        }
        tracing::info!(user = %id, actor = %self.actor.id, managed, "user's SCIM link changed");
        match self.app.store.user(self.actor.tenant_id, id).await? {
            Some(user) => Ok(Ok(user)),
            None => Ok(Err(not_found())),
        }
    }

    /// The tenant's users in creation order, each with how many keys it owns.
    pub async fn users(&self, query: UserDirectoryQuery) -> AppResult<Page<(User, u64)>> {
        let first = page_size(query.first)?;
        let after = match query.after.as_deref().map(str::parse::<UserId>) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => return Err(AppError::BadUserInput("`after` is not a valid cursor.".into())),
        };
        let search = SearchTerm::parse(query.search.as_deref().unwrap_or_default())
            .map_err(|_| AppError::BadUserInput("`search` is too long (maximum is 255 characters).".into()))?;
        let filter = latchkey_store::UserFilter { search, role: query.role, active: query.active };
        let page = self.app.store.users_page(self.actor.tenant_id, &filter, after, first).await?;
        Ok(Page {
            items: page.users,
            has_next_page: page.has_next_page,
            total_count: page.total_count,
            count_capped: false,
        })
    }

    /// How many keys `user` of this tenant owns (0 for an unknown user).
    pub async fn key_count_of(&self, user: UserId) -> AppResult<u64> {
        Ok(self.app.store.key_count_of(self.actor.tenant_id, user).await?)
    }
}

impl App {
    /// Deactivates or reactivates a user of `tenant`, as `actor` (checked by
    /// the caller: [`KeyAdmin::set_user_active`] or an operator). The user
    /// as it is now and the keys it owns, whose cached verifications are
    /// dropped on every replica; a deactivation mails the tenant's internal
    /// admins the list (see [`user_changed`]).
    pub(crate) async fn set_user_active(
        &self,
        tenant: TenantId,
        user: UserId,
        active: bool,
        actor: &User,
    ) -> AppResult<Written<(User, Vec<ApiKeyId>)>> {
        let now = self.clock.now();
        let mut change = Change::begin(self).await?;
        let after = match change.set_user_deactivated(tenant, user, (!active).then_some(now)).await? {
            Written::Done(after) => after,
            Written::Unchanged(user) => return Ok(Written::Unchanged((user, Vec::new()))),
            Written::NotFound => return Ok(Written::NotFound),
        };
        let before = User { active: !active, ..after.clone() };
        let keys = user_changed(&mut change, &before, &after, actor, now).await?;
        change.commit().await?;
        Ok(Written::Done((after, keys)))
    }
}

/// What a change of a user (written in `change`) means for the keys it
/// owns: losing the right to own keys (deactivated, demoted) suspends them —
/// every replica's cache forgets them and each active internal admin of the
/// tenant is told once which keys stopped working; any other change of that
/// right or of the role drops their cached verifications, which carry what
/// the owner may do. Returns the keys it owns.
pub(crate) async fn user_changed(
    change: &mut Change<'_>,
    before: &User,
    after: &User,
    actor: &User,
    now: DateTime<Utc>,
) -> AppResult<Vec<ApiKeyId>> {
    let keys = change.locked_keys_owned_by(after.tenant_id, after.id).await?;
    let user_event = match (before.active, after.active) {
        (true, false) => Some(WebhookEventType::UserDeactivated),
        (false, true) => Some(WebhookEventType::UserReactivated),
        _ => None,
    };
    if let Some(event) = user_event {
        change.publish(WebhookEvent::about_user(event, after, &keys, actor, now)).await?;
    }
    let may = policy::owner_may_use_keys;
    if may(before) == may(after) && before.role == after.role {
        return Ok(keys.iter().map(|k| k.id).collect());
    }
    // Suspended keys stop; a new role or a reactivated owner changes answers.
    let kind = if may(before) && !may(after) { KeySignalKind::Revoked } else { KeySignalKind::Changed };
    for key in &keys {
        change.signal(key, kind).await?;
    }
    if may(before)
        && !may(after)
        && let Some(first) = keys.first()
    {
        let suspension = Suspension {
            user_id: after.id,
            user_name: after.name.clone(),
            keys: keys.iter().map(|k| (k.last_four.clone(), k.description.clone())).collect(),
        };
        for key in &keys {
            let event = WebhookEvent::about_key(WebhookEventType::KeySuspended, key, after, actor, now, Map::new());
            change.publish(event).await?;
        }
        for admin in change.active_internal_admins(after.tenant_id).await? {
            let mut notice = Notice::new(NoticeKind::KeysSuspended, first, &admin, actor, now);
            notice.suspension = Some(suspension.clone());
            change.mail(&notice).await?;
        }
    }
    Ok(keys.iter().map(|k| k.id).collect())
}

/// What a transfer of `key` writes beside the new owner: the notice to both
/// owners, the audit entry, the revocation (caches hold the old owner).
async fn transferred(
    change: &mut Change<'_>,
    key: &ApiKey,
    old_owner: &User,
    new_owner: &User,
    actor: &User,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let names = (old_owner.name.clone(), new_owner.name.clone());
    for recipient in [old_owner, new_owner] {
        let mut notice = Notice::new(NoticeKind::OwnerChanged, key, recipient, actor, now);
        notice.owner_change = Some(names.clone());
        change.mail(&notice).await?;
    }
    let previous = fields([("previousOwner", user_field(old_owner))]);
    let event = WebhookEvent::about_key(WebhookEventType::KeyOwnerChanged, key, new_owner, actor, now, previous);
    change.publish(event).await?;
    let (before, after) = names;
    change.audit(&AuditEntry::new(AuditChange::OwnerChanged { before, after }, key, actor, now)).await?;
    change.key_changed(key).await
}
