//! Every route of the API port, and nothing else: which handler answers
//! which path and method.

use actix_web::http::header;
use actix_web::web;
use latchkey_domain::{API_KEYS_PAGE_PATH, WEBHOOKS_PAGE_PATH};

use crate::answers::RestError;
use crate::{
    console, forward_auth, graphiql, graphql_http, openapi, probes, scim, secret_scanning, self_rotation,
    verification_stream, verify,
};

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
            .route(web::post().to(graphql_http::graphql_post))
            .route(web::get().to(graphql_http::graphql_get)),
    )
    .route("/graphiql", web::get().to(graphiql::page))
    .route("/assets/graphiql/{file}", web::get().to(graphiql::file))
    .route(API_KEYS_PAGE_PATH, web::get().to(console::api_keys_page))
    .route(WEBHOOKS_PAGE_PATH, web::get().to(console::api_keys_page))
    .route("/assets/api-keys/{module}", web::get().to(console::api_keys_module))
    .route("/api-keys/sign-in.json", web::get().to(console::sign_in_options))
    .route("/assets/console.css", web::get().to(console::console_css))
    .service(only("/healthz", "GET").route(web::get().to(probes::healthz)))
    .service(only("/openapi.json", "GET").route(web::get().to(openapi::serve)))
    .service(only("/readyz", "GET").route(web::get().to(probes::readyz)))
    .service(only("/v1/keys/verify", "POST").route(web::post().to(verify::post_verify)))
    .service(only("/v1/permissions", "GET").route(web::get().to(verify::permission_catalogue)))
    .route("/v1/auth", web::route().to(forward_auth::forward_auth))
    // Envoy's ext_authz appends the client's path to its `path_prefix`.
    .route("/v1/auth/{path:.*}", web::route().to(forward_auth::forward_auth))
    .service(only("/v1/keys/rotate", "POST").route(web::post().to(self_rotation::rotate_itself)))
    .service(only("/v1/verifications/stream", "GET").route(web::get().to(verification_stream::stream)))
    .service(only("/v1/verifications/usage", "POST").route(web::post().to(verification_stream::report_usage)))
    .service(only("/v1/keys/report-leak", "POST").route(web::post().to(verify::report_leak)))
    .service(only("/v1/secret-scanning/github", "POST").route(web::post().to(secret_scanning::github_secret_scanning)))
    .configure(scim::routes);
}

/// A resource answering only `allow` (its routes), and `405` with `Allow`
/// and a REST error for any other method.
fn only(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut response = RestError::method_not_allowed(format!("This endpoint answers {allow} only.")).response();
        response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
        response
    }))
}
