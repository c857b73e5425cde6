//! The tenant's key policy: read and replaced by its internal admins
//! (audited), and held against every key change that could break it.

use chrono::{DateTime, Utc};
use latchkey_domain::key_policy::KeyPolicy;
use latchkey_domain::{ApiKeyId, AuditEntry, Notice, NoticeId, NoticeKind, User};

use crate::change::Change;
use crate::error::AppResult;
use crate::keys::{FieldViolation, KeyAdmin, Outcome};

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
    /// keep working and are marked (`KeyView::policy_violations`).
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
        change.commit().await?;
        tracing::info!(tenant = %self.actor.tenant_id, "key policy changed");
        Ok(Ok(policy))
    }
}
