//! The tenant's key policy: read and replaced by its internal admins
//! (audited), and held against every key change that could break it.

use chrono::{DateTime, SecondsFormat, Utc};
use latchkey_domain::key_policy::{KeyPolicy, UnusedStep};
use latchkey_domain::lifecycle::system_actor;
use latchkey_domain::webhook_events::fields;
use latchkey_domain::webhooks::WebhookEventType;
use latchkey_domain::{
    ApiKey, ApiKeyId, AuditChange, AuditEntry, DisabledReason, Notice, NoticeId, NoticeKind, Suspension, User,
};

use crate::App;
use crate::change::Change;
use crate::error::AppResult;
use crate::keys::{FieldViolation, KeyAdmin, Outcome};

/// How many of an owner's keys that break a new policy their mail lists.
pub const KEYS_LISTED: u64 = 20;

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The notice telling `admin` the policy changed: about no key (nil id).
fn policy_changed_notice(admin: &User, actor: &User, before_after: (String, String), at: DateTime<Utc>) -> Notice {
    Notice {
        id: NoticeId::new_at(at),
        kind: NoticeKind::PolicyChanged,
        tenant_id: admin.tenant_id,
        key_id: ApiKeyId(uuid::Uuid::nil()),
        key_description: "key policy".to_owned(),
        key_last_four: String::new(),
        owner_id: admin.id,
        owner_email: admin.email.clone(),
        owner_name: admin.name.clone(),
        actor_id: actor.id,
        actor_name: actor.name.clone(),
        occurred_at: at,
        key_expires_at: None,
        previous_secret_expires_at: None,
        before_after: Some(before_after),
        leak: None,
        owner_change: None,
        suspension: None,
    }
}

impl KeyAdmin<'_> {
    /// The tenant's key policy.
    pub async fn key_policy(&self) -> AppResult<KeyPolicy> {
        Ok(self.app.store.key_policy(self.actor.tenant_id).await?)
    }

    /// Replaces the tenant's key policy whole; audited, and each active
    /// internal admin is mailed the rules before and after. Keys that break it
    /// keep working and are marked (`KeyView::policy_violations`); each of
    /// their owners is mailed once, listing them (the first
    /// [`KEYS_LISTED`], with how many in all).
    pub async fn update_key_policy(&self, policy: KeyPolicy) -> AppResult<Outcome<KeyPolicy>> {
        if let Err(problems) = policy.check() {
            return Ok(Err(problems
                .into_iter()
                .map(|(field, violation)| FieldViolation { field, violation })
                .collect()));
        }
        let mut change = Change::begin(self.app).await?;
        let before = change.locked_key_policy(self.actor.tenant_id).await?;
        if before == policy {
            return Ok(Ok(policy));
        }
        change.set_key_policy(self.actor.tenant_id, &policy).await?;
        let now = self.app.clock.now();
        let (was, is) = (before.describe(), policy.describe());
        let entry = AuditEntry::setting_changed(self.actor, "keyPolicy", was.clone(), is.clone(), now);
        change.audit(&entry).await?;
        for admin in change.active_internal_admins(self.actor.tenant_id).await? {
            change.mail(&policy_changed_notice(&admin, self.actor, (was.clone(), is.clone()), now)).await?;
        }
        if let Some(breaches) = policy.breaches(now) {
            let tenant = self.actor.tenant_id;
            for (owner, count) in change.owners_of_keys_breaching(tenant, &breaches).await? {
                let Some(owner) = change.user(tenant, owner).await? else { continue };
                let keys = change.keys_of_owner_breaching(tenant, owner.id, &breaches, KEYS_LISTED).await?;
                let mut notice = policy_changed_notice(&owner, self.actor, (count.to_string(), is.clone()), now);
                notice.kind = NoticeKind::KeysBreakPolicy;
                notice.suspension = Some(Suspension {
                    user_id: owner.id,
                    user_name: owner.name.clone(),
                    keys: keys.into_iter().map(|k| (k.last_four, k.description)).collect(),
                });
                change.mail(&notice).await?;
            }
        }
        change.commit().await?;
        tracing::info!(tenant = %self.actor.tenant_id, "key policy changed");
        Ok(Ok(policy))
    }
}

impl App {
    /// Applies each tenant's unused-key rule (`disableUnusedAfterDays`) at
    /// the clock's now, at most `limit` keys per tenant: owners warned a
    /// week ahead, then keys disabled by the system (`disabledReason`
    /// `UNUSED`), audited, mailed and published. Every replica may run this
    /// at once: each warning and each disabling happens once (claimed by a
    /// conditional update that also fails if the key was used or enabled
    /// meanwhile). Returns how many warnings and disablings it made.
    pub async fn apply_unused_key_rule(&self, limit: u64) -> AppResult<usize> {
        let now = self.clock.now();
        let mut steps = 0;
        for (tenant, policy) in self.store.key_policies().await? {
            let Some(before) = policy.unused_due_before(now) else { continue };
            for key in self.store.keys_idle_since_before(tenant, before, now, limit).await? {
                let done = match policy.unused_step(&key, now) {
                    UnusedStep::Wait => false,
                    UnusedStep::Warn(warning) => self.warn_unused(&key, warning, now).await?,
                    UnusedStep::Disable => self.disable_unused(&key, &policy, now).await?,
                };
                steps += usize::from(done);
            }
        }
        Ok(steps)
    }

    async fn warn_unused(
        &self,
        key: &ApiKey,
        warning: latchkey_domain::key_policy::UnusedWarning,
        now: DateTime<Utc>,
    ) -> AppResult<bool> {
        let mut change = Change::begin(self).await?;
        if !change.claim_unused_warning(key.id, warning).await? {
            return Ok(false);
        }
        let owner = change.owner_of(key).await?;
        let mut notice = Notice::new(NoticeKind::UnusedWarning, key, &owner, &system_actor(key.tenant_id), now);
        notice.before_after = Some((iso(warning.idle_since), iso(warning.disable_at)));
        change.mail(&notice).await?;
        change.commit().await?;
        Ok(true)
    }

    async fn disable_unused(&self, key: &ApiKey, policy: &KeyPolicy, now: DateTime<Utc>) -> AppResult<bool> {
        let mut change = Change::begin(self).await?;
        let idle_since = key.idle_since();
        if !change.disable_unused_key(key.id, idle_since, now).await? {
            return Ok(false);
        }
        let key = ApiKey { disabled_at: Some(now), disabled_reason: Some(DisabledReason::Unused), ..key.clone() };
        let actor = system_actor(key.tenant_id);
        let owner = change.owner_of(&key).await?;
        let mut notice = Notice::new(NoticeKind::DisabledUnused, &key, &owner, &actor, now);
        let days = policy.disable_unused_after_days.unwrap_or_default().to_string();
        notice.before_after = Some((iso(idle_since), days));
        change.mail(&notice).await?;
        let reason = fields([("reason", DisabledReason::Unused.as_str().into())]);
        change.publish_key_event(WebhookEventType::KeyDisabled, &key, &actor, now, reason).await?;
        change.audit(&AuditEntry::new(AuditChange::Disabled, &key, &actor, now)).await?;
        change.revoke(&key).await?;
        change.commit().await?;
        tracing::info!(tenant = %key.tenant_id, key = %key.id, "unused key disabled by the key policy");
        Ok(true)
    }
}
