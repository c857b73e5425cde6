//! The tenant's key policy: read and replaced by its internal admins
//! (audited), and held against every key change that could break it.

use latchkey_domain::AuditEntry;
use latchkey_domain::error::{Violation, ViolationCode};
use latchkey_domain::key_policy::{KeyPolicy, PolicyRefusal};

use crate::change::Change;
use crate::error::AppResult;
use crate::keys::{FieldViolation, KeyAdmin, Outcome};

impl From<PolicyRefusal> for FieldViolation {
    fn from(refusal: PolicyRefusal) -> Self {
        FieldViolation { field: refusal.field, violation: Violation::new(ViolationCode::Policy, refusal.message) }
    }
}

/// The refusals among `checks`, as field violations; `None` when the change keeps the policy.
pub(crate) fn refusals(checks: impl IntoIterator<Item = Option<PolicyRefusal>>) -> Option<Vec<FieldViolation>> {
    let refused: Vec<FieldViolation> = checks.into_iter().flatten().map(Into::into).collect();
    (!refused.is_empty()).then_some(refused)
}

/// The policy as the audit trail shows it.
fn described(policy: &KeyPolicy) -> String {
    serde_json::to_string(policy).unwrap_or_default()
}

impl KeyAdmin<'_> {
    /// The tenant's key policy.
    pub async fn key_policy(&self) -> AppResult<KeyPolicy> {
        Ok(self.app.store.key_policy(self.actor.tenant_id).await?)
    }

    /// Replaces the tenant's key policy whole; audited. Keys that break it
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
        let entry = AuditEntry::setting_changed(self.actor, "keyPolicy", described(&before), described(&policy), now);
        change.audit(&entry).await?;
        change.commit().await?;
        tracing::info!(tenant = %self.actor.tenant_id, "key policy changed");
        Ok(Ok(policy))
    }
}
