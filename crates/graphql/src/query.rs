//! Queries.

use async_graphql::{Context, ID, Object};
use latchkey_app::keys::DEFAULT_PAGE_SIZE;
use latchkey_app::{AppError, AuditQuery, KeyOrderField, KeyTableQuery, Page, UserDirectoryQuery};

use chrono::{DateTime, Utc};
use latchkey_app::usage::UsageQuery;

use crate::context::context;
use crate::error::{ApiResult, OrGraphql};
use crate::types::{
    ApiKeyConnection, ApiKeyEdge, ApiKeyOrder, GqlApiKey, GqlAuditEntry, GqlAuditEntryConnection, GqlAuditEntryEdge,
    GqlCloud, GqlKeyStatus, GqlPermission, GqlTenant, GqlUser, GqlUserRole, OrderDirection, PageInfo, TenantSettings,
    UserConnection, Viewer, decode_audit_cursor, decode_cursor, encode_audit_cursor, encode_cursor,
};
use crate::usage::{UsageGranularity, UsageSeries};

/// The query root: the keys' queries, the key policy's and the webhooks'.
#[derive(async_graphql::MergedObject, Debug, Default)]
pub struct QueryRoot(KeyQuery, crate::key_policy::KeyPolicyQuery, crate::webhooks::WebhookQuery);

/// Queries of keys, users, usage and the tenant.
#[derive(Debug, Default)]
pub struct KeyQuery;

/// Decodes an `after` cursor.
fn cursor<T>(after: Option<String>, decode: fn(&str) -> Option<T>) -> ApiResult<Option<T>> {
    after
        .map(|c| decode(&c).ok_or_else(|| AppError::BadUserInput("`after` is not a valid cursor.".into())))
        .transpose()
        .gql()
}

fn page_info<T>(page: &Page<T>, cursors: &[String], after_given: bool) -> PageInfo {
    PageInfo {
        has_next_page: page.has_next_page,
        has_previous_page: after_given,
        start_cursor: cursors.first().cloned(),
        end_cursor: cursors.last().cloned(),
    }
}

/// What a page costs: what one item selects, times the items asked for.
fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first.unwrap_or(DEFAULT_PAGE_SIZE).clamp(1, latchkey_app::keys::MAX_PAGE_SIZE);
    usize::try_from(items).unwrap_or(1).saturating_mul(child_complexity)
}

#[Object]
impl KeyQuery {
    /// Who is calling: the tenant, the signed-in user or the API key, and the
    /// clouds they may act in.
    async fn viewer(&self, ctx: &Context<'_>) -> ApiResult<Viewer> {
        let (app, auth) = context(ctx)?;
        let viewer = app.viewer(auth).gql()?;
        Ok(Viewer {
            tenant: GqlTenant::from(&viewer.tenant),
            user: viewer.user.as_ref().map(GqlUser::from),
            api_key: viewer.api_key.map(GqlApiKey::from),
            clouds: viewer.clouds.into_iter().map(GqlCloud::from).collect(),
            permissions: viewer.permissions,
        })
    }

    /// Your tenant's settings. Only internal admins in the employee cloud.
    async fn tenant_settings(&self, ctx: &Context<'_>) -> ApiResult<TenantSettings> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(TenantSettings {
            leak_response: admin.leak_response().await.gql()?.into(),
            scim_may_grant_internal_admin: admin.scim_may_grant_internal_admin().await.gql()?,
        })
    }

    /// Every permission a key can be restricted to, grouped by cloud in the
    /// order admins see them.
    async fn api_key_permissions(&self, ctx: &Context<'_>) -> ApiResult<Vec<GqlPermission>> {
        let (_, auth) = context(ctx)?;
        auth.principal().gql()?;
        Ok(latchkey_domain::restrictions::PERMISSIONS.iter().map(GqlPermission::from).collect())
    }

    /// The key table, newest first unless `orderBy` says otherwise. Only
    /// internal admins in the employee cloud.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    #[allow(clippy::too_many_arguments)] // each is a GraphQL argument
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_PAGE_SIZE)", desc = "Page size, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (a previous page's `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Only keys of this owner.")] owner_id: Option<ID>,
        #[graphql(desc = "Only keys whose description contains this, ignoring case.")] search: Option<String>,
        #[graphql(desc = "Only keys in one of these states.")] status: Option<Vec<GqlKeyStatus>>,
        #[graphql(desc = "The order (default: by creation, newest first).")] order_by: Option<ApiKeyOrder>,
        #[graphql(desc = "Only keys with no successful verification in this many days (1 to 3650); \
                          a key never used counts from its creation.")]
        unused_for_days: Option<i32>,
        #[graphql(desc = "Only keys that break your organisation's key policy (true), or all keys \
                          (false or absent).")]
        violates_policy: Option<bool>,
    ) -> ApiResult<ApiKeyConnection> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let order = order_by.map_or(KeyOrderField::CreatedAt, |o| o.field.into());
        let ascending = order_by.is_some_and(|o| o.direction == OrderDirection::Asc);
        let after = after
            .map(|c| {
                decode_cursor(order, &c)
                    .ok_or_else(|| AppError::BadUserInput("`after` is not a valid cursor for this order.".into()))
            })
            .transpose()
            .gql()?;
        let statuses = status.unwrap_or_default().into_iter().map(Into::into).collect();
        let query = KeyTableQuery {
            first,
            after,
            order,
            ascending,
            statuses,
            owner_id: owner_id.map(|id| id.0),
            search,
            unused_for_days,
            violates_policy: violates_policy.unwrap_or(false),
            count_total: ["totalCount", "totalCountCapped"].iter().any(|f| ctx.look_ahead().field(f).exists()),
        };
        let page = admin.key_table(query).await.gql()?;
        let cursors: Vec<String> = page.items.iter().map(|v| encode_cursor(order, v)).collect();
        let page_info = page_info(&page, &cursors, after.is_some());
        let nodes: Vec<GqlApiKey> = page.items.into_iter().map(GqlApiKey::from).collect();
        let edges = nodes.iter().zip(cursors).map(|(node, cursor)| ApiKeyEdge { cursor, node: node.clone() }).collect();
        Ok(ApiKeyConnection {
            edges,
            nodes,
            page_info,
            total_count: i32::try_from(page.total_count).unwrap_or(i32::MAX),
            total_count_capped: page.count_capped,
        })
    }

    /// Verifications of all your tenant's keys from `from` (inclusive) to
    /// `to` (exclusive), by UTC hour or day. Internal admins only.
    async fn tenant_usage(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: UsageGranularity,
    ) -> ApiResult<UsageSeries> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let query = UsageQuery { from, to, granularity: granularity.into() };
        Ok(admin.tenant_usage(query).await.gql()?.into())
    }

    /// The credential report of your tenant as CSV (a header line, then one
    /// line per key): id, last four, description, owner name and email,
    /// status, restrictions in words, created, last edited, last used (time,
    /// cloud, address), expires, verifications and refusals in the last 30
    /// days. Internal admins only.
    async fn api_key_credential_report(&self, ctx: &Context<'_>) -> ApiResult<String> {
        let (app, auth) = context(ctx)?;
        app.key_admin(auth).gql()?.credential_report_csv().await.gql()
    }

    /// One key of your tenant; null when there is no such key.
    async fn api_key(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<GqlApiKey>> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(admin.key(&id).await.gql()?.map(GqlApiKey::from))
    }

    /// The audit trail of your tenant's keys (or of one key), newest first:
    /// every generate, rotate, description change, expiry change, disable,
    /// enable, early end of an overlap, expiry and delete, kept after the key
    /// is deleted.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn api_key_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only entries of this key (which may have been deleted).")] key_id: Option<ID>,
        #[graphql(default_with = "Some(DEFAULT_PAGE_SIZE)", desc = "Page size, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (a previous page's `endCursor`).")] after: Option<String>,
    ) -> ApiResult<GqlAuditEntryConnection> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let after = cursor(after, decode_audit_cursor)?;
        let page = admin.audit_trail(AuditQuery { key_id: key_id.map(|id| id.0), first, after }).await.gql()?;
        let cursors: Vec<String> = page.items.iter().map(|v| encode_audit_cursor(v.entry.id)).collect();
        let page_info = page_info(&page, &cursors, after.is_some());
        let nodes: Vec<GqlAuditEntry> = page.items.into_iter().map(GqlAuditEntry::from).collect();
        let edges =
            nodes.iter().zip(cursors).map(|(node, cursor)| GqlAuditEntryEdge { cursor, node: node.clone() }).collect();
        Ok(GqlAuditEntryConnection {
            edges,
            nodes,
            page_info,
            total_count: i32::try_from(page.total_count).unwrap_or(i32::MAX),
        })
    }

    /// The tenant's users, in creation order, with what they own. Internal
    /// admins only.
    #[graphql(complexity = "page_cost(first, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
        role: Option<GqlUserRole>,
        active: Option<bool>,
    ) -> ApiResult<UserConnection> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        let after_given = after.is_some();
        let query = UserDirectoryQuery { first, after, search, role: role.map(Into::into), active };
        let page = admin.users(query).await.gql()?;
        let cursors: Vec<String> = page.items.iter().map(|(u, _)| u.id.to_string()).collect();
        let info = page_info(&page, &cursors, after_given);
        let nodes = page
            .items
            .iter()
            .map(|(user, keys)| GqlUser { known_key_count: Some(*keys), ..GqlUser::from(user) })
            .collect();
        Ok(UserConnection { nodes, page_info: info, total_count: i32::try_from(page.total_count).unwrap_or(i32::MAX) })
    }

    /// Who may own a new key: you first, then the other internal admins and
    /// the integration users, by name.
    async fn api_key_owner_candidates(&self, ctx: &Context<'_>) -> ApiResult<Vec<GqlUser>> {
        let (app, auth) = context(ctx)?;
        let admin = app.key_admin(auth).gql()?;
        Ok(admin.owner_candidates().await.gql()?.iter().map(GqlUser::from).collect())
    }
}
