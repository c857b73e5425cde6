//! Credential lookup for verification: what a presented secret is checked
//! against, found by lookup id (or an imported key's lookup) across tenants
//! with one query, and the writes verification makes (hash upgrades, last use).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use latchkey_domain::limits::RateLimits;
use latchkey_domain::policy::role_may_own_keys;
use latchkey_domain::restrictions::{PermissionSet, Restrictions, StoredRestrictions, owner_permissions};
use latchkey_domain::{ApiKeyId, LookupId, Role, TenantId, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};

use super::row::api_key;
use super::table::key_in;
use crate::{Store, StoreResult};

/// What a verification needs: found by lookup id, across tenants. A key has
/// one such credential, and a second while a rotation's overlap keeps its
/// previous secret.
#[derive(Clone, Debug)]
pub struct StoredCredential {
    /// The public lookup id it was found by.
    pub lookup_id: LookupId,
    /// Whether this is the key's previous secret (kept by a rotation's overlap).
    pub previous: bool,
    /// Until when this secret works: the key's expiry, or for a previous
    /// secret the earlier of that and the overlap's end. None for no limit.
    pub works_until: Option<DateTime<Utc>>,
    /// Whether the key is disabled.
    pub disabled: bool,
    /// Whether the key was reported leaked and revoked.
    pub compromised: bool,
    /// Whether its owner was deactivated (or may no longer own keys): the key
    /// is suspended.
    pub owner_inactive: bool,
    /// What the key may do, where and from where.
    pub restrictions: Arc<Restrictions>,
    /// What its owner may do (a key never does more).
    pub owner_may: PermissionSet,
    /// The key.
    pub key_id: ApiKeyId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its owner.
    pub owner_id: UserId,
    /// The stored hash (`$sha256$…`, or a legacy argon2id PHC string).
    pub hash: String,
    /// Incremented by every rotation.
    pub version: i32,
    /// The key's own rate limits.
    pub rate_limits: RateLimits,
    /// Its owner's shared rate limits.
    pub owner_rate_limits: RateLimits,
    /// The generation of its credits (see `KeyCredits::generation`); none
    /// when its credits are unlimited.
    pub credits_generation: Option<i32>,
    /// Whether a previous secret is kept that stops once this, the current
    /// secret, first verifies (`endOverlapOnFirstUse`).
    pub ends_overlap_on_use: bool,
}

/// Which columns find a credential: Latchkey's own lookup ids, or the
/// lookups of imported keys.
#[derive(Clone, Copy)]
struct LookupColumns {
    current: api_key::Column,
    previous: api_key::Column,
    imported: bool,
}

impl LookupColumns {
    const KEY: Self = LookupColumns {
        current: api_key::Column::LookupId,
        previous: api_key::Column::PreviousLookupId,
        imported: false,
    };
    const IMPORT: Self = LookupColumns {
        current: api_key::Column::ImportLookup,
        previous: api_key::Column::PreviousImportLookup,
        imported: true,
    };
}

/// What verification reads of a key (and its owner's role), in one query.
#[derive(sea_orm::FromQueryResult)]
struct CredentialRow {
    lookup_id: String,
    previous_lookup_id: Option<String>,
    import_lookup: Option<String>,
    previous_import_lookup: Option<String>,
    id: uuid::Uuid,
    tenant_id: uuid::Uuid,
    owner_id: uuid::Uuid,
    credential_hash: String,
    previous_credential_hash: Option<String>,
    credential_version: i32,
    expires_at: Option<DateTime<Utc>>,
    previous_expires_at: Option<DateTime<Utc>>,
    disabled_at: Option<DateTime<Utc>>,
    compromised_at: Option<DateTime<Utc>>,
    permissions: Option<String>,
    clouds: Option<String>,
    allowed_ips: Option<String>,
    owner_role: Option<String>,
    owner_active: Option<i32>,
    rate_limits: Option<String>,
    owner_rate_limits: Option<String>,
    credits_remaining: Option<i64>,
    credits_generation: i32,
    end_overlap_on_first_use: bool,
}

impl Store {
    /// The stored credentials of several lookup ids, in any tenant, with one
    /// query (unknown ids are absent). Reads only the columns verification
    /// needs: this is the cold path of every gateway.
    pub async fn credentials_by_lookup_ids(&self, lookup_ids: &[LookupId]) -> StoreResult<Vec<StoredCredential>> {
        let wanted: Vec<&str> = lookup_ids.iter().map(LookupId::as_str).collect();
        self.credentials_found_by(LookupColumns::KEY, &wanted).await
    }

    /// The stored credentials of imported keys found by any of `lookups`
    /// (`prefix:…`, `sha256:…`, `sha512:…`; see `latchkey_domain::import`),
    /// with one indexed query.
    pub async fn credentials_by_import_lookups(&self, lookups: &[String]) -> StoreResult<Vec<StoredCredential>> {
        let wanted: Vec<&str> = lookups.iter().map(String::as_str).collect();
        self.credentials_found_by(LookupColumns::IMPORT, &wanted).await
    }

    /// The credentials of `wanted`: from the standby when it may be read and
    /// has every one of them, of keys it can be trusted for (see
    /// `standby.rs`); what it lacks or cannot be trusted for, from the primary.
    async fn credentials_found_by(&self, by: LookupColumns, wanted: &[&str]) -> StoreResult<Vec<StoredCredential>> {
        let Some(standby) = self.lookup_standby() else {
            return credentials_on_primary(self.reader(), by, wanted).await;
        };
        let mut found = match credentials_in(&standby.pool, by, wanted).await {
            Ok(found) => found,
            // A standby that fails is read around, not reported.
            Err(_) => return credentials_on_primary(self.reader(), by, wanted).await,
        };
        found.retain(|c| standby.state.trusts(c.key_id));
        let missing: Vec<&str> =
            wanted.iter().copied().filter(|w| !found.iter().any(|c| c.lookup_id.as_str() == *w)).collect();
        if !missing.is_empty() {
            found.extend(credentials_on_primary(self.reader(), by, &missing).await?);
        }
        Ok(found)
    }
}

/// [`credentials_in`] on the primary, tried once more when the connection
/// broke under it: after a failover or a database restart every pooled
/// connection is dead, and the pool finds out only by using each, which
/// would otherwise fail one cold verification per connection.
async fn credentials_on_primary(
    conn: &crate::pool::Pool,
    by: LookupColumns,
    wanted: &[&str],
) -> StoreResult<Vec<StoredCredential>> {
    match credentials_in(conn, by, wanted).await {
        Err(e) if e.connection_broke() => credentials_in(conn, by, wanted).await,
        found => found,
    }
}

/// The credentials of `wanted` as `conn` has them, in one query.
async fn credentials_in(
    conn: &crate::pool::Pool,
    by: LookupColumns,
    wanted: &[&str],
) -> StoreResult<Vec<StoredCredential>> {
    {
        let rows: Vec<CredentialRow> = api_key::Entity::find()
            .select_only()
            .columns([
                api_key::Column::LookupId,
                api_key::Column::PreviousLookupId,
                api_key::Column::ImportLookup,
                api_key::Column::PreviousImportLookup,
                api_key::Column::Id,
                api_key::Column::TenantId,
                api_key::Column::OwnerId,
                api_key::Column::CredentialHash,
                api_key::Column::PreviousCredentialHash,
                api_key::Column::CredentialVersion,
                api_key::Column::ExpiresAt,
                api_key::Column::PreviousExpiresAt,
                api_key::Column::DisabledAt,
                api_key::Column::CompromisedAt,
                api_key::Column::Permissions,
                api_key::Column::Clouds,
                api_key::Column::AllowedIps,
                api_key::Column::RateLimits,
                api_key::Column::CreditsRemaining,
                api_key::Column::CreditsGeneration,
                api_key::Column::EndOverlapOnFirstUse,
            ])
            .column_as(
                Expr::cust("(SELECT rate_limits FROM users WHERE users.id = api_keys.owner_id)"),
                "owner_rate_limits",
            )
            // The owner's role bounds what the key may do, and a deactivated
            // owner suspends it; read with the key.
            .column_as(Expr::cust("(SELECT role FROM users WHERE users.id = api_keys.owner_id)"), "owner_role")
            .column_as(
                Expr::cust(
                    "(SELECT CASE WHEN users.deactivated_at IS NULL THEN 1 ELSE 0 END FROM users \
                     WHERE users.id = api_keys.owner_id)",
                ),
                "owner_active",
            )
            .filter(
                Condition::any()
                    .add(by.current.is_in(wanted.iter().copied()))
                    .add(by.previous.is_in(wanted.iter().copied())),
            )
            .into_model::<CredentialRow>()
            .all(conn)
            .await?;
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let restrictions = Arc::new(Restrictions::from_stored(&StoredRestrictions {
                permissions: row.permissions.clone(),
                clouds: row.clouds.clone(),
                allowed_ips: row.allowed_ips.clone(),
            }));
            let rate_limits = RateLimits::from_stored(row.rate_limits.as_deref());
            let owner_rate_limits = RateLimits::from_stored(row.owner_rate_limits.as_deref());
            // An owner whose role cannot be read may do nothing (fail closed).
            let owner_role = row.owner_role.as_deref().and_then(Role::parse);
            let owner_may = owner_role.map_or(PermissionSet::none(), owner_permissions);
            let owner_inactive = row.owner_active != Some(1) || !owner_role.is_some_and(role_may_own_keys);
            let (expires, disabled, compromised) =
                (row.expires_at, row.disabled_at.is_some(), row.compromised_at.is_some());
            let credential = |lookup_id: String, hash: String, previous: bool, works_until| StoredCredential {
                lookup_id: LookupId::from_stored(lookup_id),
                previous,
                works_until,
                disabled,
                compromised,
                owner_inactive,
                restrictions: restrictions.clone(),
                owner_may,
                key_id: ApiKeyId(row.id),
                tenant_id: TenantId(row.tenant_id),
                owner_id: UserId(row.owner_id),
                hash,
                version: row.credential_version,
                rate_limits: rate_limits.clone(),
                owner_rate_limits: owner_rate_limits.clone(),
                credits_generation: row.credits_remaining.map(|_| row.credits_generation),
                ends_overlap_on_use: !previous && row.end_overlap_on_first_use && row.previous_expires_at.is_some(),
            };
            let (current, previous) = if by.imported {
                (row.import_lookup.clone(), row.previous_import_lookup.clone())
            } else {
                (Some(row.lookup_id.clone()), row.previous_lookup_id.clone())
            };
            if let Some(lookup) = current.filter(|l| wanted.contains(&l.as_str())) {
                found.push(credential(lookup, row.credential_hash.clone(), false, expires));
            }
            if let (Some(lookup), Some(hash), Some(until)) =
                (previous, row.previous_credential_hash.clone(), row.previous_expires_at)
                && wanted.contains(&lookup.as_str())
            {
                let until = expires.map_or(until, |expires| Ord::min(expires, until));
                found.push(credential(lookup, hash, true, Some(until)));
            }
        }
        Ok(found)
    }
}

impl Store {
    /// The stored credential for a lookup id, in any tenant.
    pub async fn credential_by_lookup_id(&self, lookup_id: &LookupId) -> StoreResult<Option<StoredCredential>> {
        Ok(self.credentials_by_lookup_ids(std::slice::from_ref(lookup_id)).await?.pop())
    }

    /// Replaces the stored hash of a credential that just verified by
    /// `new_hash` (the same secret under another scheme), only if the key
    /// still has that very credential: a rotation or deletion that happened
    /// meanwhile wins. Whether it was replaced.
    pub async fn upgrade_credential_hash(&self, verified: &StoredCredential, new_hash: &str) -> StoreResult<bool> {
        let updated = api_key::Entity::update_many()
            .col_expr(api_key::Column::CredentialHash, Expr::value(new_hash))
            .filter(api_key::Column::Id.eq(verified.key_id.0))
            .filter(api_key::Column::CredentialVersion.eq(verified.version))
            .filter(api_key::Column::CredentialHash.eq(verified.hash.as_str()))
            .exec(self.conn())
            .await?;
        Ok(updated.rows_affected == 1)
    }

    /// The stored hash of a key, for operators and tests (never leaves the service).
    pub async fn credential_hash(&self, tenant: TenantId, id: ApiKeyId) -> StoreResult<Option<String>> {
        Ok(key_in(self.conn(), tenant, id).await?.map(|m| m.credential_hash))
    }
}
