//! HTTP routes: GraphQL, GraphiQL, health, key verification.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, web};
use latchkey_graphql::auth::authenticate;
use latchkey_graphql::verifier::VerifyOutcome;
use latchkey_graphql::{ApiError, Authentication, execute};
use serde::{Deserialize, Serialize};

use crate::app::AppContext;

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/graphql", web::post().to(graphql_post))
        .route("/graphql", web::get().to(graphql_get))
        .route("/graphiql", web::get().to(graphiql))
        .route(API_KEYS_PAGE, web::get().to(api_keys_page))
        .route("/assets/api-keys.js", web::get().to(api_keys_script))
        .route("/assets/console.css", web::get().to(console_css))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/v1/keys/verify", web::post().to(verify_key));
}

fn json_error(status: actix_web::http::StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": { "code": code, "message": message } }))
}

async fn authenticated(ctx: &AppContext, req: &HttpRequest) -> Result<Authentication, HttpResponse> {
    let header = match req.headers().get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return Ok(Authentication::Refused("The Authorization header is not valid text.".into())),
    };
    let client = req.peer_addr().map(|a| a.ip());
    authenticate(&ctx.state, header, client).await.map_err(|e| {
        let error = ApiError::internal(&e).into_server_error();
        HttpResponse::Ok().json(async_graphql::Response::from_errors(vec![error]))
    })
}

async fn run_graphql(ctx: &AppContext, req: &HttpRequest, request: async_graphql::Request, post: bool) -> HttpResponse {
    let auth = match authenticated(ctx, req).await {
        Ok(a) => a,
        Err(response) => return response,
    };
    let response = execute(&ctx.schema, request, auth, post).await;
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(response)
}

async fn graphql_post(ctx: web::Data<AppContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                actix_web::http::StatusCode::BAD_REQUEST,
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
                actix_web::http::StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("Expected ?query=...&variables=...: {e}"),
            );
        }
    };
    run_graphql(&ctx, &req, request, false).await
}

async fn graphiql() -> HttpResponse {
    let page = async_graphql::http::GraphiQLSource::build().endpoint("/graphql").title("Latchkey GraphiQL").finish();
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page)
}

/// Where the owner mail links to (`{console}/settings/integrations/api`).
pub const API_KEYS_PAGE: &str = "/settings/integrations/api";

/// No inline script or style, nothing from elsewhere, no framing.
const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
    img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn console_asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONSOLE_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

async fn api_keys_page() -> HttpResponse {
    console_asset("text/html; charset=utf-8", include_str!("../assets/api-keys.html"))
}

async fn api_keys_script() -> HttpResponse {
    console_asset("text/javascript; charset=utf-8", include_str!("../assets/api-keys.js"))
}

async fn console_css() -> HttpResponse {
    console_asset("text/css; charset=utf-8", include_str!("../assets/console.css"))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers and its schema is current.
async fn readyz(ctx: web::Data<AppContext>) -> HttpResponse {
    let store = &ctx.state.store;
    let check = async {
        store.ping().await?;
        store.migrations_current().await
    };
    let unavailable = |reason: &str| {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({ "status": "unavailable", "reason": reason }))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), check).await {
        Ok(Ok(true)) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Ok(Ok(false)) => unavailable("database migrations are pending"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready");
            unavailable("the database is unreachable")
        }
        Err(_) => unavailable("the database did not answer in time"),
    }
}

#[derive(Deserialize)]
struct VerifyRequest {
    key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyResponse {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clouds: Option<Vec<&'static str>>,
}

impl VerifyResponse {
    fn refused(code: &'static str) -> Self {
        VerifyResponse { valid: false, code: Some(code), key_id: None, tenant_id: None, owner_id: None, clouds: None }
    }
}

async fn verify_key(ctx: web::Data<AppContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    // Only a JSON object: serde would also accept `["lk_..."]` for a struct.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let request: VerifyRequest = match serde_json::from_slice(&body) {
        Ok(r) if is_object => r,
        _ => {
            return json_error(
                actix_web::http::StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "The body must be JSON of the form {\"key\": \"lk_...\"}.",
            );
        }
    };
    let client = req.peer_addr().map(|a| a.ip());
    let response = match ctx.state.verifier.verify(&request.key, client).await {
        Ok(VerifyOutcome::Valid(k)) => VerifyResponse {
            valid: true,
            code: None,
            key_id: Some(k.key_id.to_string()),
            tenant_id: Some(k.tenant_id.to_string()),
            owner_id: Some(k.owner_id.to_string()),
            clouds: Some(CLOUDS.to_vec()),
        },
        Ok(refused) => VerifyResponse::refused(refused.code().unwrap_or("INVALID")),
        Err(e) => {
            tracing::error!(error = %e, "key verification failed");
            return json_error(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                "INTERNAL",
                "Verification is unavailable; retry shortly.",
            );
        }
    };
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(response)
}

/// A key is valid in both clouds of its tenant.
const CLOUDS: [&str; 2] = ["EMPLOYEE", "CUSTOMER"];

/// Logs method, path (never the query string or headers), status and latency.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let response = next.call(req).await?;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    Ok(response)
}
