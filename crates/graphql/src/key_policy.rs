//! The tenant's key policy in GraphQL: read and replaced whole by its
//! internal admins.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use latchkey_domain::key_policy::KeyPolicy as Policy;

use crate::context::context;
use crate::error::{ApiResult, OrGraphql};
use crate::types::{UserError, user_errors};

/// Rules every new or changed key of your organisation must keep.
#[derive(SimpleObject, Clone, Debug)]
pub struct KeyPolicy {
    /// A new or rotated key must expire within this many days (1..3650;
    /// never beyond a year, the longest any key may live); null for no maximum.
    pub max_lifetime_days: Option<i32>,
    /// Every key must have an expiry.
    pub require_expiry: bool,
    /// Every key must name its permissions: no "Full access" keys.
    pub require_restrictions: bool,
    /// The longest a rotation may keep the old secret working, in seconds; null for the 7-day maximum.
    pub max_overlap_seconds: Option<i32>,
    /// Keys unused this many days are switched off (30..730); null for never.
    pub disable_unused_after_days: Option<i32>,
    /// Most keys one owner may have (1..10,000); null for no maximum.
    pub max_keys_per_owner: Option<i32>,
}

fn int(n: Option<i64>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

impl From<Policy> for KeyPolicy {
    fn from(p: Policy) -> Self {
        KeyPolicy {
            max_lifetime_days: int(p.max_lifetime_days),
            require_expiry: p.require_expiry,
            require_restrictions: p.require_restrictions,
            max_overlap_seconds: int(p.max_overlap_seconds),
            disable_unused_after_days: int(p.disable_unused_after_days),
            max_keys_per_owner: int(p.max_keys_per_owner),
        }
    }
}

/// Input of `updateTenantKeyPolicy`: the whole policy (an omitted nullable field is null).
#[derive(InputObject, Debug)]
pub struct UpdateTenantKeyPolicyInput {
    /// 1..3650, or null for no maximum.
    pub max_lifetime_days: Option<i32>,
    /// Every key must have an expiry.
    pub require_expiry: bool,
    /// Every key must name its permissions.
    pub require_restrictions: bool,
    /// 0..604800, or null.
    pub max_overlap_seconds: Option<i32>,
    /// 30..730, or null for never.
    pub disable_unused_after_days: Option<i32>,
    /// 1..10000, or null.
    pub max_keys_per_owner: Option<i32>,
}

impl From<UpdateTenantKeyPolicyInput> for Policy {
    fn from(i: UpdateTenantKeyPolicyInput) -> Self {
        Policy {
            max_lifetime_days: i.max_lifetime_days.map(i64::from),
            require_expiry: i.require_expiry,
            require_restrictions: i.require_restrictions,
            max_overlap_seconds: i.max_overlap_seconds.map(i64::from),
            disable_unused_after_days: i.disable_unused_after_days.map(i64::from),
            max_keys_per_owner: i.max_keys_per_owner.map(i64::from),
        }
    }
}

/// Result of `updateTenantKeyPolicy`.
#[derive(SimpleObject, Debug, Default)]
pub struct UpdateTenantKeyPolicyPayload {
    /// The policy as it is now; null when refused.
    pub policy: Option<KeyPolicy>,
    /// Why the input was refused (nothing changed).
    pub user_errors: Vec<UserError>,
}

/// Key policy queries.
#[derive(Debug, Default)]
pub struct KeyPolicyQuery;

#[Object]
impl KeyPolicyQuery {
    /// Your organisation's key policy (internal admins).
    async fn tenant_key_policy(&self, ctx: &Context<'_>) -> ApiResult<KeyPolicy> {
        let (app, auth) = context(ctx)?;
        Ok(app.key_admin(auth).gql()?.key_policy().await.gql()?.into())
    }
}

/// Key policy mutations.
#[derive(Debug, Default)]
pub struct KeyPolicyMutation;

#[Object]
impl KeyPolicyMutation {
    /// Replaces your organisation's key policy (audited). From then on new and
    /// changed keys must keep it (`userErrors` code `POLICY` otherwise); keys
    /// that break it keep working and list what they break in `policyViolations`.
    async fn update_tenant_key_policy(
        &self,
        ctx: &Context<'_>,
        input: UpdateTenantKeyPolicyInput,
    ) -> ApiResult<UpdateTenantKeyPolicyPayload> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(match admin.update_key_policy(input.into()).await.gql()? {
            Ok(policy) => UpdateTenantKeyPolicyPayload { policy: Some(policy.into()), user_errors: vec![] },
            Err(violations) => {
                UpdateTenantKeyPolicyPayload { user_errors: user_errors(violations), ..Default::default() }
            }
        })
    }
}
