//! Tenants, users, API keys, notices and audit entries.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids::{ApiKeyId, NoticeId, TenantId, UserId};
pub use crate::tenancy::{Cloud, Role};

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
}

/// A user of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Where owner notices are sent.
    pub email: String,
    /// Display name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// False once deactivated (it may not sign in, and its keys are suspended).
    pub active: bool,
}

/// An API key as the key table shows it. Never carries the secret or its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Stable id (UUID v7, so id order is creation order).
    pub id: ApiKeyId,
    /// The tenant the key belongs to.
    pub tenant_id: TenantId,
    /// The user the key acts for.
    pub owner_id: UserId,
    /// What the key is for.
    pub description: String,
    /// The last four characters of the current secret.
    pub last_four: String,
    /// When the key was created.
    pub created_at: DateTime<Utc>,
    /// Who created it (none for keys imported from before key management).
    pub created_by: Option<UserId>,
    /// When it was last generated, rotated or edited; none for legacy keys.
    pub last_edited_at: Option<DateTime<Utc>>,
    /// Who last edited it; none for legacy keys.
    pub last_edited_by: Option<UserId>,
    /// When an integration last authenticated with it.
    pub last_used_at: Option<DateTime<Utc>>,
    /// That last use, with where it came from (details are none for uses
    /// recorded before they were kept).
    pub last_use: Option<crate::usage::LastUse>,
    /// When it stops working; none for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was disabled; none while enabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it is disabled (none while enabled).
    pub disabled_reason: Option<DisabledReason>,
    /// When an admin last enabled it (restarts the unused-key clock).
    pub enabled_at: Option<DateTime<Utc>>,
    /// The warning its owner was sent that the unused key will be switched off.
    pub unused_warning: Option<UnusedWarning>,
    /// Whether it may rotate itself (`POST /v1/keys/rotate`).
    pub self_rotation: bool,
    /// Whether its previous secret stops once the current one first verifies.
    pub end_overlap_on_first_use: bool,
    /// The last four of the secret it had before its last rotation, while
    /// that secret is kept (see `previous_expires_at`).
    pub previous_last_four: Option<String>,
    /// Until when the previous secret works (the rotation's overlap); past
    /// this it answers `EXPIRED`. None when a rotation kept no previous secret.
    pub previous_expires_at: Option<DateTime<Utc>>,
    /// What it may do, where and from where.
    pub restrictions: crate::restrictions::Restrictions,
    /// When it was reported leaked and revoked; cleared by rotation.
    pub compromised_at: Option<DateTime<Utc>>,
    /// Its own rate limits (every one must admit a request).
    pub rate_limits: crate::limits::RateLimits,
    /// Its credits; None for unlimited.
    pub credits: Option<crate::limits::KeyCredits>,
}

#[cfg(any(test, feature = "testing"))]
impl ApiKey {
    /// A key for unit tests: `id` of `tenant`, created at `created_at`,
    /// enabled, unrestricted, unlimited, never used, never expiring.
    pub fn example(id: ApiKeyId, tenant_id: TenantId, created_at: DateTime<Utc>) -> Self {
        ApiKey {
            id,
            tenant_id,
            owner_id: UserId(uuid::Uuid::nil()),
            description: "d".into(),
            last_four: "abcd".into(),
            created_at,
            created_by: None,
            last_edited_at: None,
            last_edited_by: None,
            last_used_at: None,
            last_use: None,
            expires_at: None,
            disabled_at: None,
            disabled_reason: None,
            enabled_at: None,
            unused_warning: None,
            self_rotation: false,
            end_overlap_on_first_use: false,
            previous_last_four: None,
            previous_expires_at: None,
            restrictions: Default::default(),
            compromised_at: None,
            rate_limits: Default::default(),
            credits: None,
        }
    }
}

/// The warning an owner was sent that an unused key will be switched off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnusedWarning {
    /// Since when the key was unused when the warning went out.
    pub idle_since: DateTime<Utc>,
    /// When it is switched off unless used or enabled meanwhile.
    pub disable_at: DateTime<Utc>,
}

crate::string_enum! {
    /// Why a key is disabled.
    pub enum DisabledReason {
        /// An admin disabled it.
        Admin = "ADMIN",
        /// The tenant's policy switched it off after it went unused
        /// (`disableUnusedAfterDays`).
        Unused = "UNUSED",
    }
}

crate::string_enum! {
    /// What a tenant wants done when one of its keys is reported leaked.
    pub enum LeakResponse {
        /// Revoke the key at once (status `COMPROMISED`), mail and audit.
        Revoke = "revoke",
        /// Only mail and audit: the key keeps working.
        Notify = "notify",
    }
}

/// Where a key was found exposed, as a report says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakReport {
    /// Who reported it, e.g. "GitHub secret scanning".
    pub reporter: String,
    /// Where it was found (a URL), if said.
    pub url: Option<String>,
    /// What kind of place (e.g. `content`, `commit`), if said.
    pub source: Option<String>,
    /// Whether the key was revoked for it.
    pub revoked: bool,
}

crate::string_enum! {
    /// What happened to a key; each kind is mailed to the key's owner. The
    /// names are the past-tense words used in storage and in mail.
    pub enum NoticeKind {
        /// A new key was generated.
        Generated = "generated",
        /// The key's secret was replaced.
        Rotated = "rotated",
        /// The key was deleted.
        Deleted = "deleted",
        /// The key was switched off.
        Disabled = "disabled",
        /// The key was switched back on.
        Enabled = "enabled",
        /// The key expires soon (7 days or 1 day ahead).
        Expiring = "expiring",
        /// The key expired.
        Expired = "expired",
        /// The key's restrictions changed.
        RestrictionsChanged = "restrictions_changed",
        /// The key's rate limits or credits were changed by an admin.
        LimitsChanged = "limits_changed",
        /// The key's credits fell below 10 % of their allotment.
        CreditsLow = "credits_low",
        /// The key's credits are spent.
        CreditsExhausted = "credits_exhausted",
        /// The key was reported leaked (mailed to its owner and the tenant's internal admins).
        Leaked = "leaked",
        /// The key was given to another owner (mailed to the old and the new owner).
        OwnerChanged = "owner_changed",
        /// A user was deactivated and the keys it owns were suspended (mailed
        /// once to each active internal admin of the tenant, listing them).
        KeysSuspended = "keys_suspended",
        /// The key was imported from another system (`latchkey keys import`).
        Imported = "imported",
        /// A webhook endpoint was switched off after failing for 5 days
        /// (mailed to each active internal admin; about no key: the
        /// description is the endpoint's URL, `before_after` holds since
        /// when it failed and the last error).
        WebhookDisabled = "webhook_disabled",
        /// The tenant's key policy changed (mailed to each active internal
        /// admin; about no key: `before_after` holds the rules before and after).
        PolicyChanged = "policy_changed",
        /// The key has gone unused so long that the key policy switches it
        /// off soon (`before_after` holds since when it is unused and when
        /// it is switched off).
        UnusedWarning = "unused_warning",
        /// The key policy switched the key off for going unused
        /// (`before_after` holds since when it was unused and the rule's days).
        DisabledUnused = "disabled_unused",
        /// A new key policy is broken by keys the owner has (mailed once to
        /// each such owner, listing them in `suspension`; `before_after`
        /// holds the policy in words).
        KeysBreakPolicy = "keys_break_policy",
    }
}

crate::string_enum! {
    /// Delivery state of a notice in the outbox.
    pub enum EventDelivery {
        /// Waiting to be sent (possibly after a failed attempt).
        Pending = "pending",
        /// Delivered.
        Sent = "sent",
        /// Given up; needs an operator.
        Failed = "failed",
    }
}

/// A notice (an outbox row to mail), snapshotting what the owner must be told even after the key
/// itself is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Event id (UUID v7).
    pub id: NoticeId,
    /// What happened.
    pub kind: NoticeKind,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The key it happened to.
    pub key_id: ApiKeyId,
    /// The key's description at the time.
    pub key_description: String,
    /// The key's last four at the time (after a rotate: the new last four).
    pub key_last_four: String,
    /// The owner who is told.
    pub owner_id: UserId,
    /// The owner's address at the time.
    pub owner_email: String,
    /// The owner's name at the time.
    pub owner_name: String,
    /// Who did it.
    pub actor_id: UserId,
    /// The actor's name at the time.
    pub actor_name: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The key's expiry at the time (for expiry notices).
    pub key_expires_at: Option<DateTime<Utc>>,
    /// Until when the previous secret works (after a rotation with an overlap).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// For a change of restrictions or limits: before and after, described.
    pub before_after: Option<(String, String)>,
    /// For a leak: where it was found and what was done.
    pub leak: Option<LeakReport>,
    /// For a transfer: the old and the new owner's names.
    pub owner_change: Option<(String, String)>,
    /// For a deactivation: whose keys were suspended, and which.
    pub suspension: Option<Suspension>,
}

/// The keys a deactivation suspended, for the admins' notice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspension {
    /// The deactivated user.
    pub user_id: UserId,
    /// Its name at the time.
    pub user_name: String,
    /// Each key's last four and description, at the time.
    pub keys: Vec<(String, String)>,
}

impl Notice {
    /// Builds the event for `kind` on `key`, owned by `owner`, done by `actor` at `at`.
    pub fn new(kind: NoticeKind, key: &ApiKey, owner: &User, actor: &User, at: DateTime<Utc>) -> Self {
        Notice {
            id: NoticeId::new_at(at),
            kind,
            tenant_id: key.tenant_id,
            key_id: key.id,
            key_description: key.description.clone(),
            key_last_four: key.last_four.clone(),
            owner_id: owner.id,
            owner_email: owner.email.clone(),
            owner_name: owner.name.clone(),
            actor_id: actor.id,
            actor_name: actor.name.clone(),
            occurred_at: at,
            key_expires_at: key.expires_at,
            previous_secret_expires_at: key.previous_expires_at,
            before_after: None,
            leak: None,
            owner_change: None,
            suspension: None,
        }
    }
}

crate::string_enum! {
    /// What an audit entry records.
    pub enum AuditAction {
        /// The key was generated.
        Generated = "generated",
        /// The key's secret was replaced.
        Rotated = "rotated",
        /// The key's description changed.
        DescriptionChanged = "description_changed",
        /// The key was deleted.
        Deleted = "deleted",
        /// The previous secret's overlap was ended early.
        PreviousSecretExpired = "previous_secret_expired",
        /// The key's expiry was set, changed or cleared.
        ExpiryChanged = "expiry_changed",
        /// The key was switched off.
        Disabled = "disabled",
        /// The key was switched back on.
        Enabled = "enabled",
        /// The key expired (recorded by Latchkey itself).
        Expired = "expired",
        /// The key's restrictions changed.
        RestrictionsChanged = "restrictions_changed",
        /// The key's rate limits or credits were replaced.
        LimitsChanged = "limits_changed",
        /// Credits were added to the key.
        CreditsAdded = "credits_added",
        /// An owner's shared rate limits were replaced (the entry's key id is
        /// nil and its key description names the owner).
        OwnerLimitsChanged = "owner_limits_changed",
        /// The key was reported leaked (and revoked, if the tenant says so).
        LeakReported = "leak_reported",
        /// The key was given to another owner.
        OwnerChanged = "owner_changed",
        /// The key was imported from another system (`latchkey keys import`).
        Imported = "imported",
        /// A setting of the tenant changed (no key: the entry's key id is nil).
        SettingsChanged = "settings_changed",
        /// Whether the key may rotate itself changed.
        SelfRotationChanged = "self_rotation_changed",
    }
}

/// One entry of the audit trail of a tenant's keys. Outlives the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Entry id (UUID v7: id order is time order).
    pub id: uuid::Uuid,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The key.
    pub key_id: ApiKeyId,
    /// Who did it.
    pub actor_id: UserId,
    /// The actor's name at the time.
    pub actor_name: String,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// The key's description after the change (before it, for a deletion).
    pub key_description: String,
    /// The key's last four after the change.
    pub key_last_four: String,
    /// What happened, with what only that kind of change records.
    pub change: AuditChange,
}

/// What an audited change did. One variant per kind of change, holding what
/// that kind records; stored whole (as JSON beside its action), so a new
/// kind adds a variant and no column.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditChange {
    /// The key was generated.
    Generated,
    /// The key was imported from another system.
    Imported,
    /// The key's secret was replaced.
    Rotated {
        /// Until when the previous secret works (none: it stopped at once).
        previous_secret_until: Option<DateTime<Utc>>,
    },
    /// The description changed.
    DescriptionChanged {
        /// Before.
        old: String,
        /// After.
        new: String,
    },
    /// The key was deleted.
    Deleted,
    /// A rotation's overlap was ended early.
    PreviousSecretExpired {
        /// When the previous secret stopped.
        at: DateTime<Utc>,
        /// Whether it stopped because the new secret was used
        /// (`endOverlapOnFirstUse`) rather than by an admin.
        #[serde(default)]
        new_secret_used: bool,
    },
    /// Whether the key may rotate itself changed.
    SelfRotationChanged {
        /// Whether it may now.
        allowed: bool,
    },
    /// The expiry was set, changed or cleared.
    ExpiryChanged {
        /// Before (none: never).
        old: Option<DateTime<Utc>>,
        /// After (none: never).
        new: Option<DateTime<Utc>>,
    },
    /// The key was switched off.
    Disabled,
    /// The key was switched back on.
    Enabled,
    /// The key expired.
    Expired,
    /// The restrictions changed.
    RestrictionsChanged {
        /// Before, described.
        before: String,
        /// After, described.
        after: String,
    },
    /// The key was reported leaked; the reporter is the entry's actor.
    LeakReported {
        /// Where it was found (a URL), if said.
        url: Option<String>,
        /// What kind of place, if said.
        source: Option<String>,
        /// Whether the key was revoked for it.
        revoked: bool,
    },
    /// The key was given to another owner.
    OwnerChanged {
        /// The old owner's name at the time.
        before: String,
        /// The new owner's name at the time.
        after: String,
    },
    /// The key's rate limits or credits were replaced.
    LimitsChanged {
        /// Before, described.
        before: String,
        /// After, described.
        after: String,
    },
    /// Credits were added.
    CreditsAdded {
        /// How many.
        amount: i64,
    },
    /// An owner's shared rate limits were replaced.
    OwnerLimitsChanged {
        /// Before, described.
        before: String,
        /// After, described.
        after: String,
    },
    /// A tenant setting changed (the entry's key id is nil and its key
    /// description names the setting).
    SettingChanged {
        /// The value before.
        old: String,
        /// The value after.
        new: String,
    },
}

impl AuditChange {
    /// The action this change is listed as.
    pub fn action(&self) -> AuditAction {
        match self {
            AuditChange::Generated => AuditAction::Generated,
            AuditChange::Imported => AuditAction::Imported,
            AuditChange::Rotated { .. } => AuditAction::Rotated,
            AuditChange::DescriptionChanged { .. } => AuditAction::DescriptionChanged,
            AuditChange::Deleted => AuditAction::Deleted,
            AuditChange::PreviousSecretExpired { .. } => AuditAction::PreviousSecretExpired,
            AuditChange::ExpiryChanged { .. } => AuditAction::ExpiryChanged,
            AuditChange::Disabled => AuditAction::Disabled,
            AuditChange::Enabled => AuditAction::Enabled,
            AuditChange::Expired => AuditAction::Expired,
            AuditChange::RestrictionsChanged { .. } => AuditAction::RestrictionsChanged,
            AuditChange::LeakReported { .. } => AuditAction::LeakReported,
            AuditChange::OwnerChanged { .. } => AuditAction::OwnerChanged,
            AuditChange::LimitsChanged { .. } => AuditAction::LimitsChanged,
            AuditChange::CreditsAdded { .. } => AuditAction::CreditsAdded,
            AuditChange::OwnerLimitsChanged { .. } => AuditAction::OwnerLimitsChanged,
            AuditChange::SettingChanged { .. } => AuditAction::SettingsChanged,
            AuditChange::SelfRotationChanged { .. } => AuditAction::SelfRotationChanged,
        }
    }
}

impl AuditEntry {
    /// The entry for a change of the tenant setting `name` from `old` to
    /// `new`, by `actor` at `at`: no key (nil id), the setting's name as
    /// description.
    pub fn setting_changed(actor: &User, name: &str, old: String, new: String, at: DateTime<Utc>) -> Self {
        let nil = ApiKeyId(uuid::Uuid::nil());
        let change = AuditChange::SettingChanged { old, new };
        AuditEntry::about(change, actor.tenant_id, nil, name, "", actor, at)
    }

    /// The entry for a change of `owner`'s shared rate limits: no key (nil
    /// id), the owner's name as description.
    pub fn owner_limits_changed(actor: &User, owner: &User, before: String, after: String, at: DateTime<Utc>) -> Self {
        let nil = ApiKeyId(uuid::Uuid::nil());
        let change = AuditChange::OwnerLimitsChanged { before, after };
        AuditEntry::about(change, actor.tenant_id, nil, &owner.name, "", actor, at)
    }

    /// The entry for `change` of `key` by `actor` at `at`.
    pub fn new(change: AuditChange, key: &ApiKey, actor: &User, at: DateTime<Utc>) -> Self {
        AuditEntry::about(change, key.tenant_id, key.id, &key.description, &key.last_four, actor, at)
    }

    fn about(
        change: AuditChange,
        tenant_id: TenantId,
        key_id: ApiKeyId,
        description: &str,
        last_four: &str,
        actor: &User,
        at: DateTime<Utc>,
    ) -> Self {
        AuditEntry {
            id: crate::ids::time_ordered_uuid(at),
            tenant_id,
            key_id,
            actor_id: actor.id,
            actor_name: actor.name.clone(),
            occurred_at: at,
            key_description: description.to_owned(),
            key_last_four: last_four.to_owned(),
            change,
        }
    }

    /// What it is listed as.
    pub fn action(&self) -> AuditAction {
        self.change.action()
    }
}
