//! The key row: its sea-orm entity and the two mappings between it and the
//! domain's `ApiKey` (`NewKey::into_model` to write, `key_from` to read).
//! A new stored attribute of a key is a column here and a line in each.

use chrono::{DateTime, Utc};
use latchkey_domain::key_policy::UnusedWarning;
use latchkey_domain::limits::{KeyCredits, RateLimits, refill_from_stored, refill_to_stored};
use latchkey_domain::restrictions::{Restrictions, StoredRestrictions};
use latchkey_domain::usage::LastUse;
use latchkey_domain::{ApiKey, ApiKeyId, ApiKeySecret, Cloud, Description, DisabledReason, LookupId, TenantId, UserId};
use sea_orm::Set;

use crate::storable;

pub mod api_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub tenant_id: Uuid,
        pub owner_id: Uuid,
        pub description: String,
        pub description_folded: String,
        pub lookup_id: String,
        pub credential_hash: String,
        pub credential_version: i32,
        pub last_four: String,
        pub created_at: DateTimeUtc,
        pub created_by: Option<Uuid>,
        pub last_edited_at: Option<DateTimeUtc>,
        pub last_edited_by: Option<Uuid>,
        pub last_used_at: Option<DateTimeUtc>,
        pub expires_at: Option<DateTimeUtc>,
        pub expiry_notice_stage: i16,
        pub disabled_at: Option<DateTimeUtc>,
        pub previous_lookup_id: Option<String>,
        pub previous_credential_hash: Option<String>,
        pub previous_last_four: Option<String>,
        pub previous_expires_at: Option<DateTimeUtc>,
        pub permissions: Option<String>,
        pub clouds: Option<String>,
        pub allowed_ips: Option<String>,
        pub compromised_at: Option<DateTimeUtc>,
        pub import_lookup: Option<String>,
        pub previous_import_lookup: Option<String>,
        pub last_used_cloud: Option<String>,
        pub last_used_address: Option<String>,
        pub last_used_user_agent: Option<String>,
        pub rate_limits: Option<String>,
        pub credits_remaining: Option<i64>,
        pub credits_allotment: Option<i64>,
        pub credits_refill: Option<String>,
        pub credits_since: Option<DateTimeUtc>,
        pub credits_refilled_at: Option<DateTimeUtc>,
        pub credits_generation: i32,
        pub credits_low_mailed_at: Option<DateTimeUtc>,
        pub credits_empty_mailed_at: Option<DateTimeUtc>,
        pub disabled_reason: Option<String>,
        pub enabled_at: Option<DateTimeUtc>,
        pub unused_warned_for: Option<DateTimeUtc>,
        pub unused_disable_at: Option<DateTimeUtc>,
        pub self_rotation: bool,
        pub self_rotated_at: Option<DateTimeUtc>,
        pub end_overlap_on_first_use: bool,
        /// Successful verifications since the usage window's first day
        /// (kept by the usage flush, see `usage::usage_window`).
        pub usage_30d: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A freshly hashed credential (never the secret itself).
#[derive(Clone, Debug)]
pub struct NewCredential {
    /// The public lookup id embedded in the secret.
    pub lookup_id: LookupId,
    /// Argon2id PHC string.
    pub hash: String,
    /// The secret's last four characters.
    pub last_four: String,
}

impl NewCredential {
    /// The credential of `secret`, stored as `hash`.
    pub fn new(secret: &ApiKeySecret, hash: String) -> Self {
        NewCredential { lookup_id: secret.lookup_id(), hash, last_four: secret.last_four() }
    }
}

/// A key to insert.
#[derive(Clone, Debug)]
pub struct NewKey {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its owner (must be a user of the tenant).
    pub owner_id: UserId,
    /// Its validated description.
    pub description: Description,
    /// Its credential.
    pub credential: NewCredential,
    /// When it stops working; none for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it may do, where and from where.
    pub restrictions: Restrictions,
    /// For a key imported in its original format: what it is found by.
    pub import_lookup: Option<String>,
    /// Its own rate limits.
    pub rate_limits: RateLimits,
    /// Its credits (none: unlimited).
    pub credits: Option<KeyCredits>,
    /// Whether it may rotate itself.
    pub self_rotation: bool,
}

impl NewKey {
    /// An unrestricted key of `tenant_id` for `owner_id` that never expires.
    pub fn new(tenant_id: TenantId, owner_id: UserId, description: Description, credential: NewCredential) -> Self {
        NewKey {
            tenant_id,
            owner_id,
            description,
            credential,
            expires_at: None,
            restrictions: Restrictions::default(),
            import_lookup: None,
            rate_limits: RateLimits::default(),
            credits: None,
            self_rotation: false,
        }
    }

    /// A key imported in another system's format: found by `lookup`, stored
    /// as `hash`; its Latchkey lookup id is one no `lk_` key can present.
    pub fn imported(
        tenant_id: TenantId,
        owner_id: UserId,
        description: Description,
        lookup: String,
        hash: String,
        last_four: String,
        created_at: DateTime<Utc>,
    ) -> Self {
        // `~` is not base62: no presented `lk_` key has this lookup id.
        let unique = latchkey_domain::ids::time_ordered_uuid(created_at).simple().to_string();
        let unreachable = format!("~{}", &unique[unique.len() - 15..]);
        let credential = NewCredential { lookup_id: LookupId::from_stored(unreachable), hash, last_four };
        NewKey { import_lookup: Some(lookup), ..NewKey::new(tenant_id, owner_id, description, credential) }
    }

    /// The same key, restricted by `restrictions`.
    pub fn restricted_to(mut self, restrictions: Restrictions) -> Self {
        self.restrictions = restrictions;
        self
    }

    /// The same key, expiring at `expires_at` (none for never).
    pub fn expiring_at(mut self, expires_at: Option<DateTime<Utc>>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// The same key, with these rate limits and credits.
    pub fn limited_to(mut self, rate_limits: RateLimits, credits: Option<KeyCredits>) -> Self {
        self.rate_limits = rate_limits;
        self.credits = credits;
        self
    }

    /// What identifies its credential for good: the import lookup of an
    /// imported key, else its lookup id.
    pub fn import_identity(&self) -> String {
        self.import_lookup.clone().unwrap_or_else(|| self.credential.lookup_id.as_str().to_owned())
    }

    /// The row for this key, created at `created_at` by `created_by` (none
    /// for a key from before key management, which has no last edit either).
    pub(super) fn into_model(self, created_at: DateTime<Utc>, created_by: Option<UserId>) -> api_key::ActiveModel {
        let created_by = created_by.map(|u| u.0);
        let stored = self.restrictions.to_stored();
        api_key::ActiveModel {
            id: Set(ApiKeyId::new_at(created_at).0),
            tenant_id: Set(self.tenant_id.0),
            owner_id: Set(self.owner_id.0),
            description_folded: Set(self.description.folded()),
            description: Set(self.description.into_string()),
            lookup_id: Set(self.credential.lookup_id.as_str().to_owned()),
            credential_hash: Set(self.credential.hash),
            credential_version: Set(1),
            last_four: Set(self.credential.last_four),
            created_at: Set(created_at),
            created_by: Set(created_by),
            last_edited_at: Set(created_by.map(|_| created_at)),
            last_edited_by: Set(created_by),
            last_used_at: Set(None),
            expires_at: Set(self.expires_at.map(storable)),
            expiry_notice_stage: Set(0),
            disabled_at: Set(None),
            previous_lookup_id: Set(None),
            previous_credential_hash: Set(None),
            previous_last_four: Set(None),
            previous_expires_at: Set(None),
            permissions: Set(stored.permissions),
            clouds: Set(stored.clouds),
            allowed_ips: Set(stored.allowed_ips),
            compromised_at: Set(None),
            import_lookup: Set(self.import_lookup),
            previous_import_lookup: Set(None),
            last_used_cloud: Set(None),
            last_used_address: Set(None),
            last_used_user_agent: Set(None),
            rate_limits: Set(self.rate_limits.to_stored()),
            credits_remaining: Set(self.credits.as_ref().map(|c| c.remaining)),
            credits_allotment: Set(self.credits.as_ref().map(|c| c.allotment)),
            credits_refill: Set(refill_to_stored(self.credits.as_ref().and_then(|c| c.refill.as_ref()))),
            credits_since: Set(self.credits.as_ref().map(|c| storable(c.since))),
            credits_refilled_at: Set(None),
            credits_generation: Set(0),
            credits_low_mailed_at: Set(None),
            credits_empty_mailed_at: Set(None),
            disabled_reason: Set(None),
            enabled_at: Set(None),
            unused_warned_for: Set(None),
            unused_disable_at: Set(None),
            self_rotation: Set(self.self_rotation),
            self_rotated_at: Set(None),
            end_overlap_on_first_use: Set(false),
            usage_30d: Set(0),
        }
    }
}

pub(crate) fn key_from(m: api_key::Model) -> ApiKey {
    let credits = credits_from(&m);
    ApiKey {
        id: ApiKeyId(m.id),
        tenant_id: TenantId(m.tenant_id),
        owner_id: UserId(m.owner_id),
        description: m.description,
        last_four: m.last_four,
        created_at: m.created_at,
        created_by: m.created_by.map(UserId),
        last_edited_at: m.last_edited_at,
        last_edited_by: m.last_edited_by.map(UserId),
        last_used_at: m.last_used_at,
        last_use: m.last_used_at.map(|at| LastUse {
            at,
            cloud: m.last_used_cloud.as_deref().and_then(Cloud::parse),
            client_address: m.last_used_address.as_deref().and_then(|a| a.parse().ok()),
            user_agent: m.last_used_user_agent,
        }),
        expires_at: m.expires_at,
        disabled_at: m.disabled_at,
        // Keys disabled before reasons were kept were disabled by an admin.
        disabled_reason: m
            .disabled_at
            .map(|_| m.disabled_reason.as_deref().and_then(DisabledReason::parse).unwrap_or(DisabledReason::Admin)),
        enabled_at: m.enabled_at,
        unused_warning: m
            .unused_warned_for
            .zip(m.unused_disable_at)
            .map(|(idle_since, disable_at)| UnusedWarning { idle_since, disable_at }),
        self_rotation: m.self_rotation,
        end_overlap_on_first_use: m.end_overlap_on_first_use,
        previous_last_four: m.previous_last_four,
        previous_expires_at: m.previous_expires_at,
        restrictions: Restrictions::from_stored(&StoredRestrictions {
            permissions: m.permissions,
            clouds: m.clouds,
            allowed_ips: m.allowed_ips,
        }),
        compromised_at: m.compromised_at,
        rate_limits: RateLimits::from_stored(m.rate_limits.as_deref()),
        credits,
    }
}

/// A key's credits as stored; none when unlimited.
fn credits_from(m: &api_key::Model) -> Option<KeyCredits> {
    Some(KeyCredits {
        remaining: m.credits_remaining?,
        allotment: m.credits_allotment.unwrap_or(0),
        refill: refill_from_stored(m.credits_refill.as_deref()),
        since: m.credits_since.unwrap_or(m.created_at),
        last_refilled_at: m.credits_refilled_at,
        generation: m.credits_generation,
        low_mailed_at: m.credits_low_mailed_at,
        empty_mailed_at: m.credits_empty_mailed_at,
    })
}
