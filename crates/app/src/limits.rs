//! The limit use cases of an internal admin: a key's rate limits and
//! credits, top-ups, and an owner's shared rate limits. Every change applies
//! on every replica at once (its keys' cached verifications are dropped, and
//! their credits read again before the next spend).

use latchkey_domain::error::ViolationCode;
use latchkey_domain::limits::{KeyCredits, MAX_CREDITS, RateLimits};
use latchkey_domain::{ApiKey, ApiKeyId, AuditChange, AuditEntry, Notice, NoticeKind, User, UserId};

use crate::change::Change;
use crate::error::AppResult;
use crate::keys::{
    FieldViolation, KeyAdmin, KeyCreditsInput, KeyView, Outcome, RateLimitInput, checked_credits, checked_rate_limits,
};

/// Replace a key's rate limits, its credits, or both.
#[derive(Clone, Debug, Default)]
pub struct UpdateLimits {
    /// The key's id, as given.
    pub id: String,
    /// Its rate limits from now on (none: unchanged; empty: no limits).
    pub rate_limits: Option<Vec<RateLimitInput>>,
    /// Its credits from now on (none: unchanged; `Some(None)`: unlimited).
    pub credits: Option<Option<KeyCreditsInput>>,
}

/// Add credits to a key.
#[derive(Clone, Debug, Default)]
pub struct AddCredits {
    /// The key's id, as given.
    pub id: String,
    /// How many.
    pub amount: i64,
}

/// Replace an owner's shared rate limits.
#[derive(Clone, Debug, Default)]
pub struct SetOwnerRateLimits {
    /// The user's id, as given.
    pub owner_id: String,
    /// The limits all of its keys share from now on (empty: none).
    pub rate_limits: Vec<RateLimitInput>,
}

/// How a key's limits read in mail and the audit trail.
fn described(key: &ApiKey) -> String {
    format!("{}; {}", key.rate_limits.describe(), KeyCredits::describe(key.credits.as_ref()))
}

impl KeyAdmin<'_> {
    /// Replaces a key's rate limits and credits; the owner is mailed the
    /// before and after. Credits set here start a new period (what replicas
    /// held of the old credits is void).
    pub async fn update_limits(&self, command: UpdateLimits) -> AppResult<Outcome<KeyView>> {
        let now = self.app.clock.now();
        let mut violations = Vec::new();
        let id = command.id.parse::<ApiKeyId>().ok();
        if id.is_none() {
            violations.push(FieldViolation::key_not_found());
        }
        let rate_limits = command.rate_limits.as_deref().map(|given| checked_rate_limits(given, &mut violations));
        let (Some(id), true) = (id, violations.is_empty()) else {
            return Ok(Err(violations));
        };
        let mut change = Change::begin(self.app).await?;
        let Some(before) = change.locked_key(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let generation = before.credits.as_ref().map_or(0, |c| c.generation) + 1;
        let credits = match command.credits {
            None => before.credits.clone(),
            Some(None) => None,
            Some(Some(given)) => checked_credits(given, now, generation, &mut violations),
        };
        if !violations.is_empty() {
            return Ok(Err(violations));
        }
        let rate_limits = rate_limits.unwrap_or_else(|| before.rate_limits.clone());
        if rate_limits == before.rate_limits && credits == before.credits {
            return Ok(Ok(self.view(before).await?));
        }
        change.set_key_rate_limits(self.actor.tenant_id, id, &rate_limits, self.actor.id, now).await?;
        change.write_credits(id, credits.as_ref()).await?;
        let key = ApiKey {
            rate_limits,
            credits,
            last_edited_at: Some(now),
            last_edited_by: Some(self.actor.id),
            ..before.clone()
        };
        let (was, is) = (described(&before), described(&key));
        let owner = change.owner_of(&key).await?;
        let mut notice = Notice::new(NoticeKind::LimitsChanged, &key, &owner, self.actor, now);
        notice.before_after = Some((was.clone(), is.clone()));
        change.mail(&notice).await?;
        change
            .audit(&AuditEntry::new(AuditChange::LimitsChanged { before: was, after: is }, &key, self.actor, now))
            .await?;
        change.key_changed(&key).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// Adds credits to a key that has credits (exact under concurrent
    /// top-ups: each adds under the key's row lock). The period and what
    /// replicas hold stay as they are; a key out of credits works again.
    pub async fn add_credits(&self, command: AddCredits) -> AppResult<Outcome<KeyView>> {
        let amount = match KeyCredits::check_top_up(command.amount) {
            Ok(amount) => amount,
            Err(problem) => return Ok(Err(vec![FieldViolation { field: "amount", violation: problem.violation }])),
        };
        let Ok(id) = command.id.parse::<ApiKeyId>() else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let now = self.app.clock.now();
        let mut change = Change::begin(self.app).await?;
        let Some(key) = change.locked_key(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let Some(stored) = key.credits.clone() else {
            let message = "This key's credits are unlimited; give it credits first.";
            return Ok(Err(vec![FieldViolation::new("id", ViolationCode::Invalid, message)]));
        };
        let mut credits = stored.as_of(now);
        if credits.remaining + amount > MAX_CREDITS {
            let message = format!("A key holds at most {MAX_CREDITS} credits.");
            return Ok(Err(vec![FieldViolation::new("amount", ViolationCode::Invalid, message)]));
        }
        credits.remaining += amount;
        credits.allotment += amount;
        change.write_credits(id, Some(&credits)).await?;
        let key = ApiKey { credits: Some(credits), ..key };
        change.audit(&AuditEntry::new(AuditChange::CreditsAdded { amount }, &key, self.actor, now)).await?;
        change.key_changed(&key).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// The shared rate limits of a user of the tenant (none when unknown).
    pub async fn owner_rate_limits(&self, owner: UserId) -> AppResult<Option<RateLimits>> {
        Ok(self.app.store.owner_rate_limits(self.actor.tenant_id, owner).await?)
    }

    /// Replaces the rate limits every key of a user shares.
    pub async fn set_owner_rate_limits(&self, command: SetOwnerRateLimits) -> AppResult<Outcome<(User, RateLimits)>> {
        let not_found = || vec![FieldViolation::new("ownerId", ViolationCode::NotFound, "User not found.")];
        let mut violations = Vec::new();
        let limits = checked_rate_limits(&command.rate_limits, &mut violations);
        let Ok(owner_id) = command.owner_id.parse::<UserId>() else { return Ok(Err(not_found())) };
        if !violations.is_empty() {
            return Ok(Err(violations));
        }
        let tenant = self.actor.tenant_id;
        let mut change = Change::begin(self.app).await?;
        let (Some(before), Some(owner)) =
            (change.locked_owner_rate_limits(tenant, owner_id).await?, self.app.store.user(tenant, owner_id).await?)
        else {
            return Ok(Err(not_found()));
        };
        if before == limits {
            return Ok(Ok((owner, limits)));
        }
        change.set_owner_rate_limits(tenant, owner_id, &limits).await?;
        let now = self.app.clock.now();
        let entry = AuditEntry::owner_limits_changed(self.actor, &owner, before.describe(), limits.describe(), now);
        change.audit(&entry).await?;
        for key in change.locked_keys_owned_by(tenant, owner_id).await? {
            change.key_changed(&key).await?;
        }
        change.commit().await?;
        Ok(Ok((owner, limits)))
    }
}
