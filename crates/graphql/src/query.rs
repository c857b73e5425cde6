//! Queries.

use async_graphql::{Context, ID, Object};
use latchkey_domain::{SearchTerm, UserId};
use latchkey_store::KeyQuery;

use crate::auth::{Authentication, Principal};
use crate::error::{ApiError, ApiResult, fail};
use crate::service::KeyService;
use crate::types::{
    ApiKeyConnection, ApiKeyEdge, ApiKeyEventConnection, ApiKeyEventEdge, GqlApiKey, GqlCloud, GqlTenant, GqlUser,
    PageInfo, Viewer, decode_audit_cursor, decode_cursor, encode_audit_cursor, encode_cursor, hydrate, hydrate_audit,
};

/// Largest page of the key table.
pub const MAX_PAGE_SIZE: i32 = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: i32 = 50;

/// The query root.
#[derive(Debug, Default)]
pub struct QueryRoot;

fn auth<'a>(ctx: &Context<'a>) -> &'a Authentication {
    ctx.data_opt::<Authentication>().unwrap_or(&Authentication::Anonymous)
}

fn service<'a>(ctx: &Context<'a>) -> ApiResult<&'a KeyService> {
    ctx.data::<KeyService>().map_err(|_| async_graphql::ErrorExtensions::extend(&ApiError::internal(&"no service")))
}

fn api<T>(r: Result<T, ApiError>) -> ApiResult<T> {
    r.map_err(|e| async_graphql::ErrorExtensions::extend(&e))
}

#[Object]
impl QueryRoot {
    /// Who is calling: the tenant, the signed-in user or the API key, and the
    /// clouds they may act in.
    async fn viewer(&self, ctx: &Context<'_>) -> ApiResult<Viewer> {
        let principal = api(auth(ctx).principal())?;
        let tenant = GqlTenant::from(principal.tenant());
        let clouds = principal.clouds().into_iter().map(GqlCloud::from).collect();
        match principal {
            Principal::Admin { user, .. } => {
                Ok(Viewer { tenant, user: Some(GqlUser::from(user)), api_key: None, clouds })
            }
            Principal::Integration { key, tenant: t } => {
                let store = service(ctx)?.store();
                let api_key = api(hydrate(store, t.id, vec![key.clone()]).await)?.pop();
                Ok(Viewer { tenant, user: None, api_key, clouds })
            }
        }
    }

    /// The key table, newest first. Only internal admins in the employee cloud.
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_PAGE_SIZE)", desc = "Page size, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (a previous page's `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Only keys of this owner.")] owner_id: Option<ID>,
        #[graphql(desc = "Only keys whose description contains this, ignoring case.")] search: Option<String>,
    ) -> ApiResult<ApiKeyConnection> {
        let admin = api(auth(ctx).key_manager())?;
        let (first, after_id) = api(paging(first, after.as_deref(), decode_cursor))?;
        let search = match search.as_deref().map(SearchTerm::parse).transpose() {
            Ok(s) => s.flatten(),
            Err(_) => return fail(ApiError::BadUserInput("`search` is too long (maximum is 255 characters).".into())),
        };
        let owner = match owner_id {
            None => None,
            Some(raw) => match raw.parse::<UserId>() {
                Ok(id) => Some(id),
                // An owner that cannot exist owns nothing: same as an unknown one.
                Err(_) => return Ok(empty_connection(after_id.is_some())),
            },
        };
        let store = service(ctx)?.store();
        let query = KeyQuery { first, after: after_id, owner, search };
        let page = api(store.list_keys(admin.tenant_id, &query).await.map_err(ApiError::from))?;
        let nodes = api(hydrate(store, admin.tenant_id, page.keys).await)?;
        let edges: Vec<ApiKeyEdge> =
            nodes.iter().map(|node| ApiKeyEdge { cursor: encode_cursor(node_id(node)), node: node.clone() }).collect();
        let page_info = PageInfo {
            has_next_page: page.has_next_page,
            has_previous_page: after_id.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Ok(ApiKeyConnection {
            edges,
            nodes,
            page_info,
            total_count: i32::try_from(page.total_count).unwrap_or(i32::MAX),
        })
    }

    /// One key of your tenant; null when there is no such key.
    async fn api_key(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<GqlApiKey>> {
        let admin = api(auth(ctx).key_manager())?;
        let Ok(id) = id.parse() else { return Ok(None) };
        let store = service(ctx)?.store();
        let Some(key) = api(store.key(admin.tenant_id, id).await.map_err(ApiError::from))? else {
            return Ok(None);
        };
        Ok(api(hydrate(store, admin.tenant_id, vec![key]).await)?.pop())
    }

    /// The audit trail of your tenant's keys (or of one key), newest first:
    /// every generate, rotate, description change and delete, kept after the
    /// key is deleted.
    async fn api_key_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only entries of this key (which may have been deleted).")] key_id: Option<ID>,
        #[graphql(default_with = "Some(DEFAULT_PAGE_SIZE)", desc = "Page size, 1 to 100.")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (a previous page's `endCursor`).")] after: Option<String>,
    ) -> ApiResult<ApiKeyEventConnection> {
        let admin = api(auth(ctx).key_manager())?;
        let (first, after_id) = api(paging(first, after.as_deref(), decode_audit_cursor))?;
        let key = match key_id {
            None => None,
            Some(raw) => match raw.parse() {
                Ok(id) => Some(id),
                Err(_) => {
                    return Ok(ApiKeyEventConnection {
                        edges: vec![],
                        nodes: vec![],
                        page_info: empty_connection(after_id.is_some()).page_info,
                        total_count: 0,
                    });
                }
            },
        };
        let store = service(ctx)?.store();
        let page = api(store.list_audit(admin.tenant_id, key, first, after_id).await.map_err(ApiError::from))?;
        let nodes = api(hydrate_audit(store, admin.tenant_id, page.entries).await)?;
        let edges: Vec<ApiKeyEventEdge> = nodes
            .iter()
            .map(|node| ApiKeyEventEdge {
                cursor: encode_audit_cursor(node.id.parse().unwrap_or_default()),
                node: node.clone(),
            })
            .collect();
        let page_info = PageInfo {
            has_next_page: page.has_next_page,
            has_previous_page: after_id.is_some(),
            start_cursor: edges.first().map(|e| e.cursor.clone()),
            end_cursor: edges.last().map(|e| e.cursor.clone()),
        };
        Ok(ApiKeyEventConnection {
            edges,
            nodes,
            page_info,
            total_count: i32::try_from(page.total_count).unwrap_or(i32::MAX),
        })
    }

    /// Who may own a new key: you first, then the other internal admins and
    /// the integration users, by name.
    async fn api_key_owner_candidates(&self, ctx: &Context<'_>) -> ApiResult<Vec<GqlUser>> {
        let admin = api(auth(ctx).key_manager())?;
        let store = service(ctx)?.store();
        let mut users = api(store.key_owner_candidates(admin.tenant_id).await.map_err(ApiError::from))?;
        users.sort_by_key(|u| u.id != admin.id);
        Ok(users.iter().map(GqlUser::from).collect())
    }
}

/// Checks a page request: `first` within 1..=100 (default 50) and `after` a
/// cursor that `decode` understands.
fn paging<T>(
    first: Option<i32>,
    after: Option<&str>,
    decode: fn(&str) -> Option<T>,
) -> Result<(u64, Option<T>), ApiError> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&first) {
        return Err(ApiError::BadUserInput(format!("`first` must be between 1 and {MAX_PAGE_SIZE}.")));
    }
    let after = match after {
        None => None,
        Some(c) => Some(decode(c).ok_or_else(|| ApiError::BadUserInput("`after` is not a valid cursor.".into()))?),
    };
    Ok((u64::try_from(first).unwrap_or(1), after))
}

fn node_id(node: &GqlApiKey) -> latchkey_domain::ApiKeyId {
    node.key_id()
}

fn empty_connection(has_previous_page: bool) -> ApiKeyConnection {
    ApiKeyConnection {
        edges: Vec::new(),
        nodes: Vec::new(),
        page_info: PageInfo { has_next_page: false, has_previous_page, start_cursor: None, end_cursor: None },
        total_count: 0,
    }
}
