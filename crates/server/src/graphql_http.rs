//! GraphQL over HTTP at `/graphql`: reading a request (POST body or GET
//! query), authenticating it, running it on the schema, and answering in
//! the media type the client accepts.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use latchkey_app::{AppError, Authentication};
use latchkey_graphql::{execute, server_error};

use crate::answers::{RestError, client_address, rest_error, user_agent};
use crate::context::ServerContext;

async fn authenticated(ctx: &ServerContext, req: &HttpRequest) -> Result<Authentication, HttpResponse> {
    let header = match req.headers().get(header::AUTHORIZATION).map(|v| v.to_str()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => return Ok(Authentication::Refused("The Authorization header is not valid text.".into())),
    };
    let client = client_address(req, &ctx.trusted_proxies);
    ctx.app
        .authenticate_request(header, client, user_agent(req).as_deref())
        .await
        .map_err(|e| HttpResponse::Ok().json(async_graphql::Response::from_errors(vec![server_error(e)])))
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
async fn run_graphql(
    ctx: &ServerContext,
    req: &HttpRequest,
    request: async_graphql::Request,
    post: bool,
) -> HttpResponse {
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

pub(crate) async fn graphql_post(ctx: web::Data<ServerContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    // Only JSON: browsers send text/plain and forms cross-origin without asking
    // (a "simple" request); JSON needs a preflight, which Latchkey never grants.
    if !is_json(&req) {
        return RestError::unsupported_media_type(
            "Send the GraphQL request as JSON with `Content-Type: application/json`.",
        )
        .response();
    }
    let request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return RestError::bad_request(format!("The body must be a GraphQL request in JSON: {e}")).response();
        }
    };
    run_graphql(&ctx, &req, request, true).await
}

pub(crate) async fn graphql_get(ctx: web::Data<ServerContext>, req: HttpRequest) -> HttpResponse {
    let request = match async_graphql::http::parse_query_string(req.query_string()) {
        Ok(r) => r,
        Err(e) => {
            return RestError::bad_request(format!("Expected ?query=...&variables=...: {e}")).response();
        }
    };
    run_graphql(&ctx, &req, request, false).await
}
