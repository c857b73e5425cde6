//! HTTP routes: GraphQL, GraphiQL, health, key verification, the API keys
//! page. Handlers call only the application layer (and the GraphQL schema
//! built over it).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use latchkey_app::verify::VerifiedKey;
use std::net::IpAddr;

use latchkey_app::{AppError, Authentication, Readiness, Refusal, RequestContext, VerifyOutcome};
use latchkey_domain::restrictions::Network;
use latchkey_domain::{API_KEYS_PAGE_PATH, Cloud, policy};
use latchkey_graphql::{execute, server_error};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{AppContext, MAX_BODY_BYTES};

/// Largest GraphQL request body: a document at its ceiling
/// ([`latchkey_graphql::MAX_DOCUMENT_BYTES`]) and as much again for
/// variables. Larger bodies are `413` from their `Content-Length`, before
/// they are read or parsed.
const MAX_GRAPHQL_BODY_BYTES: usize = 2 * latchkey_graphql::MAX_DOCUMENT_BYTES;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/graphql")
            .app_data(web::PayloadConfig::new(MAX_GRAPHQL_BODY_BYTES))
            .route(web::post().to(graphql_post))
            .route(web::get().to(graphql_get)),
    )
    .route("/graphiql", web::get().to(crate::graphiql::page))
    .route("/assets/graphiql/{file}", web::get().to(crate::graphiql::file))
    .route(API_KEYS_PAGE_PATH, web::get().to(api_keys_page))
    .route("/assets/api-keys/{module}", web::get().to(api_keys_module))
    .route("/api-keys/sign-in.json", web::get().to(crate::oidc::sign_in_options))
    .route("/assets/console.css", web::get().to(console_css))
    .service(only("/healthz", "GET").route(web::get().to(healthz)))
    .service(only("/openapi.json", "GET").route(web::get().to(openapi)))
    .service(only("/readyz", "GET").route(web::get().to(readyz)))
    .service(only("/v1/keys/verify", "POST").route(web::post().to(verify_key)))
    .route("/v1/auth", web::route().to(crate::forward_auth::forward_auth))
    // Envoy's ext_authz appends the client's path to its `path_prefix`.
    .route("/v1/auth/{path:.*}", web::route().to(crate::forward_auth::forward_auth))
    .service(only("/v1/keys/report-leak", "POST").route(web::post().to(report_leak)))
    .service(only("/v1/secret-scanning/github", "POST").route(web::post().to(github_secret_scanning)))
    .configure(crate::scim::routes);
}

/// A resource answering only `allow` (its routes), and `405` with `Allow`
/// and a REST error for any other method.
fn only(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("This endpoint answers {allow} only."),
        );
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
        response
    }))
}

/// The header naming the id of an internal failure.
const X_REQUEST_ID: &str = "x-request-id";

/// Every REST error: `{"error": {"code", "message", "requestId"?}}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorDetail {
    /// Stable: `BAD_REQUEST`, `UNAUTHENTICATED`, `RATE_LIMITED`, `INTERNAL`, …
    #[schema(example = "BAD_REQUEST")]
    code: String,
    /// For people; may change.
    message: String,
    /// Names an internal failure in the server's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let error = ErrorDetail { code: code.to_owned(), message: message.to_owned(), request_id: None };
    HttpResponse::build(status).json(ErrorBody { error })
}

/// The one mapping from [`AppError`] to a REST answer.
pub(crate) fn rest_error(e: AppError) -> HttpResponse {
    let status = match e {
        AppError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::BadUserInput(_) => StatusCode::BAD_REQUEST,
        AppError::Internal { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = HttpResponse::build(status);
    let request_id = e.request_id().map(|id| id.as_str().to_owned());
    if let Some(id) = &request_id {
        response.insert_header((X_REQUEST_ID, id.as_str()));
    }
    response.json(ErrorBody { error: ErrorDetail { code: e.code().to_owned(), message: e.to_string(), request_id } })
}

async fn authenticated(ctx: &AppContext, req: &HttpRequest) -> Result<Authentication, HttpResponse> {
    let header = match req.headers().get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return Ok(Authentication::Refused("The Authorization header is not valid text.".into())),
    };
    let client = client_address(req, &ctx.trusted_proxies);
    ctx.app
        .authenticate(header, client)
        .await
        .map_err(|e| HttpResponse::Ok().json(async_graphql::Response::from_errors(vec![server_error(e)])))
}

/// The client's address: the peer, or when the peer is a trusted proxy
/// (`LATCHKEY_TRUSTED_PROXIES`), the first untrusted hop of
/// `X-Forwarded-For`, read from the right. An untrusted peer cannot spoof it;
/// an unreadable hop stops the walk at the last trusted address.
pub fn client_address(req: &HttpRequest, trusted: &[Network]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|n| n.contains(peer)) {
        return Some(peer);
    }
    first_untrusted_hop(req, Some(peer), trusted)
}

/// Walks `X-Forwarded-For` from the right, past `nearest` (a trusted hop
/// already passed, if any), to the first hop that is not a trusted proxy.
/// A hop that is not an address (`unknown`, junk, a line that is not text)
/// means the client is not known: `None`, never a proxy's address, so an
/// address-restricted key is refused rather than judged by the proxy.
pub(crate) fn first_untrusted_hop(
    req: &HttpRequest,
    mut nearest: Option<IpAddr>,
    trusted: &[Network],
) -> Option<IpAddr> {
    let mut lines = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        lines.push(value.to_str().ok()?);
    }
    for hop in lines.iter().rev().flat_map(|h| h.rsplit(',')) {
        let ip = forwarded_hop(hop)?;
        if !trusted.iter().any(|n| n.contains(ip)) {
            return Some(ip);
        }
        nearest = Some(ip);
    }
    nearest
}

/// One `X-Forwarded-For` hop as proxies write it (and RFC 7239 node names):
/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:4711`; anything else is no address.
pub(crate) fn forwarded_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok());
        return port_ok.then(|| address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)).flatten();
    }
    let (address, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The media type of GraphQL over HTTP, answered when the client accepts it.
const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
/// [`GRAPHQL_RESPONSE_JSON`] as a `Content-Type`.
const GRAPHQL_RESPONSE_CONTENT_TYPE: &str = "application/graphql-response+json; charset=utf-8";

/// Whether the client's `Accept` names `application/graphql-response+json`.
fn accepts_graphql_response(req: &HttpRequest) -> bool {
    req.headers().get_all(header::ACCEPT).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|item| {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
        media.eq_ignore_ascii_case(GRAPHQL_RESPONSE_JSON) && !refused
    })
}

/// Runs a GraphQL request. With `Accept: application/graphql-response+json`
/// the answer has that media type, and a request that failed before
/// execution (too large, unparsable, invalid) is `400` without `data`, as
/// GraphQL over HTTP says; `application/json` answers `200` as before.
async fn run_graphql(ctx: &AppContext, req: &HttpRequest, request: async_graphql::Request, post: bool) -> HttpResponse {
    let auth = match authenticated(ctx, req).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let graphql_response = accepts_graphql_response(req);
    let executed = execute(&ctx.schema, request, auth, post).await;
    let max = ctx.limits.max_response_bytes;
    let serialized = if graphql_response && executed.request_error {
        serde_json::to_vec(&serde_json::json!({ "errors": executed.response.errors }))
    } else {
        serde_json::to_vec(&executed.response)
    };
    let body = match serialized {
        Ok(body) if body.len() <= max => body,
        Ok(_) => too_large_response(max),
        Err(e) => {
            tracing::error!(error = %e, "a GraphQL response did not serialize");
            return rest_error(AppError::internal(&e));
        }
    };
    let (status, content_type) = match (graphql_response, executed.request_error) {
        (true, true) => (StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE_CONTENT_TYPE),
        (true, false) => (StatusCode::OK, GRAPHQL_RESPONSE_CONTENT_TYPE),
        (false, _) => (StatusCode::OK, "application/json"),
    };
    HttpResponse::build(status).content_type(content_type).insert_header((header::CACHE_CONTROL, "no-store")).body(body)
}

/// What replaces an answer over the response-size ceiling.
fn too_large_response(max: usize) -> Vec<u8> {
    let mut error = async_graphql::ServerError::new(
        format!(
            "The answer would be larger than {max} bytes; ask for fewer items (a smaller `first`) or fewer fields."
        ),
        None,
    );
    error.extensions.get_or_insert_with(Default::default).set("code", "RESPONSE_TOO_LARGE");
    serde_json::to_vec(&async_graphql::Response::from_errors(vec![error])).unwrap_or_default()
}

/// Whether the request says its body is JSON (`application/json`, any parameters).
fn is_json(req: &HttpRequest) -> bool {
    let media_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    media_type.and_then(|v| v.split(';').next()).is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn graphql_post(ctx: web::Data<AppContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    // Only JSON: browsers send text/plain and forms cross-origin without asking
    // (a "simple" request); JSON needs a preflight, which Latchkey never grants.
    if !is_json(&req) {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Send the GraphQL request as JSON with `Content-Type: application/json`.",
        );
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("The body must be a GraphQL request in JSON: {e}"),
            );
        }
    };
    run_graphql(&ctx, &req, request, true).await
}

async fn graphql_get(ctx: web::Data<AppContext>, req: HttpRequest) -> HttpResponse {
    let request = match async_graphql::http::parse_query_string(req.query_string()) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("Expected ?query=...&variables=...: {e}"),
            );
        }
    };
    run_graphql(&ctx, &req, request, false).await
}

/// No inline script or style, nothing from elsewhere, no framing.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn console_asset(content_type: &str, body: &'static str) -> HttpResponse {
    console_asset_with_csp(content_type, body, CONSOLE_CSP.to_owned())
}

fn console_asset_with_csp(content_type: &str, body: &'static str, csp: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// The API keys page. With organisation sign-in, the page may also post to
/// the identity provider's token endpoint (the code exchange of PKCE).
async fn api_keys_page(ctx: web::Data<AppContext>) -> HttpResponse {
    let page = include_str!("../assets/api-keys.html");
    let provider = ctx.oidc_provider.as_ref().filter(|_| ctx.page_sign_in.is_some());
    match provider {
        Some(provider) => match provider.token_endpoint_origin().await {
            Some(origin) => console_asset_with_csp(
                "text/html; charset=utf-8",
                page,
                CONSOLE_CSP.replacen("connect-src 'self'", &format!("connect-src 'self' {origin}"), 1),
            ),
            None => console_asset("text/html; charset=utf-8", page),
        },
        None => console_asset("text/html; charset=utf-8", page),
    }
}

/// The page's ES modules, one per concern, served as they are (no build step).
const PAGE_MODULES: &[(&str, &str)] = &[
    ("main.js", include_str!("../assets/api-keys/main.js")),
    ("state.js", include_str!("../assets/api-keys/state.js")),
    ("graphql.js", include_str!("../assets/api-keys/graphql.js")),
    ("transfer-dialog.js", include_str!("../assets/api-keys/transfer-dialog.js")),
    ("ui.js", include_str!("../assets/api-keys/ui.js")),
    ("table.js", include_str!("../assets/api-keys/table.js")),
    ("session.js", include_str!("../assets/api-keys/session.js")),
    ("organisation-sign-in.js", include_str!("../assets/api-keys/organisation-sign-in.js")),
    ("secret-dialog.js", include_str!("../assets/api-keys/secret-dialog.js")),
    ("generate-dialog.js", include_str!("../assets/api-keys/generate-dialog.js")),
    ("edit-dialog.js", include_str!("../assets/api-keys/edit-dialog.js")),
    ("confirm-dialog.js", include_str!("../assets/api-keys/confirm-dialog.js")),
    ("rotate-dialog.js", include_str!("../assets/api-keys/rotate-dialog.js")),
    ("restrictions-form.js", include_str!("../assets/api-keys/restrictions-form.js")),
    ("restrictions-dialog.js", include_str!("../assets/api-keys/restrictions-dialog.js")),
];

async fn api_keys_module(module: web::Path<String>) -> HttpResponse {
    match PAGE_MODULES.iter().find(|(name, _)| *name == module.as_str()) {
        Some((_, source)) => console_asset("text/javascript; charset=utf-8", source),
        None => json_error(StatusCode::NOT_FOUND, "NOT_FOUND", "No such page module."),
    }
}

async fn console_css() -> HttpResponse {
    console_asset("text/css; charset=utf-8", include_str!("../assets/console.css"))
}

/// `GET /openapi.json`.
async fn openapi() -> HttpResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .body(DOCUMENT.get_or_init(crate::openapi::document).clone())
}

/// What `/healthz` and `/readyz` answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` (alive), `ready`, or `unavailable`.
    #[schema(example = "ready")]
    status: &'static str,
    /// Why not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// The process is up (it answers HTTP).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", reason: None })
}

/// Ready when the database answers and its schema is current.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The database is unreachable, slow, or not migrated", body = Health),
    )
)]
pub(crate) async fn readyz(ctx: web::Data<AppContext>) -> HttpResponse {
    let unavailable = |reason: &'static str| {
        HttpResponse::ServiceUnavailable().json(Health { status: "unavailable", reason: Some(reason) })
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), ctx.app.readiness()).await {
        Ok(Readiness::Ready) => HttpResponse::Ok().json(Health { status: "ready", reason: None }),
        Ok(Readiness::MigrationsPending) => unavailable("database migrations are pending"),
        Ok(Readiness::DatabaseUnreachable) => unavailable("the database is unreachable"),
        Err(_) => unavailable("the database did not answer in time"),
    }
}

/// A verification: the key, and what the request it came with needs.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest<'a> {
    /// The presented key (an `lk_` key, or an imported one).
    #[serde(borrow)]
    #[schema(value_type = String, example = "lk_...")]
    key: std::borrow::Cow<'a, str>,
    /// The cloud the request is for: `EMPLOYEE` or `CUSTOMER` (any case).
    #[schema(value_type = Option<CloudName>, example = "CUSTOMER")]
    cloud: Option<String>,
    /// Permission names the request needs (at most 64).
    #[serde(default)]
    #[schema(example = json!(["users:read"]))]
    permissions: Vec<String>,
    /// The end client's address, as the gateway saw it.
    #[schema(schema_with = ip_address, required = false, example = "203.0.113.7")]
    ip: Option<String>,
}

/// A cloud, as the OpenAPI document names it (the server also takes any case).
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)] // only described
pub(crate) enum CloudName {
    EMPLOYEE,
    CUSTOMER,
}

/// An IPv4 or IPv6 address, for the OpenAPI document.
fn ip_address() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let address =
        |format| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)));
    OneOfBuilder::new()
        .item(address(KnownFormat::Ipv4))
        .item(address(KnownFormat::Ipv6))
        .description(Some("The end client's address, as the gateway saw it."))
        .build()
        .into()
}

/// Most permissions one verification may ask for.
pub(crate) const MAX_ASKED_PERMISSIONS: usize = 64;

impl VerifyRequest<'_> {
    /// The request context, or what is wrong with it.
    fn context(&self) -> Result<RequestContext, String> {
        let cloud = self.cloud.as_deref().map(parse_cloud).transpose()?;
        if self.permissions.len() > MAX_ASKED_PERMISSIONS {
            return Err(format!("`permissions` may name at most {MAX_ASKED_PERMISSIONS} permissions."));
        }
        let ip = match self.ip.as_deref() {
            None => None,
            Some(raw) => {
                Some(raw.trim().parse::<IpAddr>().map_err(|_| "`ip` must be an IPv4 or IPv6 address.".to_owned())?)
            }
        };
        Ok(RequestContext::needing(cloud, self.permissions.iter().map(String::as_str), ip))
    }
}

/// A cloud named by a gateway: `EMPLOYEE` or `CUSTOMER`, in any case.
pub(crate) fn parse_cloud(raw: &str) -> Result<Cloud, String> {
    Cloud::ALL
        .iter()
        .copied()
        .find(|c| c.as_str().eq_ignore_ascii_case(raw))
        .ok_or_else(|| "The cloud must be EMPLOYEE or CUSTOMER.".to_owned())
}

/// The answer for a valid key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Verified {
    /// Always true.
    valid: bool,
    #[schema(value_type = uuid::Uuid)]
    key_id: String,
    #[schema(value_type = uuid::Uuid)]
    tenant_id: String,
    #[schema(value_type = uuid::Uuid)]
    owner_id: String,
    /// The clouds it works in (`EMPLOYEE`, `CUSTOMER`).
    clouds: Vec<String>,
    /// What the key may do; null when unrestricted.
    permissions: Option<Vec<&'static str>>,
}

/// The answer for a key that does not work, or may not serve the request.
#[derive(Serialize, ToSchema)]
pub(crate) struct Refused<'a> {
    /// Always false.
    valid: bool,
    #[schema(schema_with = crate::openapi::refusal_code)]
    code: &'static str,
    /// For `INSUFFICIENT_PERMISSIONS`: the permissions asked for and not granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    missing: Option<&'a [String]>,
}

/// What `/v1/keys/verify` answers with 200.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum VerifyAnswer<'a> {
    Verified(Verified),
    #[schema(value_type = Refused)]
    Refused(Refused<'a>),
}

/// The body answering a valid key: rendered once per cached verification
/// and reused for every hit.
fn verified_body(key: &VerifiedKey) -> String {
    key.rendered
        .get_or_init(|| {
            let body = Verified {
                valid: true,
                key_id: key.key_id.to_string(),
                tenant_id: key.tenant_id.to_string(),
                owner_id: key.owner_id.to_string(),
                clouds: policy::clouds_of_api_keys()
                    .iter()
                    .filter(|c| key.restrictions.clouds.contains(c))
                    .map(|c| c.as_str().to_ascii_uppercase())
                    .collect(),
                permissions: key
                    .restrictions
                    .permissions
                    .map(|_| key.restrictions.effective_permissions(key.owner_may).names()),
            };
            serde_json::to_string(&body).unwrap_or_default()
        })
        .clone()
}

/// Verifies a key for a gateway or service, with what the request needs.
/// A refusal is a 200 answer with `valid: false` and its code.
#[utoipa::path(
    post, path = "/v1/keys/verify", tag = "verification", request_body = VerifyRequest,
    responses(
        (status = 200, description = "The verdict", body = VerifyAnswer),
        (status = 400, description = "The body is not a verification", body = ErrorBody),
        (status = 503, description = "Latchkey cannot answer now", body = ErrorBody),
    )
)]
pub(crate) async fn verify_key(ctx: web::Data<AppContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    // Only a JSON object: serde would also accept `["lk_..."]` for a struct.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let request: VerifyRequest<'_> = match serde_json::from_slice(&body) {
        Ok(r) if is_object => r,
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "The body must be JSON of the form {\"key\": \"lk_...\"}, optionally with \"cloud\", \
                 \"permissions\" and \"ip\".",
            );
        }
    };
    let context = match request.context() {
        Ok(c) => c,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
    };
    // The failure limit counts the caller (the gateway), not the address it reports.
    let client = req.peer_addr().map(|a| a.ip());
    let body = match ctx.app.verify_key(&request.key, client, &context).await {
        Ok(VerifyOutcome::Valid(key)) => verified_body(&key),
        Ok(VerifyOutcome::NotAllowed(refusal)) => {
            let missing = match &refusal {
                Refusal::InsufficientPermissions { missing } => Some(missing.as_slice()),
                _ => None,
            };
            serde_json::to_string(&Refused { valid: false, code: refusal.code(), missing }).unwrap_or_default()
        }
        Ok(refused) => {
            let code = refused.code().unwrap_or("INVALID");
            serde_json::to_string(&Refused { valid: false, code, missing: None }).unwrap_or_default()
        }
        Err(e) => return rest_error(e),
    };
    HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// Reads the whole request body, at most [`MAX_BODY_BYTES`], within
/// `timeout` before any handler runs. A client that sends it slower gets 408
/// and loses the connection, so slow bodies hold neither connections nor
/// memory for long.
pub async fn read_body_within(
    timeout: std::time::Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::HttpMessage;
    use futures_util::StreamExt;
    let mut payload = req.take_payload();
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let refusal = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(body)) => {
            req.set_payload(actix_web::dev::Payload::from(body));
            return Ok(next.call(req).await?.map_into_left_body());
        }
        Ok(Err(StatusCode::PAYLOAD_TOO_LARGE)) => json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            &format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        ),
        Ok(Err(_)) => json_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "The request body could not be read."),
        Err(_) => json_error(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            &format!("The request body did not arrive within {} s.", timeout.as_secs_f64()),
        ),
    };
    let mut refusal = refusal;
    refusal.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    Ok(req.into_response(refusal).map_into_right_body())
}

/// A report that a key was found exposed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeakReportRequest {
    /// The key as found.
    key: String,
    /// Where it was found (at most 2048 characters).
    url: Option<String>,
}

/// A leak report was taken.
#[derive(Serialize, ToSchema)]
pub(crate) struct LeakReceived {
    /// Always true, whatever the key.
    received: bool,
}

/// Longest URL a leak report may carry.
const MAX_LEAK_URL: usize = 2048;

/// `POST /v1/keys/report-leak`: anyone who finds a key may report it. The
/// answer is 202 whatever the key (no oracle of validity); the report is
/// handled in the background and acts only on real keys.
#[utoipa::path(
    post, path = "/v1/keys/report-leak", tag = "leaks", request_body = LeakReportRequest,
    responses(
        (status = 202, description = "Taken; handled in the background, whatever the key", body = LeakReceived),
        (status = 400, description = "The body is not a report", body = ErrorBody),
        (status = 429, description = "Too many reports from this address",
         headers(("Retry-After" = u32, description = "Seconds")), body = ErrorBody),
    )
)]
pub(crate) async fn report_leak(ctx: web::Data<AppContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let report = match serde_json::from_slice::<LeakReportRequest>(&body) {
        Ok(r) if is_object && r.url.as_ref().is_none_or(|u| u.len() <= MAX_LEAK_URL) => r,
        _ => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "The body must be JSON of the form {\"key\": \"...\", \"url\": \"where it was found\"} \
                 (the URL at most 2048 characters).",
            );
        }
    };
    let client = client_address(&req, &ctx.trusted_proxies);
    if !ctx.app.accept_leak_report(report.key, report.url, client) {
        let mut response = json_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "Too many reports; retry later.");
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        return response;
    }
    HttpResponse::Accepted().insert_header((header::CACHE_CONTROL, "no-store")).json(LeakReceived { received: true })
}

/// Most matches one GitHub request may carry.
const MAX_GITHUB_MATCHES: usize = 10_000;

/// GitHub's label for one match.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScanVerdict {
    /// SHA-256 of the matched string, hex.
    token_hash: String,
    /// The match's `type`, echoed.
    token_type: String,
    /// `true_positive` (a real key, now handled as leaked) or `false_positive`.
    #[schema(example = "true_positive")]
    label: &'static str,
}

/// `POST /v1/secret-scanning/github`: GitHub's secret-scanning partner
/// requests. Only a body signed by one of GitHub's published keys is read;
/// each real key is handled as a leak (see `latchkey_app::leaks`), and the
/// answer labels every match.
#[utoipa::path(
    post, path = "/v1/secret-scanning/github", tag = "leaks", request_body = Vec<crate::github::SecretMatch>,
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "Which of GitHub's keys signed the body"),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 ECDSA P-256 signature of the body"),
    ),
    responses(
        (status = 200, description = "A label for every match", body = Vec<ScanVerdict>),
        (status = 400, description = "Not a JSON array of matches", body = ErrorBody),
        (status = 401, description = "Not signed by GitHub", body = ErrorBody),
        (status = 413, description = "More than 10,000 matches", body = ErrorBody),
    )
)]
pub(crate) async fn github_secret_scanning(
    ctx: web::Data<AppContext>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (identifier, signature) = (header("github-public-key-identifier"), header("github-public-key-signature"));
    if identifier.is_empty() || signature.is_empty() || !ctx.github.verify(identifier, signature, &body).await {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "The request is not signed by one of GitHub's secret-scanning keys.",
        );
    }
    let matches: Vec<crate::github::SecretMatch> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(_) => return json_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "Expected a JSON array of matches."),
    };
    if matches.len() > MAX_GITHUB_MATCHES {
        return json_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", "Too many matches in one request.");
    }
    let mut verdicts = Vec::with_capacity(matches.len());
    for found in matches {
        let place = latchkey_app::leaks::FoundAt {
            reporter: "GitHub secret scanning".into(),
            url: found.url,
            source: found.source,
        };
        let label = match ctx.app.report_leak(&found.token, &place).await {
            Ok(true) => "true_positive",
            Ok(false) => "false_positive",
            Err(e) => return rest_error(e),
        };
        let token_hash = latchkey_app::leaks::token_hash(&found.token);
        verdicts.push(ScanVerdict { token_hash, token_type: found.token_type, label });
    }
    HttpResponse::Ok().json(verdicts)
}

/// Admin front ends on their own origin (`LATCHKEY_CORS_ORIGINS`, exact
/// origins, none by default, never `*`): a preflight from a listed origin
/// is answered with what GraphQL needs, and its requests get
/// `Access-Control-Allow-Origin`; any other origin gets no CORS header, so
/// browsers keep its pages out. `Vary: Origin` always.
pub async fn cors(
    origins: std::sync::Arc<Vec<String>>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let allowed = origin.filter(|o| origins.iter().any(|allowed| allowed == o));
    // Forward auth is for gateways, never browsers: it answers every
    // method itself (a preflight there is a request to authenticate).
    let forward_auth = req.path() == "/v1/auth" || req.path().starts_with("/v1/auth/");
    if req.method() == actix_web::http::Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && !forward_auth
    {
        let mut preflight = HttpResponse::NoContent();
        preflight.insert_header((header::VARY, "Origin"));
        if let Some(origin) = &allowed {
            preflight
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.as_str()))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization, content-type"))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
        }
        return Ok(req.into_response(preflight.finish()).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.append(header::VARY, header::HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed
        && let Ok(value) = header::HeaderValue::from_str(&origin)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    Ok(response.map_into_left_body())
}

/// Logs method, path (never the query string or headers), status and
/// latency, and records the request in the metrics under its route pattern.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let metrics = req.app_data::<web::Data<AppContext>>().map(|ctx| ctx.app.metrics().clone());
    let response = next.call(req).await?;
    let took = started.elapsed();
    let status = response.status().as_u16();
    if let Some(metrics) = metrics {
        metrics.http_request(response.request().match_pattern().as_deref(), method.as_str(), status, took);
    }
    tracing::info!(%method, %path, status, micros = took.as_micros() as u64, "request");
    Ok(response)
}

/// `GET /metrics` on the metrics listener, in the Prometheus text format.
pub async fn metrics(ctx: web::Data<AppContext>) -> HttpResponse {
    match ctx.app.render_metrics().await {
        Ok(text) => HttpResponse::Ok()
            .content_type(latchkey_app::metrics::CONTENT_TYPE)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(text),
        Err(e) => rest_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::PAGE_MODULES;

    #[test]
    fn every_page_module_is_served_and_every_import_resolves() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/api-keys");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".js"))
            .collect();
        on_disk.sort();
        let mut served: Vec<String> = PAGE_MODULES.iter().map(|(name, _)| (*name).to_owned()).collect();
        served.sort();
        assert_eq!(served, on_disk, "PAGE_MODULES lists exactly the modules in assets/api-keys");
        for (name, source) in PAGE_MODULES {
            for import in source.split("from \"./").skip(1) {
                let target = import.split('"').next().unwrap();
                assert!(served.iter().any(|s| s == target), "{name} imports {target}, which is not served");
            }
        }
    }
}
