//! GraphQL's own types. Application views are converted into these; no
//! database entity or domain type is ever a GraphQL type. Enums mirror the
//! domain's through async-graphql's `remote`, which generates (and so checks)
//! the conversions.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use latchkey_app::usage::UsageQuery;
use latchkey_app::{AuditView, FieldViolation, KeyCursor, KeyOrderField, KeyView};

use crate::context::context;
use crate::error::{ApiResult, OrGraphql};
use crate::limits::{KeyCreditsInput, KeyCreditsView, RateLimit, RateLimitInput, limit_inputs, rate_limits};
use crate::usage::{KeyLastUse, UsageGranularity, UsageSeries};
use latchkey_domain::AuditChange;
use latchkey_domain::{Tenant, User};

pub use crate::cloud::GqlCloud;

/// What a user may do.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "UserRole", remote = "latchkey_domain::Role")]
pub enum GqlUserRole {
    /// Administrator of the employee cloud; manages API keys.
    InternalAdmin,
    /// Administrator of the customer cloud.
    AcademyAdmin,
    /// A service account for an integration.
    IntegrationUser,
}

/// Whether a key works.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "ApiKeyStatus", remote = "latchkey_domain::KeyStatus")]
pub enum GqlKeyStatus {
    /// It verifies.
    Active,
    /// An admin switched it off (`DISABLED` at verification); enabling restores the same secret.
    Disabled,
    /// Its expiry has passed (`EXPIRED` at verification).
    Expired,
    /// It was reported leaked and revoked (`COMPROMISED` at verification);
    /// rotating it issues a fresh secret and clears this.
    Compromised,
    /// Its owner was deactivated (`OWNER_INACTIVE` at verification);
    /// transferring it, or reactivating the owner, makes it work again.
    Suspended,
}

/// Why a key is disabled.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "ApiKeyDisabledReason", remote = "latchkey_domain::DisabledReason")]
pub enum GqlDisabledReason {
    /// An admin disabled it.
    Admin,
    /// Your organisation's key policy switched it off after it went unused
    /// for `disableUnusedAfterDays` (its owner was warned a week before).
    Unused,
}

/// What a tenant does when one of its keys is reported leaked.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "latchkey_domain::LeakResponse")]
pub enum LeakResponse {
    /// Revoke the key at once (`COMPROMISED`), mail its owner and the internal admins, audit.
    Revoke,
    /// Only mail and audit: the key keeps working.
    Notify,
}

/// Settings of your tenant.
#[derive(SimpleObject, Clone, Debug)]
pub struct TenantSettings {
    /// What happens when one of your keys is reported leaked (default `REVOKE`).
    pub leak_response: LeakResponse,
    /// Whether SCIM provisioning may make users internal admins (default
    /// false: it may create and change academy admins and integration users only).
    pub scim_may_grant_internal_admin: bool,
}

/// Input of `updateTenantSettings`: the settings to change (others stay).
#[derive(InputObject, Debug)]
pub struct UpdateTenantSettingsInput {
    /// What happens when one of your keys is reported leaked.
    pub leak_response: Option<LeakResponse>,
    /// Whether SCIM provisioning may make users internal admins (audited).
    pub scim_may_grant_internal_admin: Option<bool>,
}

/// What the key table can be ordered by.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "latchkey_app::KeyOrderField")]
#[allow(clippy::enum_variant_names)] // the contract's names: CREATED_AT, EXPIRES_AT, LAST_USED_AT
pub enum ApiKeyOrderField {
    /// Creation time.
    CreatedAt,
    /// Expiry; keys that never expire come last in either direction.
    ExpiresAt,
    /// Last use; keys never used come last in either direction.
    LastUsedAt,
    /// Successful verifications in the last 30 days (`usage30d`).
    #[graphql(name = "USAGE_30D")]
    Usage30d,
}

/// A sort direction.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq, Default)]
pub enum OrderDirection {
    /// Smallest first.
    Asc,
    /// Largest first.
    #[default]
    Desc,
}

/// How to order the key table. Cursor paging is stable under every order
/// (ties are broken by key id).
#[derive(InputObject, Copy, Clone, Debug)]
pub struct ApiKeyOrder {
    /// The field.
    pub field: ApiKeyOrderField,
    /// The direction (default `DESC`).
    #[graphql(default)]
    pub direction: OrderDirection,
}

/// A permission of the platform's API that a key may be restricted to.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Permission")]
pub struct GqlPermission {
    /// Its name, e.g. `users:read`.
    pub name: &'static str,
    /// What it allows.
    pub description: &'static str,
    /// The one cloud it belongs to; null for both.
    pub cloud: Option<GqlCloud>,
}

impl From<&latchkey_domain::restrictions::Permission> for GqlPermission {
    fn from(p: &latchkey_domain::restrictions::Permission) -> Self {
        GqlPermission { name: p.name, description: p.description, cloud: p.cloud.map(Into::into) }
    }
}

/// What a key may do, where and from where.
#[derive(SimpleObject, Clone, Debug)]
pub struct KeyRestrictions {
    /// Its permissions; null for unrestricted (every permission its owner has).
    pub permissions: Option<Vec<&'static str>>,
    /// The clouds it works in.
    pub clouds: Vec<GqlCloud>,
    /// The addresses and CIDR blocks it may be used from; empty for any.
    pub allowed_ips: Vec<String>,
}

impl From<&latchkey_domain::restrictions::Restrictions> for KeyRestrictions {
    fn from(r: &latchkey_domain::restrictions::Restrictions) -> Self {
        KeyRestrictions {
            permissions: r.permissions.map(|p| p.names()),
            clouds: r.clouds.iter().map(|c| (*c).into()).collect(),
            allowed_ips: r.allowed_networks.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Restrictions of a key; an omitted field is unrestricted.
#[derive(InputObject, Clone, Debug, Default)]
pub struct KeyRestrictionsInput {
    /// Permission names (see `apiKeyPermissions`); null or omitted for every permission.
    pub permissions: Option<Vec<String>>,
    /// The clouds it works in (at least one); omitted for both.
    pub clouds: Option<Vec<GqlCloud>>,
    /// IPv4/IPv6 addresses or CIDR blocks, at most 50; omitted or empty for any address.
    pub allowed_ips: Option<Vec<String>>,
}

impl From<KeyRestrictionsInput> for latchkey_app::RestrictionsInput {
    fn from(r: KeyRestrictionsInput) -> Self {
        latchkey_app::RestrictionsInput {
            permissions: r.permissions,
            clouds: r.clouds.map(|c| c.into_iter().map(Into::into).collect()),
            allowed_ips: r.allowed_ips,
        }
    }
}

/// Input of `updateApiKeyRestrictions`.
#[derive(InputObject, Debug)]
pub struct UpdateApiKeyRestrictionsInput {
    /// The key.
    pub id: ID,
    /// Its new restrictions (they replace the old ones whole).
    pub restrictions: KeyRestrictionsInput,
}

/// A company using the platform.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Tenant")]
pub struct GqlTenant {
    /// Its id.
    pub id: ID,
    /// Its name.
    pub name: String,
}

impl From<&Tenant> for GqlTenant {
    fn from(t: &Tenant) -> Self {
        GqlTenant { id: ID(t.id.to_string()), name: t.name.clone() }
    }
}

/// A user of the tenant.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "User", complex)]
pub struct GqlUser {
    /// Its id.
    pub id: ID,
    /// Display name.
    pub name: String,
    /// Email address; key notices go here. Empty when the caller is an
    /// integration (an API key): integrations see no one's email.
    pub email: String,
    /// Role.
    pub role: GqlUserRole,
    /// False once deactivated: it cannot sign in, and the keys it owns are
    /// suspended until transferred or it is reactivated.
    pub active: bool,
    /// Its key count when already known (the directory reads it with the user).
    #[graphql(skip)]
    pub known_key_count: Option<u64>,
    /// Its shared rate limits when already known.
    #[graphql(skip)]
    pub known_rate_limits: Option<latchkey_domain::limits::RateLimits>,
}

#[async_graphql::ComplexObject]
impl GqlUser {
    /// How many keys it owns. Internal admins only.
    async fn key_count(&self, ctx: &async_graphql::Context<'_>) -> crate::error::ApiResult<i32> {
        use crate::error::OrGraphql;
        let (app, auth) = crate::context::context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let count = match self.known_key_count {
            Some(n) => n,
            None => {
                let id = self.id.parse::<latchkey_domain::UserId>().map_err(|_| {
                    crate::error::gql_error(latchkey_app::AppError::internal(&"a user id does not parse"))
                })?;
                admin.key_count_of(id).await.gql()?
            }
        };
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// The rate limits all of its keys share (every key's request must
    /// also pass these). Internal admins only.
    async fn rate_limits(&self, ctx: &async_graphql::Context<'_>) -> crate::error::ApiResult<Vec<RateLimit>> {
        use crate::error::OrGraphql;
        let (app, auth) = crate::context::context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        if let Some(known) = &self.known_rate_limits {
            return Ok(rate_limits(known));
        }
        let id = self
            .id
            .parse::<latchkey_domain::UserId>()
            .map_err(|_| crate::error::gql_error(latchkey_app::AppError::internal(&"a user id does not parse")))?;
        let limits = admin.owner_rate_limits(id).await.gql()?.unwrap_or_default();
        Ok(rate_limits(&limits))
    }
}

/// A page of the user directory.
#[derive(SimpleObject, Debug)]
pub struct UserConnection {
    /// The users, in creation order.
    pub nodes: Vec<GqlUser>,
    /// Paging (`endCursor` is the last user's id).
    pub page_info: PageInfo,
    /// How many users match in all.
    pub total_count: i32,
}

impl From<&User> for GqlUser {
    fn from(u: &User) -> Self {
        GqlUser {
            id: ID(u.id.to_string()),
            name: u.name.clone(),
            email: u.email.clone(),
            role: u.role.into(),
            active: u.active,
            known_key_count: None,
            known_rate_limits: None,
        }
    }
}

/// An API key as the key table shows it. The secret is never part of it.
#[derive(Clone, Debug)]
pub struct GqlApiKey {
    view: KeyView,
    owner: GqlUser,
    created_by: Option<GqlUser>,
    last_edited_by: Option<GqlUser>,
}

impl From<KeyView> for GqlApiKey {
    fn from(view: KeyView) -> Self {
        GqlApiKey {
            owner: GqlUser::from(&view.owner),
            created_by: view.created_by.as_ref().map(GqlUser::from),
            last_edited_by: view.last_edited_by.as_ref().map(GqlUser::from),
            view,
        }
    }
}

/// An API key as the key table shows it. The secret is shown only once, in
/// the payload of the mutation that made it.
#[Object(name = "ApiKey")]
impl GqlApiKey {
    /// Stable id; does not change when the key is rotated.
    async fn id(&self) -> ID {
        ID(self.view.key.id.to_string())
    }

    /// The last four characters of the current secret.
    async fn last_four(&self) -> &str {
        &self.view.key.last_four
    }

    /// What the key is for.
    async fn description(&self) -> &str {
        &self.view.key.description
    }

    /// The user the key acts for; notices about the key are mailed to them.
    async fn owner(&self) -> &GqlUser {
        &self.owner
    }

    /// Its own rate limits: a request must pass every one (and its owner's).
    async fn rate_limits(&self) -> Vec<RateLimit> {
        rate_limits(&self.view.key.rate_limits)
    }

    /// Its credits; null for unlimited.
    async fn credits(&self) -> Option<KeyCreditsView> {
        self.view.key.credits.as_ref().map(KeyCreditsView::from)
    }

    /// When the key was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.view.key.created_at
    }

    /// Who created the key; null for keys from before key management, and
    /// for integrations (an API key sees no admin's details).
    async fn created_by(&self) -> Option<&GqlUser> {
        self.created_by.as_ref()
    }

    /// When the key was last generated, rotated or edited; null for keys from
    /// before key management.
    async fn last_edited_at(&self) -> Option<DateTime<Utc>> {
        self.view.key.last_edited_at
    }

    /// Who last generated, rotated or edited the key; null for keys from before
    /// key management, and for integrations (an API key sees no admin's details).
    async fn last_edited_by(&self) -> Option<&GqlUser> {
        self.last_edited_by.as_ref()
    }

    /// When an integration last authenticated with the key; null if never.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.view.key.last_used_at
    }

    /// The key's latest successful verification, with where it came from;
    /// null if never used. Written in batches (`LATCHKEY_USAGE_FLUSH_SECS`).
    async fn last_used(&self) -> Option<KeyLastUse> {
        self.view.key.last_use.as_ref().map(KeyLastUse::from)
    }

    /// Verifications of this key from `from` (inclusive) to `to`
    /// (exclusive), by UTC hour or day. Internal admins, and the key itself
    /// (through `viewer`).
    #[graphql(complexity = 10)]
    async fn usage(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: UsageGranularity,
    ) -> ApiResult<UsageSeries> {
        let (app, auth) = context(ctx)?;
        let query = UsageQuery { from, to, granularity: granularity.into() };
        Ok(app.key_usage(auth, self.view.key.id, query).await.gql()?.into())
    }

    /// Successful verifications in the last 30 UTC days, today included.
    #[graphql(name = "usage30d")]
    async fn usage_30d(&self, ctx: &Context<'_>) -> ApiResult<i32> {
        let count = match self.view.usage_30d {
            Some(count) => count,
            None => {
                let (app, auth) = context(ctx)?;
                app.key_usage_30d(auth, self.view.key.id).await.gql()?
            }
        };
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// Whether the key works now.
    async fn status(&self) -> GqlKeyStatus {
        self.view.status.into()
    }

    /// Why the key is disabled; null while it is enabled.
    async fn disabled_reason(&self) -> Option<GqlDisabledReason> {
        self.view.key.disabled_reason.map(Into::into)
    }

    /// When the key policy switches the key off for going unused (its owner
    /// was warned); null when no such warning is pending. Using or enabling
    /// the key starts its clock over.
    async fn unused_disable_at(&self) -> Option<DateTime<Utc>> {
        let warning = self.view.key.unused_warning?;
        (warning.idle_since == self.view.key.idle_since() && self.view.key.disabled_at.is_none())
            .then_some(warning.disable_at)
    }

    /// Whether the key may rotate itself (`POST /v1/keys/rotate`).
    async fn self_rotation(&self) -> bool {
        self.view.key.self_rotation
    }

    /// The rules of your organisation's key policy this key breaks
    /// (`maxLifetimeDays`, `requireExpiry`, `requireRestrictions`); empty when
    /// it complies. A key that breaks a rule set after it was made keeps working.
    async fn policy_violations(&self) -> Vec<String> {
        self.view.policy_violations.iter().map(|rule| (*rule).to_owned()).collect()
    }

    /// When the key stops working; null for never.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.view.key.expires_at
    }

    /// Until when the secret replaced by the last rotation keeps working (its
    /// overlap); null when it no longer works or none was kept.
    async fn previous_secret_expires_at(&self) -> Option<DateTime<Utc>> {
        self.view.previous_secret_until
    }

    /// The last four characters of that previous secret, while it works.
    async fn previous_last_four(&self) -> Option<&str> {
        self.view.previous_secret_until.and(self.view.key.previous_last_four.as_deref())
    }

    /// What the key may do, where and from where.
    async fn restrictions(&self) -> KeyRestrictions {
        KeyRestrictions::from(&self.view.key.restrictions)
    }
}

/// One key on a page.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "ApiKeyEdge")]
pub struct ApiKeyEdge {
    /// Pass as `after` to continue after this key.
    pub cursor: String,
    /// The key.
    pub node: GqlApiKey,
}

/// Where a page stands.
#[derive(SimpleObject, Clone, Debug)]
pub struct PageInfo {
    /// Whether older keys follow.
    pub has_next_page: bool,
    /// Whether this page was requested with a cursor (newer keys precede it).
    pub has_previous_page: bool,
    /// Cursor of the first key on the page.
    pub start_cursor: Option<String>,
    /// Cursor of the last key on the page; pass as `after` for the next page.
    pub end_cursor: Option<String>,
}

/// A page of the key table, newest first.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "ApiKeyConnection")]
pub struct ApiKeyConnection {
    /// The keys with their cursors.
    pub edges: Vec<ApiKeyEdge>,
    /// The keys.
    pub nodes: Vec<GqlApiKey>,
    /// Paging.
    pub page_info: PageInfo,
    /// How many keys match the filters in all, counted up to 10,000 (see
    /// `totalCountCapped`).
    pub total_count: i32,
    /// Whether more keys match than `totalCount`: counting stops at 10,000
    /// (show "10,000+"), so that a tenant of millions of keys is not read
    /// whole for a number.
    pub total_count_capped: bool,
}

const CURSOR_PREFIX: &str = "key:";

/// How a cursor names the order it belongs to.
fn order_tag(field: KeyOrderField) -> &'static str {
    match field {
        KeyOrderField::CreatedAt => "created",
        KeyOrderField::ExpiresAt => "expires",
        KeyOrderField::LastUsedAt => "used",
        KeyOrderField::Usage30d => "usage",
    }
}

/// An opaque cursor for a key on a page ordered by `field`: the key's id and
/// its value of that field (creation order is id order and needs none).
pub fn encode_cursor(field: KeyOrderField, view: &KeyView) -> String {
    let key = &view.key;
    let value = match field {
        KeyOrderField::CreatedAt => return URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}", key.id)),
        KeyOrderField::ExpiresAt => key.expires_at,
        KeyOrderField::LastUsedAt => key.last_used_at,
        KeyOrderField::Usage30d => {
            let count = view.usage_30d.unwrap_or(0);
            return URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}:{}:{count}", order_tag(field), key.id));
        }
    };
    let value = value.map_or_else(|| "-".to_owned(), |v| v.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{}:{}:{value}", order_tag(field), key.id))
}

/// Decodes a cursor made by [`encode_cursor`] for a page ordered by `field`;
/// `None` for garbage or a cursor of another order.
pub fn decode_cursor(field: KeyOrderField, cursor: &str) -> Option<KeyCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let rest = text.strip_prefix(CURSOR_PREFIX)?;
    if field == KeyOrderField::CreatedAt {
        return Some(KeyCursor { id: rest.parse().ok()?, value: None, count: 0 });
    }
    let mut parts = rest.splitn(3, ':');
    let (Some(name), Some(id), Some(value)) = (parts.next(), parts.next(), parts.next()) else { return None };
    if name != order_tag(field) {
        return None;
    }
    if field == KeyOrderField::Usage30d {
        return Some(KeyCursor { id: id.parse().ok()?, value: None, count: value.parse().ok()? });
    }
    let value = match value {
        "-" => None,
        v => Some(DateTime::parse_from_rfc3339(v).ok()?.with_timezone(&Utc)),
    };
    Some(KeyCursor { id: id.parse().ok()?, value, count: 0 })
}

/// Who is calling and where.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "Viewer")]
pub struct Viewer {
    /// The caller's tenant.
    pub tenant: GqlTenant,
    /// The signed-in user; null when authenticated with an API key.
    pub user: Option<GqlUser>,
    /// The API key used; null when signed in as a user.
    pub api_key: Option<GqlApiKey>,
    /// The clouds the caller may act in.
    pub clouds: Vec<GqlCloud>,
    /// What an API key may do: its permissions, bounded by its owner's; null
    /// for a signed-in user or a key that may do everything.
    pub permissions: Option<Vec<&'static str>>,
}

/// Why an input was refused.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "latchkey_domain::error::ViolationCode")]
pub enum UserErrorCode {
    /// A required value is empty.
    Blank,
    /// A value is too long.
    TooLong,
    /// A value has a form that is not accepted (e.g. control characters).
    Invalid,
    /// No such thing in your tenant.
    NotFound,
    /// That user cannot own API keys (only internal admins and integration users can).
    InvalidOwner,
    /// Your tenant has as many of these as it may have (e.g. 20 webhook endpoints).
    LimitReached,
    /// Your organisation's key policy does not allow it; the message names the rule and its value.
    Policy,
}

/// A refused input. Nothing was changed.
#[derive(SimpleObject, Clone, Debug)]
pub struct UserError {
    /// Path to the input field, e.g. `["input", "description"]`.
    pub field: Vec<String>,
    /// A message fit for the person who typed the input.
    pub message: String,
    /// A stable code.
    pub code: UserErrorCode,
}

impl From<FieldViolation> for UserError {
    fn from(v: FieldViolation) -> Self {
        UserError {
            field: std::iter::once("input").chain(v.field.split('.')).map(str::to_owned).collect(),
            message: v.violation.message,
            code: v.violation.code.into(),
        }
    }
}

/// Converts refused inputs.
pub fn user_errors(violations: Vec<FieldViolation>) -> Vec<UserError> {
    violations.into_iter().map(UserError::from).collect()
}

/// Input of `generateApiKey`.
#[derive(InputObject, Debug)]
pub struct GenerateApiKeyInput {
    /// The owner: yourself, another internal admin, or an integration user.
    pub owner_id: ID,
    /// What the key is for (1 to 255 characters).
    pub description: String,
    /// When the key stops working: in the future, at most 366 days ahead.
    /// Omit for a key that never expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// What the key may do, where and from where; omit for full access.
    pub restrictions: Option<KeyRestrictionsInput>,
    /// Its rate limits (at most 5); omit for none.
    pub rate_limits: Option<Vec<RateLimitInput>>,
    /// Its credits; omit for unlimited.
    pub credits: Option<KeyCreditsInput>,
    /// Whether the key may rotate itself with `POST /v1/keys/rotate`
    /// (default false).
    pub self_rotation: Option<bool>,
}

impl From<GenerateApiKeyInput> for latchkey_app::GenerateKey {
    fn from(input: GenerateApiKeyInput) -> Self {
        latchkey_app::GenerateKey {
            owner_id: input.owner_id.0,
            description: input.description,
            expires_at: input.expires_at,
            restrictions: input.restrictions.map(Into::into),
            rate_limits: input.rate_limits.map(limit_inputs).unwrap_or_default(),
            credits: input.credits.map(Into::into),
            self_rotation: input.self_rotation.unwrap_or(false),
        }
    }
}

/// Input of `setApiKeySelfRotation`.
#[derive(InputObject, Debug)]
pub struct SetApiKeySelfRotationInput {
    /// The key.
    pub id: ID,
    /// Whether it may rotate itself with `POST /v1/keys/rotate`.
    pub self_rotation: bool,
}

/// Result of `generateApiKey`.
#[derive(SimpleObject, Debug, Default)]
pub struct GenerateApiKeyPayload {
    /// The new key; null when the input was refused.
    pub api_key: Option<GqlApiKey>,
    /// The secret. Shown only here, only once: it cannot be retrieved later.
    pub secret: Option<String>,
    /// Why the input was refused; empty on success.
    pub user_errors: Vec<UserError>,
}

/// Input of `rotateApiKey`.
#[derive(InputObject, Debug)]
pub struct RotateApiKeyInput {
    /// The key to rotate.
    pub id: ID,
    /// How long the current secret keeps working beside the new one, in
    /// seconds: 0 (the default: it stops at once) to 604800 (7 days). Only a
    /// key that works keeps its old secret, never past the key's expiry.
    pub overlap_seconds: Option<i32>,
    /// The key's expiry from now on, as in `generateApiKey`; omit for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// End the overlap as soon as the new secret verifies once (on any
    /// replica), rather than only at `overlapSeconds`' end (default false).
    pub end_overlap_on_first_use: Option<bool>,
}

/// Result of `rotateApiKey`.
#[derive(SimpleObject, Debug, Default)]
pub struct RotateApiKeyPayload {
    /// The key with its new last four; null when refused.
    pub api_key: Option<GqlApiKey>,
    /// The new secret. Shown only here, only once. The old secret no longer
    /// works, or works until `apiKey.previousSecretExpiresAt` with an overlap.
    pub secret: Option<String>,
    /// Why the input was refused; empty on success.
    pub user_errors: Vec<UserError>,
}

/// Input of `updateApiKeyDescription`.
#[derive(InputObject, Debug)]
pub struct UpdateApiKeyDescriptionInput {
    /// The key to edit.
    pub id: ID,
    /// The new description (1 to 255 characters).
    pub description: String,
}

/// Result of `updateApiKeyDescription`.
#[derive(SimpleObject, Debug, Default)]
pub struct UpdateApiKeyDescriptionPayload {
    /// The edited key; null when refused.
    pub api_key: Option<GqlApiKey>,
    /// Why the input was refused; empty on success.
    pub user_errors: Vec<UserError>,
}

/// Input of `expireApiKeyPreviousSecret`, `disableApiKey` and `enableApiKey`.
#[derive(InputObject, Debug)]
pub struct ApiKeyIdInput {
    /// The key.
    pub id: ID,
}

/// Input of `setApiKeyExpiry`.
#[derive(InputObject, Debug)]
pub struct SetApiKeyExpiryInput {
    /// The key.
    pub id: ID,
    /// The new expiry: in the future, at most 366 days ahead; null (or
    /// omitted) for never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Result of a change to one key (`expireApiKeyPreviousSecret`,
/// `setApiKeyExpiry`, `disableApiKey`, `enableApiKey`, `updateApiKeyRestrictions`).
#[derive(SimpleObject, Debug, Default)]
pub struct ApiKeyChangePayload {
    /// The key as it is now; null when refused.
    pub api_key: Option<GqlApiKey>,
    /// Why the input was refused; empty on success.
    pub user_errors: Vec<UserError>,
}

impl ApiKeyChangePayload {
    /// The payload of a use case's outcome.
    pub fn of(outcome: latchkey_app::Outcome<KeyView>) -> Self {
        match outcome {
            Ok(key) => ApiKeyChangePayload { api_key: Some(key.into()), user_errors: vec![] },
            Err(violations) => ApiKeyChangePayload { api_key: None, user_errors: user_errors(violations) },
        }
    }
}

/// Input of `transferApiKey`.
#[derive(InputObject, Debug)]
pub struct TransferApiKeyInput {
    /// The key.
    pub id: ID,
    /// The new owner: an active internal admin or integration user of the tenant.
    pub owner_id: ID,
}

/// Input of `transferApiKeys`.
#[derive(InputObject, Debug)]
pub struct TransferApiKeysInput {
    /// Whose keys (active or not).
    pub from_owner_id: ID,
    /// The new owner: an active internal admin or integration user of the tenant.
    pub to_owner_id: ID,
}

/// Result of `transferApiKeys`.
#[derive(SimpleObject, Debug, Default)]
pub struct TransferApiKeysPayload {
    /// The keys moved, as they are now; empty when refused (or there were none).
    pub api_keys: Vec<GqlApiKey>,
    /// Why the input was refused; empty on success.
    pub user_errors: Vec<UserError>,
}

impl TransferApiKeysPayload {
    /// The payload of a use case's outcome.
    pub fn of(outcome: latchkey_app::Outcome<Vec<KeyView>>) -> Self {
        match outcome {
            Ok(keys) => {
                TransferApiKeysPayload { api_keys: keys.into_iter().map(Into::into).collect(), user_errors: vec![] }
            }
            Err(violations) => TransferApiKeysPayload { api_keys: vec![], user_errors: user_errors(violations) },
        }
    }
}

/// Input of `setUserActive`.
#[derive(InputObject, Debug)]
pub struct SetUserActiveInput {
    /// The user.
    pub id: ID,
    /// `false` deactivates (sign-in refused, keys suspended); `true` reactivates.
    pub active: bool,
}

/// A mutation's result that is one user: the user as it is now (null when
/// refused) and why the input was refused.
macro_rules! user_payload {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(SimpleObject, Debug, Default)]
        pub struct $name {
            /// The user as it is now; null when refused.
            pub user: Option<GqlUser>,
            /// Why the input was refused; empty on success.
            pub user_errors: Vec<UserError>,
        }

        impl $name {
            /// The payload of a use case's outcome.
            pub fn of(outcome: latchkey_app::Outcome<User>) -> Self {
                match outcome {
                    Ok(user) => $name { user: Some(GqlUser::from(&user)), user_errors: vec![] },
                    Err(violations) => $name { user: None, user_errors: user_errors(violations) },
                }
            }
        }
    };
}

user_payload!(
    /// Result of `setUserActive`.
    SetUserActivePayload
);

/// Result of `setOwnerRateLimits`.
#[derive(SimpleObject, Debug, Default)]
pub struct SetOwnerRateLimitsPayload {
    /// The user as it is now; null when refused.
    pub user: Option<GqlUser>,
    /// Why the input was refused; empty on success.
    pub user_errors: Vec<UserError>,
}

impl SetOwnerRateLimitsPayload {
    /// The payload of the use case's outcome.
    pub fn of(outcome: latchkey_app::Outcome<(User, latchkey_domain::limits::RateLimits)>) -> Self {
        match outcome {
            Ok((user, limits)) => {
                let user = GqlUser { known_rate_limits: Some(limits), ..GqlUser::from(&user) };
                SetOwnerRateLimitsPayload { user: Some(user), user_errors: vec![] }
            }
            Err(violations) => SetOwnerRateLimitsPayload { user: None, user_errors: user_errors(violations) },
        }
    }
}

/// Input of `setUserScimManaged`.
#[derive(InputObject, Debug)]
pub struct SetUserScimManagedInput {
    /// The user.
    pub id: ID,
    /// `true` lets SCIM provisioning see and change the user; `false` takes it away.
    pub managed: bool,
}

user_payload!(
    /// Result of `setUserScimManaged`.
    SetUserScimManagedPayload
);

/// Input of `deleteApiKey`.
#[derive(InputObject, Debug)]
pub struct DeleteApiKeyInput {
    /// The key to delete.
    pub id: ID,
}

/// Result of `deleteApiKey`.
#[derive(SimpleObject, Debug, Default)]
pub struct DeleteApiKeyPayload {
    /// The id of the deleted key; null when refused.
    pub deleted_api_key_id: Option<ID>,
    /// Why the input was refused; empty on success.
    pub user_errors: Vec<UserError>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn cursors_round_trip_and_refuse_garbage_and_other_orders() {
        let id = latchkey_domain::ApiKeyId(Uuid::now_v7());
        let at = DateTime::parse_from_rfc3339("2026-05-01T10:00:00.123456Z").unwrap().with_timezone(&Utc);
        let view = |expires_at| KeyView {
            key: latchkey_domain::ApiKey {
                expires_at,
                ..latchkey_domain::ApiKey::example(id, latchkey_domain::TenantId(Uuid::nil()), at)
            },
            owner: latchkey_domain::lifecycle::system_actor(latchkey_domain::TenantId(Uuid::nil())),
            created_by: None,
            last_edited_by: None,
            status: latchkey_domain::KeyStatus::Active,
            previous_secret_until: None,
            usage_30d: Some(7),
            policy_violations: Vec::new(),
        };
        let (created, expires) = (KeyOrderField::CreatedAt, KeyOrderField::ExpiresAt);
        assert_eq!(
            decode_cursor(created, &encode_cursor(created, &view(None))),
            Some(KeyCursor { id, value: None, count: 0 })
        );
        let with_value = encode_cursor(expires, &view(Some(at)));
        assert_eq!(decode_cursor(expires, &with_value), Some(KeyCursor { id, value: Some(at), count: 0 }));
        assert_eq!(
            decode_cursor(expires, &encode_cursor(expires, &view(None))),
            Some(KeyCursor { id, value: None, count: 0 })
        );
        let usage = KeyOrderField::Usage30d;
        assert_eq!(
            decode_cursor(usage, &encode_cursor(usage, &view(None))),
            Some(KeyCursor { id, value: None, count: 7 })
        );
        assert_eq!(decode_cursor(usage, &with_value), None);
        assert_eq!(decode_cursor(created, &with_value), None, "a cursor of another order");
        assert_eq!(decode_cursor(KeyOrderField::LastUsedAt, &with_value), None);
        for junk in ["", "!!!", "a2V5Om5vcGU", &URL_SAFE_NO_PAD.encode(id.to_string())] {
            assert_eq!(decode_cursor(created, junk), None, "{junk}");
            assert_eq!(decode_cursor(expires, junk), None, "{junk}");
        }
    }
}

/// What an audit entry records.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "ApiKeyEventAction", remote = "latchkey_domain::AuditAction")]
pub enum GqlAuditAction {
    /// The key was generated.
    Generated,
    /// The key's secret was replaced.
    Rotated,
    /// The key's description changed.
    DescriptionChanged,
    /// The key was deleted.
    Deleted,
    /// A rotation's overlap was ended early: the previous secret stopped working.
    PreviousSecretExpired,
    /// The key's expiry was set, changed or cleared.
    ExpiryChanged,
    /// The key was disabled.
    Disabled,
    /// The key was enabled.
    Enabled,
    /// The key expired (recorded by Latchkey; the actor is "Latchkey").
    Expired,
    /// The key's restrictions changed.
    RestrictionsChanged,
    /// The key was reported leaked (actor: who reported it).
    LeakReported,
    /// The key was given to another owner.
    OwnerChanged,
    /// The key was imported from another system by an operator (actor: "Latchkey").
    Imported,
    /// The key's rate limits or credits were replaced (`limitsBefore`, `limitsAfter`).
    LimitsChanged,
    /// Credits were added to the key (`creditsAdded`).
    CreditsAdded,
    /// An owner's shared rate limits were replaced (no key: `keyId` is the nil
    /// id, `keyDescription` names the owner).
    OwnerLimitsChanged,
    /// A tenant setting changed (no key: `keyId` is the nil id, `keyDescription`
    /// names the setting, `oldDescription`/`newDescription` hold its values).
    SettingsChanged,
    /// Whether the key may rotate itself changed (`newDescription`: `on` or `off`).
    SelfRotationChanged,
}

/// One entry of the audit trail. Kept after the key is deleted.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "ApiKeyEvent")]
pub struct GqlAuditEntry {
    /// Entry id.
    pub id: ID,
    /// What happened.
    pub action: GqlAuditAction,
    /// The key (which may no longer exist).
    pub key_id: ID,
    /// The key's description after the change (for a deletion: before it).
    pub key_description: String,
    /// The key's last four after the change.
    pub key_last_four: String,
    /// Who did it; null if that user no longer exists.
    pub actor: Option<GqlUser>,
    /// The actor's name at the time.
    pub actor_name: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// For a description change: the previous description.
    pub old_description: Option<String>,
    /// For a description change: the new description.
    pub new_description: Option<String>,
    /// For a rotation with an overlap, or its early end: until when the
    /// previous secret works.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// For an expiry change: the expiry before (null: never).
    pub old_expires_at: Option<DateTime<Utc>>,
    /// For an expiry change: the expiry after (null: never).
    pub new_expires_at: Option<DateTime<Utc>>,
    /// For a restriction change: the restrictions before, described.
    pub restrictions_before: Option<String>,
    /// For a restriction change: the restrictions after, described.
    pub restrictions_after: Option<String>,
    /// For a leak report: where the key was found.
    pub leak_url: Option<String>,
    /// For a leak report: whether the key was revoked for it.
    pub leak_revoked: Option<bool>,
    /// For a transfer: the previous owner's name at the time.
    pub old_owner_name: Option<String>,
    /// For a transfer: the new owner's name at the time.
    pub new_owner_name: Option<String>,
    /// For a change of rate limits or credits (of the key, or of an owner's
    /// shared limits): before, described.
    pub limits_before: Option<String>,
    /// For a change of rate limits or credits: after, described.
    pub limits_after: Option<String>,
    /// For a top-up: the credits added.
    pub credits_added: Option<i32>,
    /// Why Latchkey made the change, when it was not an admin's action:
    /// `NEW_SECRET_USED` for a `PREVIOUS_SECRET_EXPIRED` because the new
    /// secret verified (`endOverlapOnFirstUse`).
    pub reason: Option<String>,
}

/// One audit entry on a page.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "ApiKeyEventEdge")]
pub struct GqlAuditEntryEdge {
    /// Pass as `after` to continue after this entry.
    pub cursor: String,
    /// The entry.
    pub node: GqlAuditEntry,
}

/// A page of the audit trail, newest first.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "ApiKeyEventConnection")]
pub struct GqlAuditEntryConnection {
    /// The entries with their cursors.
    pub edges: Vec<GqlAuditEntryEdge>,
    /// The entries.
    pub nodes: Vec<GqlAuditEntry>,
    /// Paging.
    pub page_info: PageInfo,
    /// How many entries match in all.
    pub total_count: i32,
}

const AUDIT_CURSOR_PREFIX: &str = "audit:";

/// An opaque cursor for an audit entry.
pub fn encode_audit_cursor(id: uuid::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{AUDIT_CURSOR_PREFIX}{id}"))
}

/// Decodes a cursor made by [`encode_audit_cursor`].
pub fn decode_audit_cursor(cursor: &str) -> Option<uuid::Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    uuid::Uuid::parse_str(text.strip_prefix(AUDIT_CURSOR_PREFIX)?).ok()
}

impl From<AuditView> for GqlAuditEntry {
    fn from(AuditView { entry: e, actor }: AuditView) -> Self {
        let mut event = GqlAuditEntry {
            id: ID(e.id.to_string()),
            action: e.action().into(),
            key_id: ID(e.key_id.to_string()),
            key_description: e.key_description,
            key_last_four: e.key_last_four,
            actor: actor.as_ref().map(GqlUser::from),
            actor_name: e.actor_name,
            occurred_at: e.occurred_at,
            old_description: None,
            new_description: None,
            previous_secret_expires_at: None,
            old_expires_at: None,
            new_expires_at: None,
            restrictions_before: None,
            restrictions_after: None,
            leak_url: None,
            leak_revoked: None,
            old_owner_name: None,
            new_owner_name: None,
            limits_before: None,
            limits_after: None,
            credits_added: None,
            reason: None,
        };
        match e.change {
            AuditChange::DescriptionChanged { old, new } | AuditChange::SettingChanged { old, new } => {
                (event.old_description, event.new_description) = (Some(old), Some(new));
            }
            AuditChange::Rotated { previous_secret_until } => event.previous_secret_expires_at = previous_secret_until,
            AuditChange::PreviousSecretExpired { at, new_secret_used } => {
                event.previous_secret_expires_at = Some(at);
                event.reason = new_secret_used.then(|| "NEW_SECRET_USED".to_owned());
            }
            AuditChange::SelfRotationChanged { allowed } => {
                event.new_description = Some(if allowed { "on" } else { "off" }.to_owned());
            }
            AuditChange::ExpiryChanged { old, new } => (event.old_expires_at, event.new_expires_at) = (old, new),
            AuditChange::RestrictionsChanged { before, after } => {
                (event.restrictions_before, event.restrictions_after) = (Some(before), Some(after));
            }
            AuditChange::LeakReported { url, revoked, .. } => {
                (event.leak_url, event.leak_revoked) = (url, Some(revoked));
            }
            AuditChange::OwnerChanged { before, after } => {
                (event.old_owner_name, event.new_owner_name) = (Some(before), Some(after));
            }
            AuditChange::LimitsChanged { before, after } | AuditChange::OwnerLimitsChanged { before, after } => {
                (event.limits_before, event.limits_after) = (Some(before), Some(after));
            }
            AuditChange::CreditsAdded { amount } => {
                event.credits_added = Some(i32::try_from(amount).unwrap_or(i32::MAX))
            }
            AuditChange::Generated
            | AuditChange::Imported
            | AuditChange::Deleted
            | AuditChange::Disabled
            | AuditChange::Enabled
            | AuditChange::Expired => {}
        }
        event
    }
}
