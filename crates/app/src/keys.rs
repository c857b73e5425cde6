//! The key use cases of an internal admin: generate, rotate, edit, delete,
//! and reading the key table and the audit trail. Reachable only through a
//! [`KeyAdmin`], which [`crate::App::key_admin`] hands out after the
//! permission check.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use latchkey_domain::error::{Violation, ViolationCode};
use latchkey_domain::hashing::hash_secret;
use latchkey_domain::key_signals::KeySignalKind;
use latchkey_domain::limits::{CreditRefill, KeyCredits, LimitProblem, RateLimits, RefillInterval};
use latchkey_domain::restrictions::Restrictions;
use latchkey_domain::{
    ApiKey, ApiKeyId, ApiKeySecret, AuditChange, AuditEntry, Description, DisabledReason, DomainError, Notice,
    NoticeKind, SearchTerm, User, UserId, policy,
};
use latchkey_domain::{KeyStatus, lifecycle};
use latchkey_store::{
    KeyCursor, KeyOrderField, KeyQuery, NewCredential, NewKey, Rotation, StoreError, Written, storable,
};

use crate::App;
use latchkey_domain::webhook_events::{fields, time_field};
use latchkey_domain::webhooks::WebhookEventType;
use serde_json::Map;

use crate::change::Change;
use crate::error::{AppError, AppResult};

/// Largest page of the key table and the audit trail.
pub const MAX_PAGE_SIZE: i32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: i32 = 50;

/// A refused input, attached to the input field it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// The input field (`description`, `ownerId`, `id`).
    pub field: &'static str,
    /// What is wrong.
    pub violation: Violation,
}

impl FieldViolation {
    pub(crate) fn new(field: &'static str, code: ViolationCode, message: impl Into<String>) -> Self {
        FieldViolation { field, violation: Violation::new(code, message) }
    }

    pub(crate) fn key_not_found() -> Self {
        Self::new("id", ViolationCode::NotFound, "API key not found.")
    }
}

/// Either the result or the list of refused inputs (nothing was changed).
pub type Outcome<T> = Result<T, Vec<FieldViolation>>;

/// Generate a key for an owner.
#[derive(Clone, Debug, Default)]
pub struct GenerateKey {
    /// The owner's id, as given.
    pub owner_id: String,
    /// The description, as given.
    pub description: String,
    /// When it stops working (none: never); in the future, at most 366 days ahead.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it may do, where and from where (none: unrestricted).
    pub restrictions: Option<RestrictionsInput>,
    /// Its own rate limits (none: unlimited).
    pub rate_limits: Vec<RateLimitInput>,
    /// Its credits (none: unlimited).
    pub credits: Option<KeyCreditsInput>,
    /// Whether it may rotate itself (`POST /v1/keys/rotate`).
    pub self_rotation: bool,
}

/// Allow or forbid a key to rotate itself.
#[derive(Clone, Debug)]
pub struct SetSelfRotation {
    /// The key's id, as given.
    pub id: String,
    /// Whether it may.
    pub self_rotation: bool,
}

/// A rate limit as an admin gives it.
#[derive(Clone, Debug, Default)]
pub struct RateLimitInput {
    /// Its name, unique among the limits given with it.
    pub name: String,
    /// Units per period.
    pub limit: i64,
    /// The period, in seconds.
    pub period_seconds: i64,
}

/// Credits as an admin gives them.
#[derive(Clone, Copy, Debug)]
pub struct KeyCreditsInput {
    /// How many the key has now.
    pub remaining: i64,
    /// Their refill, if any.
    pub refill: Option<CreditRefillInput>,
}

/// A refill as an admin gives it.
#[derive(Clone, Copy, Debug)]
pub struct CreditRefillInput {
    /// What the credits are set to at each refill.
    pub amount: i64,
    /// Daily or monthly.
    pub interval: RefillInterval,
    /// For a monthly refill, the day of the month.
    pub day: Option<i64>,
}

/// Restrictions as an admin gives them; an omitted part is unrestricted.
#[derive(Clone, Debug, Default)]
pub struct RestrictionsInput {
    /// Permission names (none: every permission).
    pub permissions: Option<Vec<String>>,
    /// Clouds (none: both).
    pub clouds: Option<Vec<latchkey_domain::Cloud>>,
    /// Addresses or CIDR blocks (none or empty: any address).
    pub allowed_ips: Option<Vec<String>>,
}

/// Replace a key's restrictions.
#[derive(Clone, Debug)]
pub struct UpdateRestrictions {
    /// The key's id, as given.
    pub id: String,
    /// The new restrictions.
    pub restrictions: RestrictionsInput,
}

/// Give a key a new secret.
#[derive(Clone, Debug, Default)]
pub struct RotateKey {
    /// The key's id, as given.
    pub id: String,
    /// How long the replaced secret keeps working, in seconds (none or 0: it
    /// stops at once; at most 7 days).
    pub overlap_seconds: Option<i32>,
    /// The key's expiry from now on, as for [`GenerateKey::expires_at`].
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the replaced secret stops as soon as the new one first
    /// verifies (or at the overlap's end, whichever comes first).
    pub end_overlap_on_first_use: bool,
}

/// End a rotation's overlap now.
#[derive(Clone, Debug)]
pub struct ExpirePreviousSecret {
    /// The key's id, as given.
    pub id: String,
}

/// Set or clear a key's expiry.
#[derive(Clone, Debug)]
pub struct SetExpiry {
    /// The key's id, as given.
    pub id: String,
    /// The new expiry (none: never), as for [`GenerateKey::expires_at`].
    pub expires_at: Option<DateTime<Utc>>,
}

/// Switch a key off or back on.
#[derive(Clone, Debug)]
pub struct SetDisabled {
    /// The key's id, as given.
    pub id: String,
    /// Off (true) or on (false).
    pub disabled: bool,
}

/// Give a key to another owner (the secret is unchanged).
#[derive(Clone, Debug)]
pub struct TransferKey {
    /// The key's id, as given.
    pub id: String,
    /// The new owner's id, as given.
    pub owner_id: String,
}

/// Give every key of one owner to another, at once.
#[derive(Clone, Debug)]
pub struct TransferKeys {
    /// The current owner's id, as given (active or not).
    pub from_owner_id: String,
    /// The new owner's id, as given.
    pub to_owner_id: String,
}

/// A page of the tenant's user directory.
#[derive(Clone, Debug, Default)]
pub struct UserDirectoryQuery {
    /// Page size, 1 to [`MAX_PAGE_SIZE`] (default [`DEFAULT_PAGE_SIZE`]).
    pub first: Option<i32>,
    /// Continue after this user (its id, as given).
    pub after: Option<String>,
    /// Only users whose name or email contains this, ignoring case.
    pub search: Option<String>,
    /// Only users of this role.
    pub role: Option<latchkey_domain::Role>,
    /// Only active (true) or deactivated (false) users.
    pub active: Option<bool>,
}

/// Deactivate or reactivate a user of the admin's tenant.
#[derive(Clone, Debug)]
pub struct SetUserActive {
    /// The user's id, as given.
    pub id: String,
    /// Reactivate (true) or deactivate (false).
    pub active: bool,
}

/// Change a key's description.
#[derive(Clone, Debug)]
pub struct EditDescription {
    /// The key's id, as given.
    pub id: String,
    /// The new description, as given.
    pub description: String,
}

/// Delete a key.
#[derive(Clone, Debug)]
pub struct DeleteKey {
    /// The key's id, as given.
    pub id: String,
}

/// A page request on the key table.
#[derive(Clone, Debug, Default)]
pub struct KeyTableQuery {
    /// Page size, 1 to [`MAX_PAGE_SIZE`] (default [`DEFAULT_PAGE_SIZE`]).
    pub first: Option<i32>,
    /// Continue after this key (a previous page's last, under the same order).
    pub after: Option<KeyCursor>,
    /// The order (default: creation).
    pub order: KeyOrderField,
    /// Ascending rather than descending (the default).
    pub ascending: bool,
    /// Only keys in one of these states (empty: all).
    pub statuses: Vec<KeyStatus>,
    /// Only keys of this owner (as given; one that cannot exist owns nothing).
    pub owner_id: Option<String>,
    /// Only keys whose description contains this, ignoring case.
    pub search: Option<String>,
    /// Only keys with no successful verification in this many days (1 to
    /// 3650; a key never used counts from its creation).
    pub unused_for_days: Option<i32>,
    /// Only keys that break the tenant's key policy (see `KeyPolicy::violations`).
    pub violates_policy: bool,
    /// Whether to count the matching keys (`Page::total_count`; 0 when not
    /// asked): a count reads every match it counts, up to
    /// [`MAX_EXACT_KEY_COUNT`], the page only what it shows.
    pub count_total: bool,
}

/// The most keys a key table counts: past it, `Page::total_count` is this
/// and `Page::count_capped` is set (what GitLab does past 10,000 rows).
/// Counting ten million keys takes about a second; ten thousand, 5 ms.
pub const MAX_EXACT_KEY_COUNT: u64 = 10_000;

/// The most days `unusedForDays` looks back.
pub const MAX_UNUSED_FOR_DAYS: i32 = 3_650;

/// A page request on the audit trail.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only entries of this key (as given; which may have been deleted).
    pub key_id: Option<String>,
    /// Page size, as for [`KeyTableQuery::first`].
    pub first: Option<i32>,
    /// Only entries older than this one.
    pub after: Option<uuid::Uuid>,
}

/// A key with the users it names, ready to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyView {
    /// The key.
    pub key: ApiKey,
    /// Its owner.
    pub owner: User,
    /// Who created it (none for keys from before key management).
    pub created_by: Option<User>,
    /// Who last edited it (none for keys from before key management).
    pub last_edited_by: Option<User>,
    /// Its status when the view was made.
    pub status: KeyStatus,
    /// Until when its previous secret works, if it still does.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// Its successful verifications in the last 30 days, where the view was
    /// made with them (the key table).
    pub usage_30d: Option<u64>,
    /// The rules of the tenant's key policy it breaks (`maxLifetimeDays`,
    /// `requireExpiry`, `requireRestrictions`): it keeps working.
    pub policy_violations: Vec<&'static str>,
}

impl KeyView {
    /// What an integration may see of its own key: the key, and its owner's
    /// id, name and role. Not who created or edited it, and no one's email:
    /// admins' contact details are not an integration's business.
    pub(crate) fn redacted_for_integration(mut self) -> Self {
        self.created_by = None;
        self.last_edited_by = None;
        self.owner.email.clear();
        self
    }
}

/// An audit entry with its actor, if that user still exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditView {
    /// The entry.
    pub entry: AuditEntry,
    /// Who did it.
    pub actor: Option<User>,
}

/// One page, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether older items follow.
    pub has_next_page: bool,
    /// All items matching the filters (see `count_capped`).
    pub total_count: u64,
    /// Whether more items match than `total_count` (a count that stopped at
    /// its cap).
    pub count_capped: bool,
}

impl<T> Page<T> {
    fn empty() -> Self {
        Page { items: Vec::new(), has_next_page: false, total_count: 0, count_capped: false }
    }
}

/// A key with the secret that was just made for it. The secret is shown once.
#[derive(Debug)]
pub struct KeyWithSecret {
    /// The key.
    pub key: KeyView,
    /// The new secret.
    pub secret: ApiKeySecret,
}

/// How many times a lookup-id collision is retried (each is ~2^-71 likely).
const GENERATE_ATTEMPTS: usize = 3;

/// Checks a page size.
pub fn page_size(first: Option<i32>) -> AppResult<u64> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(AppError::BadUserInput(format!("`first` must be between 1 and {MAX_PAGE_SIZE}.")));
    }
    Ok(u64::try_from(first).unwrap_or(1))
}

fn new_credential() -> AppResult<(ApiKeySecret, NewCredential)> {
    let secret = ApiKeySecret::generate().map_err(DomainError::from)?;
    let credential = NewCredential::new(&secret, hash_secret(&secret));
    Ok((secret, credential))
}

impl From<latchkey_domain::key_policy::PolicyRefusal> for FieldViolation {
    fn from(refusal: latchkey_domain::key_policy::PolicyRefusal) -> Self {
        FieldViolation {
            field: refusal.field,
            violation: latchkey_domain::error::Violation::new(ViolationCode::Policy, refusal.message),
        }
    }
}

/// The refusals among `checks`, as field violations; `None` when the change keeps the policy.
fn policy_refusals(
    checks: impl IntoIterator<Item = Option<latchkey_domain::key_policy::PolicyRefusal>>,
) -> Option<Vec<FieldViolation>> {
    let refused: Vec<FieldViolation> = checks.into_iter().flatten().map(Into::into).collect();
    (!refused.is_empty()).then_some(refused)
}

/// Where a fresh secret goes.
pub(crate) enum SecretTarget {
    /// A new key.
    NewKey {
        owner: UserId,
        description: Description,
        expires_at: Option<DateTime<Utc>>,
        restrictions: Restrictions,
        rate_limits: RateLimits,
        credits: Option<KeyCredits>,
        self_rotation: bool,
    },
    /// An existing key, rotated.
    Rotate {
        id: ApiKeyId,
        expires_at: Option<DateTime<Utc>>,
        previous_until: Option<DateTime<Utc>>,
        end_overlap_on_first_use: bool,
        /// For a rotation by the key itself: the credential version it
        /// presented, and since when it must not have rotated itself.
        by_itself: Option<(i32, DateTime<Utc>)>,
    },
}

/// Checks an optional expiry for `field`.
fn checked_expiry(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    violations: &mut Vec<FieldViolation>,
) -> Option<DateTime<Utc>> {
    expires_at.and_then(|at| {
        lifecycle::expiry(at, now)
            .map_err(|violation| violations.push(FieldViolation { field: "expiresAt", violation }))
            .ok()
    })
}

/// Checks restrictions as given; refused entries become violations on
/// `restrictions.<part>`.
fn checked_restrictions(input: RestrictionsInput, violations: &mut Vec<FieldViolation>) -> Option<Restrictions> {
    let clouds = input.clouds.unwrap_or_else(|| latchkey_domain::Cloud::ALL.to_vec());
    let allowed_ips = input.allowed_ips.unwrap_or_default();
    Restrictions::parse(input.permissions.as_deref(), &clouds, &allowed_ips)
        .map_err(|problems| {
            violations.extend(problems.into_iter().map(|p| FieldViolation {
                field: match p.field {
                    "permissions" => "restrictions.permissions",
                    "clouds" => "restrictions.clouds",
                    _ => "restrictions.allowedIps",
                },
                violation: p.violation,
            }))
        })
        .ok()
}

/// Checks rate limits as given; problems become violations on `rateLimits.<field>`.
pub(crate) fn checked_rate_limits(given: &[RateLimitInput], violations: &mut Vec<FieldViolation>) -> RateLimits {
    let given: Vec<(String, i64, i64)> = given.iter().map(|l| (l.name.clone(), l.limit, l.period_seconds)).collect();
    RateLimits::parse(&given).unwrap_or_else(|problems| {
        violations.extend(problems.into_iter().map(|(_, p)| FieldViolation {
            field: match p.field {
                "name" => "rateLimits.name",
                "limit" => "rateLimits.limit",
                "periodSeconds" => "rateLimits.periodSeconds",
                _ => "rateLimits",
            },
            violation: p.violation,
        }));
        RateLimits::default()
    })
}

/// Checks credits as given, set at `now` as `generation`; problems become
/// violations on `credits.<field>`.
pub(crate) fn checked_credits(
    given: KeyCreditsInput,
    now: DateTime<Utc>,
    generation: i32,
    violations: &mut Vec<FieldViolation>,
) -> Option<KeyCredits> {
    let field = |problem: LimitProblem| FieldViolation {
        field: match problem.field {
            "refill.amount" => "credits.refill.amount",
            "refill.day" => "credits.refill.day",
            _ => "credits.remaining",
        },
        violation: problem.violation,
    };
    let remaining = KeyCredits::check_remaining(given.remaining).map_err(|p| violations.push(field(p))).ok();
    let refill = match given.refill {
        None => Some(None),
        Some(r) => CreditRefill::parse(r.amount, r.interval, r.day)
            .map(Some)
            .map_err(|problems| violations.extend(problems.into_iter().map(field)))
            .ok(),
    };
    Some(KeyCredits::set(remaining?, refill?, now, generation))
}

/// The user errors of a single-key change: the key as it is now, or why not
/// (`unchanged` when doing nothing is one).
fn written(written: Written<ApiKey>, unchanged: Option<FieldViolation>) -> Outcome<ApiKey> {
    match written {
        Written::Done(key) => Ok(key),
        Written::Unchanged(key) => unchanged.map_or(Ok(key), |v| Err(vec![v])),
        Written::NotFound => Err(vec![FieldViolation::key_not_found()]),
    }
}

/// An internal admin, checked, acting in their tenant.
#[derive(Clone, Copy, Debug)]
pub struct KeyAdmin<'a> {
    pub(crate) app: &'a App,
    pub(crate) actor: &'a User,
}

impl KeyAdmin<'_> {
    /// Writes a fresh secret to `target` in one unit of work with its audit
    /// entry, the owner's notice and (for a rotation) the revocation, with a
    /// new secret again should the lookup id be taken. `None` when the key
    /// to rotate does not exist.
    pub(crate) async fn write_new_secret(&self, target: SecretTarget) -> AppResult<Option<(ApiKey, ApiKeySecret)>> {
        let (tenant, now) = (self.actor.tenant_id, self.app.clock.now());
        for _ in 0..GENERATE_ATTEMPTS {
            let (secret, credential) = new_credential()?;
            let mut change = Change::begin(self.app).await?;
            let written = match &target {
                SecretTarget::NewKey {
                    owner,
                    description,
                    expires_at,
                    restrictions,
                    rate_limits,
                    credits,
                    self_rotation,
                } => {
                    let mut new = NewKey::new(tenant, *owner, description.clone(), credential)
                        .expiring_at(*expires_at)
                        .restricted_to(restrictions.clone())
                        .limited_to(rate_limits.clone(), credits.clone());
                    new.self_rotation = *self_rotation;
                    change.insert_key(new, now, Some(self.actor.id)).await.map(Some)
                }
                SecretTarget::Rotate { id, expires_at, previous_until, end_overlap_on_first_use, by_itself } => {
                    if let Some((version, not_since)) = by_itself
                        && !change.claim_self_rotation(tenant, *id, *version, *not_since, now).await?
                    {
                        return Ok(None);
                    }
                    let rotation = Rotation {
                        credential,
                        expires_at: *expires_at,
                        previous_until: *previous_until,
                        end_overlap_on_first_use: *end_overlap_on_first_use,
                    };
                    change.replace_credential(tenant, *id, rotation, self.actor.id, now).await
                }
            };
            let key = match written {
                Ok(Some(key)) => key,
                Ok(None) => return Ok(None),
                // The database message names the lookup id, a part of the new secret: not logged.
                Err(StoreError::Conflict(_)) => {
                    tracing::warn!("lookup id collision; retrying with a new secret");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let (kind, audited) = match target {
                SecretTarget::NewKey { .. } => (NoticeKind::Generated, AuditChange::Generated),
                SecretTarget::Rotate { .. } => {
                    (NoticeKind::Rotated, AuditChange::Rotated { previous_secret_until: key.previous_expires_at })
                }
            };
            change.mail_owner(kind, &key, self.actor, now).await?;
            change.audit(&AuditEntry::new(audited, &key, self.actor, now)).await?;
            let (event, fields) = match target {
                SecretTarget::NewKey { .. } => (WebhookEventType::KeyCreated, Map::new()),
                SecretTarget::Rotate { .. } => (
                    WebhookEventType::KeyRotated,
                    fields([("previousSecretExpiresAt", time_field(key.previous_expires_at))]),
                ),
            };
            change.publish_key_event(event, &key, self.actor, now, fields).await?;
            if matches!(target, SecretTarget::Rotate { .. }) {
                change.revoke(&key).await?;
            }
            change.commit().await?;
            return Ok(Some((key, secret)));
        }
        Err(AppError::internal(&"lookup id collided repeatedly"))
    }

    /// Generates a key; the owner is mailed.
    pub async fn generate(&self, command: GenerateKey) -> AppResult<Outcome<KeyWithSecret>> {
        let mut violations = Vec::new();
        let expires_at = checked_expiry(command.expires_at, self.app.clock.now(), &mut violations);
        let restrictions = checked_restrictions(command.restrictions.unwrap_or_default(), &mut violations);
        let rate_limits = checked_rate_limits(&command.rate_limits, &mut violations);
        let now = self.app.clock.now();
        let credits = command.credits.map(|given| checked_credits(given, now, 0, &mut violations));
        let description = Description::parse(&command.description)
            .map_err(|e| violations.push(FieldViolation { field: "description", violation: e.into() }))
            .ok();
        let owner = self.eligible_owner(&command.owner_id, "ownerId", &mut violations).await?;
        let (Some(owner), Some(description), Some(restrictions), true) =
            (owner, description, restrictions, violations.is_empty())
        else {
            return Ok(Err(violations));
        };
        let policy = self.key_policy().await?;
        let owned = self.app.store.count_keys_owned_by(self.actor.tenant_id, owner.id).await?;
        if let Some(refused) = policy_refusals([
            policy.check_expiry(expires_at, now),
            policy.check_permissions(restrictions.permissions.is_none()),
            policy.check_owner_count(owned, "ownerId"),
        ]) {
            return Ok(Err(refused));
        }
        let credits = credits.flatten();
        let target = SecretTarget::NewKey {
            owner: owner.id,
            description,
            expires_at,
            restrictions,
            rate_limits,
            credits,
            self_rotation: command.self_rotation,
        };
        let made = self.write_new_secret(target).await?;
        let Some((key, secret)) = made else { return Err(AppError::internal(&"a generated key was not written")) };
        Ok(Ok(KeyWithSecret { key: self.view(key).await?, secret }))
    }

    /// Gives a key a new secret. The old one stops working at once, here and
    /// on every replica, or after the overlap asked for (only a key that
    /// still works keeps its old secret working; never past its expiry). A
    /// previous secret kept by an earlier rotation stops at once. The key
    /// gets the expiry given (none: never). The owner is mailed.
    pub async fn rotate(&self, command: RotateKey) -> AppResult<Outcome<KeyWithSecret>> {
        let now = self.app.clock.now();
        let mut violations = Vec::new();
        let id = command.id.parse::<ApiKeyId>().ok();
        if id.is_none() {
            violations.push(FieldViolation::key_not_found());
        }
        let overlap = lifecycle::overlap(command.overlap_seconds.unwrap_or(0))
            .map_err(|violation| violations.push(FieldViolation { field: "overlapSeconds", violation }))
            .ok();
        let given_expiry = checked_expiry(command.expires_at, now, &mut violations);
        let (Some(id), Some(overlap), true) = (id, overlap, violations.is_empty()) else {
            return Ok(Err(violations));
        };
        let Some(current) = self.app.store.key(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        // Under a policy that wants an expiry, a rotation without one keeps
        // the key's expiry if it complies, else gets the latest allowed: the
        // rotated key always complies.
        let policy = self.key_policy().await?;
        let expires_at = match given_expiry {
            None if command.expires_at.is_none() && policy.expiry_required() => {
                policy.rotation_expiry(current.expires_at, now)
            }
            given => given,
        };
        if let Some(refused) = policy_refusals([
            policy.check_overlap(i64::from(command.overlap_seconds.unwrap_or(0))),
            policy.check_expiry(expires_at, now),
        ]) {
            return Ok(Err(refused));
        }
        let keeps_old = !overlap.is_zero() && self.view(current.clone()).await?.status == KeyStatus::Active;
        let previous_until = keeps_old.then(|| current.expires_at.map_or(now + overlap, |e| e.min(now + overlap)));
        let target = SecretTarget::Rotate {
            id,
            expires_at,
            previous_until,
            end_overlap_on_first_use: command.end_overlap_on_first_use,
            by_itself: None,
        };
        let Some((key, secret)) = self.write_new_secret(target).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        Ok(Ok(KeyWithSecret { key: self.view(key).await?, secret }))
    }

    /// Ends a rotation's overlap now: the previous secret answers `EXPIRED`
    /// at once, here and on every replica. `INVALID` when no previous secret
    /// still works.
    pub async fn expire_previous_secret(&self, command: ExpirePreviousSecret) -> AppResult<Outcome<KeyView>> {
        let Ok(id) = command.id.parse::<ApiKeyId>() else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let now = storable(self.app.clock.now());
        let mut change = Change::begin(self.app).await?;
        let nothing_to_end =
            FieldViolation::new("id", ViolationCode::Invalid, "This key has no previous secret that still works.");
        let key = match written(change.end_previous_secret(self.actor.tenant_id, id, now).await?, Some(nothing_to_end))
        {
            Ok(key) => key,
            Err(violations) => return Ok(Err(violations)),
        };
        change
            .audit(&AuditEntry::new(
                AuditChange::PreviousSecretExpired { at: now, new_secret_used: false },
                &key,
                self.actor,
                now,
            ))
            .await?;
        change.revoke(&key).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// Sets or clears a key's expiry (re-arming its expiry notices).
    pub async fn set_expiry(&self, command: SetExpiry) -> AppResult<Outcome<KeyView>> {
        let now = self.app.clock.now();
        let mut violations = Vec::new();
        let id = command.id.parse::<ApiKeyId>().ok();
        if id.is_none() {
            violations.push(FieldViolation::key_not_found());
        }
        let expires_at = checked_expiry(command.expires_at, now, &mut violations).map(storable);
        let (Some(id), true) = (id, violations.is_empty()) else {
            return Ok(Err(violations));
        };
        if let Some(refused) = self.key_policy().await?.check_expiry(expires_at, now) {
            return Ok(Err(vec![refused.into()]));
        }
        let mut change = Change::begin(self.app).await?;
        let Some(before) = change.locked_key(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        if before.expires_at == expires_at {
            return Ok(Ok(self.view(before).await?));
        }
        change.set_key_expiry(self.actor.tenant_id, id, expires_at).await?;
        let old = before.expires_at;
        let key = ApiKey { expires_at, ..before };
        change
            .audit(&AuditEntry::new(AuditChange::ExpiryChanged { old, new: expires_at }, &key, self.actor, now))
            .await?;
        change.key_changed(&key).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// Replaces a key's restrictions. They apply at once, here and on every
    /// replica; the owner is mailed the before and after.
    pub async fn update_restrictions(&self, command: UpdateRestrictions) -> AppResult<Outcome<KeyView>> {
        let mut violations = Vec::new();
        let id = command.id.parse::<ApiKeyId>().ok();
        if id.is_none() {
            violations.push(FieldViolation::key_not_found());
        }
        let restrictions = checked_restrictions(command.restrictions, &mut violations);
        let (Some(id), Some(restrictions), true) = (id, restrictions, violations.is_empty()) else {
            return Ok(Err(violations));
        };
        if let Some(refused) = self.key_policy().await?.check_permissions(restrictions.permissions.is_none()) {
            return Ok(Err(vec![refused.into()]));
        }
        let now = storable(self.app.clock.now());
        let mut change = Change::begin(self.app).await?;
        let Some(before) = change.locked_key(self.actor.tenant_id, id).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        if before.restrictions == restrictions {
            return Ok(Ok(self.view(before).await?));
        }
        change.set_key_restrictions(self.actor.tenant_id, id, &restrictions, self.actor.id, now).await?;
        let described = (before.restrictions.describe(), restrictions.describe());
        let key = ApiKey { restrictions, last_edited_at: Some(now), last_edited_by: Some(self.actor.id), ..before };
        let owner = change.owner_of(&key).await?;
        let mut notice = Notice::new(NoticeKind::RestrictionsChanged, &key, &owner, self.actor, now);
        notice.before_after = Some(described.clone());
        change.mail(&notice).await?;
        let (before, after) = described;
        let changed =
            fields([("restrictionsBefore", before.clone().into()), ("restrictionsAfter", after.clone().into())]);
        change.publish_key_event(WebhookEventType::KeyRestrictionsChanged, &key, self.actor, now, changed).await?;
        change
            .audit(&AuditEntry::new(AuditChange::RestrictionsChanged { before, after }, &key, self.actor, now))
            .await?;
        change.key_changed(&key).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// Disables or enables a key. A disabled key answers `DISABLED` at once,
    /// here and on every replica; enabling restores the same secret. The
    /// owner is mailed (doing what is already done changes and mails nothing).
    pub async fn set_disabled(&self, command: SetDisabled) -> AppResult<Outcome<KeyView>> {
        let Ok(id) = command.id.parse::<ApiKeyId>() else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let now = self.app.clock.now();
        let mut change = Change::begin(self.app).await?;
        let reason = command.disabled.then_some(DisabledReason::Admin);
        let key = match change.set_key_disabled(self.actor.tenant_id, id, reason, now).await? {
            Written::Done(key) => key,
            unchanged => return self.outcome(written(unchanged, None)).await,
        };
        let (kind, audited, event) = if command.disabled {
            (NoticeKind::Disabled, AuditChange::Disabled, WebhookEventType::KeyDisabled)
        } else {
            (NoticeKind::Enabled, AuditChange::Enabled, WebhookEventType::KeyEnabled)
        };
        change.mail_owner(kind, &key, self.actor, now).await?;
        change.publish_key_event(event, &key, self.actor, now, Map::new()).await?;
        change.audit(&AuditEntry::new(audited, &key, self.actor, now)).await?;
        change.signal(&key, if command.disabled { KeySignalKind::Revoked } else { KeySignalKind::Changed }).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// Allows or forbids a key to rotate itself (`POST /v1/keys/rotate`);
    /// audited, nobody mailed (doing what is already so changes nothing).
    pub async fn set_self_rotation(&self, command: SetSelfRotation) -> AppResult<Outcome<KeyView>> {
        let Ok(id) = command.id.parse::<ApiKeyId>() else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let now = self.app.clock.now();
        let mut change = Change::begin(self.app).await?;
        let tenant = self.actor.tenant_id;
        let key = match change.set_key_self_rotation(tenant, id, command.self_rotation, self.actor.id, now).await? {
            Written::Done(key) => key,
            unchanged => return self.outcome(written(unchanged, None)).await,
        };
        let allowed = AuditChange::SelfRotationChanged { allowed: command.self_rotation };
        change.audit(&AuditEntry::new(allowed, &key, self.actor, now)).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// Changes a key's description. Nobody is mailed.
    pub async fn edit_description(&self, command: EditDescription) -> AppResult<Outcome<KeyView>> {
        let mut violations = Vec::new();
        let id = command.id.parse::<ApiKeyId>().ok();
        if id.is_none() {
            violations.push(FieldViolation::key_not_found());
        }
        let description = Description::parse(&command.description)
            .map_err(|e| violations.push(FieldViolation { field: "description", violation: e.into() }))
            .ok();
        let (Some(id), Some(description)) = (id, description) else {
            return Ok(Err(violations));
        };
        let now = self.app.clock.now();
        let mut change = Change::begin(self.app).await?;
        let tenant = self.actor.tenant_id;
        let Some(before) = change.locked_key(tenant, id).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let Some(key) = change.set_key_description(tenant, id, &description, self.actor.id, now).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let previous = fields([("previousDescription", before.description.clone().into())]);
        change.publish_key_event(WebhookEventType::KeyDescriptionChanged, &key, self.actor, now, previous).await?;
        let edited = AuditChange::DescriptionChanged { old: before.description, new: description.into_string() };
        change.audit(&AuditEntry::new(edited, &key, self.actor, now)).await?;
        change.commit().await?;
        Ok(Ok(self.view(key).await?))
    }

    /// Deletes a key; its secret stops working at once. The owner is mailed.
    pub async fn delete(&self, command: DeleteKey) -> AppResult<Outcome<ApiKey>> {
        let Ok(id) = command.id.parse::<ApiKeyId>() else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        let now = self.app.clock.now();
        let mut change = Change::begin(self.app).await?;
        let tenant = self.actor.tenant_id;
        let Some(key) = change.locked_key(tenant, id).await? else {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        };
        // False when a concurrent delete won; it wrote the notice.
        if !change.delete_key(tenant, id).await? {
            return Ok(Err(vec![FieldViolation::key_not_found()]));
        }
        change.mail_owner(NoticeKind::Deleted, &key, self.actor, now).await?;
        change.publish_key_event(WebhookEventType::KeyDeleted, &key, self.actor, now, Map::new()).await?;
        change.audit(&AuditEntry::new(AuditChange::Deleted, &key, self.actor, now)).await?;
        change.revoke(&key).await?;
        change.commit().await?;
        Ok(Ok(key))
    }

    /// The user `raw` names if it may own keys of this tenant (an active
    /// internal admin or integration user); otherwise a violation on `field`.
    pub(crate) async fn eligible_owner(
        &self,
        raw: &str,
        field: &'static str,
        violations: &mut Vec<FieldViolation>,
    ) -> AppResult<Option<User>> {
        let tenant = self.actor.tenant_id;
        let owner = match raw.parse::<UserId>() {
            Ok(id) => self.app.store.user(tenant, id).await?,
            Err(_) => None,
        };
        match owner {
            None => violations.push(FieldViolation::new(field, ViolationCode::NotFound, "Owner not found.")),
            Some(owner) if !policy::may_own_keys(&owner, tenant) => violations.push(FieldViolation::new(
                field,
                ViolationCode::InvalidOwner,
                "The owner must be an active internal admin or integration user.",
            )),
            Some(owner) => return Ok(Some(owner)),
        }
        Ok(None)
    }

    /// One key of the tenant; `None` for an unknown or malformed id.
    pub async fn key(&self, id: &str) -> AppResult<Option<KeyView>> {
        let Ok(id) = id.parse() else { return Ok(None) };
        match self.app.store.key(self.actor.tenant_id, id).await? {
            Some(key) => Ok(Some(self.view(key).await?)),
            None => Ok(None),
        }
    }

    /// A page of the key table (newest first unless another order is asked).
    pub async fn key_table(&self, query: KeyTableQuery) -> AppResult<Page<KeyView>> {
        let first = page_size(query.first)?;
        let search = SearchTerm::parse(query.search.as_deref().unwrap_or_default())
            .map_err(|_| AppError::BadUserInput("`search` is too long (maximum is 255 characters).".into()))?;
        let owner = match query.owner_id.map(|raw| raw.parse::<UserId>()) {
            None => None,
            Some(Ok(id)) => Some(id),
            // An owner that cannot exist owns nothing: same as an unknown one.
            Some(Err(_)) => return Ok(Page::empty()),
        };
        let now = self.app.clock.now();
        let unused_since = match query.unused_for_days {
            None => None,
            Some(days @ 1..=MAX_UNUSED_FOR_DAYS) => Some(now - chrono::Duration::days(i64::from(days))),
            Some(_) => {
                return Err(AppError::BadUserInput(format!(
                    "`unusedForDays` must be between 1 and {MAX_UNUSED_FOR_DAYS}."
                )));
            }
        };
        let breaking = match query.violates_policy {
            false => None,
            true => match self.app.store.key_policy(self.actor.tenant_id).await?.breaches(now) {
                Some(breaches) => Some(breaches),
                None => {
                    return Ok(Page { items: Vec::new(), has_next_page: false, total_count: 0, count_capped: false });
                }
            },
        };
        let query = KeyQuery {
            first,
            after: query.after,
            order: query.order,
            ascending: query.ascending,
            statuses: query.statuses,
            now,
            owner,
            search,
            unused_since,
            breaking,
            count_up_to: query.count_total.then_some(MAX_EXACT_KEY_COUNT + 1),
        };
        let page = self.app.store.list_keys(self.actor.tenant_id, &query).await?;
        Ok(Page {
            items: self
                .views(page.keys)
                .await?
                .into_iter()
                .map(|view| KeyView { usage_30d: page.recent_usage.get(&view.key.id).copied(), ..view })
                .collect(),
            has_next_page: page.has_next_page,
            total_count: page.total_count.unwrap_or_default().min(MAX_EXACT_KEY_COUNT),
            count_capped: page.total_count.is_some_and(|count| count > MAX_EXACT_KEY_COUNT),
        })
    }

    /// A page of the tenant's audit trail (or of one key's), newest first.
    pub async fn audit_trail(&self, query: AuditQuery) -> AppResult<Page<AuditView>> {
        let first = page_size(query.first)?;
        let key = match query.key_id.map(|raw| raw.parse::<ApiKeyId>()) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => return Ok(Page::empty()),
        };
        let tenant = self.actor.tenant_id;
        let page = self.app.store.list_audit(tenant, key, first, query.after).await?;
        let users = self.app.users(tenant, page.entries.iter().map(|e| e.actor_id).collect()).await?;
        let items = page
            .entries
            .into_iter()
            .map(|entry| AuditView { actor: users.get(&entry.actor_id).cloned(), entry })
            .collect();
        Ok(Page { items, has_next_page: page.has_next_page, total_count: page.total_count, count_capped: false })
    }

    /// Who may own a new key: the admin first, then the other internal admins
    /// and the integration users, by name.
    pub async fn owner_candidates(&self) -> AppResult<Vec<User>> {
        let mut users = self.app.store.key_owner_candidates(self.actor.tenant_id).await?;
        users.sort_by_key(|u| u.id != self.actor.id);
        Ok(users)
    }

    /// The view of the key a change left, or its user errors.
    async fn outcome(&self, outcome: Outcome<ApiKey>) -> AppResult<Outcome<KeyView>> {
        match outcome {
            Ok(key) => Ok(Ok(self.view(key).await?)),
            Err(violations) => Ok(Err(violations)),
        }
    }

    pub(crate) async fn view(&self, key: ApiKey) -> AppResult<KeyView> {
        self.app.key_views(vec![key]).await?.pop().ok_or_else(|| AppError::internal(&"a key view went missing"))
    }

    pub(crate) async fn views(&self, keys: Vec<ApiKey>) -> AppResult<Vec<KeyView>> {
        self.app.key_views(keys).await
    }
}

impl App {
    /// The users of `tenant` among `ids`, by id, with one query.
    async fn users(&self, tenant: latchkey_domain::TenantId, mut ids: Vec<UserId>) -> AppResult<HashMap<UserId, User>> {
        ids.sort();
        ids.dedup();
        Ok(self.store.users_by_ids(tenant, &ids).await?.into_iter().map(|u| (u.id, u)).collect())
    }

    /// Views of keys of one tenant, resolving their users with one query.
    pub(crate) async fn key_views(&self, keys: Vec<ApiKey>) -> AppResult<Vec<KeyView>> {
        let Some(tenant) = keys.first().map(|k| k.tenant_id) else { return Ok(Vec::new()) };
        let ids = keys.iter().flat_map(|k| [Some(k.owner_id), k.created_by, k.last_edited_by]).flatten().collect();
        let users = self.users(tenant, ids).await?;
        let policy = self.store.key_policy(tenant).await?;
        let now = self.clock.now();
        let mut views = Vec::with_capacity(keys.len());
        for key in keys {
            let owner = users.get(&key.owner_id).cloned().ok_or_else(|| {
                AppError::internal(&format_args!("owner {} of key {} is missing", key.owner_id, key.id))
            })?;
            let created_by = key.created_by.and_then(|id| users.get(&id).cloned());
            let last_edited_by = key.last_edited_by.and_then(|id| users.get(&id).cloned());
            let (status, previous_secret_until) = (key.status(&owner, now), key.previous_secret_until(now));
            let credits = match &key.credits {
                None => None,
                Some(stored) => {
                    let reread = || async { Ok(self.store.key(tenant, key.id).await?.and_then(|k| k.credits)) };
                    self.verifier.read_credits(key.id, now, Some(stored.clone()), reread).await?
                }
            };
            let key = ApiKey { credits, ..key };
            let policy_violations = policy.violations(&key, now);
            views.push(KeyView {
                key,
                owner,
                created_by,
                last_edited_by,
                status,
                previous_secret_until,
                usage_30d: None,
                policy_violations,
            });
        }
        Ok(views)
    }
}
