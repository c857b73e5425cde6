//! The OpenAPI 3.1 description of the REST surface, generated from the
//! handlers' annotations (utoipa): served at `/openapi.json`, printed by
//! `latchkey openapi`, and kept as `openapi.json` in the repository (CI
//! diffs it and validates it).

use actix_web::HttpResponse;
use actix_web::http::header;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "API keys for learning platforms: verification for gateways and services, leak reports, health. \
            Keys are managed over GraphQL (`/graphql`, schema in `schema.graphql`).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        crate::verify::post_verify,
        crate::verify::permission_catalogue,
        crate::verification_stream::stream,
        crate::verification_stream::report_usage,
        crate::forward_auth::forward_auth,
        crate::self_rotation::rotate_itself,
        crate::verify::report_leak,
        crate::secret_scanning::github_secret_scanning,
        crate::probes::healthz,
        crate::probes::readyz,
    ),
    modifiers(&KeySchemes),
    tags(
        (name = "verification", description = "Is this key good for this request?"),
        (name = "rotation", description = "Keys that rotate themselves"),
        (name = "leaks", description = "Keys found where they should not be"),
        (name = "health", description = "Probes for orchestrators"),
    )
)]
struct ApiDoc;

/// The two ways a key is presented.
struct KeySchemes;

impl Modify for KeySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("An API key: `lk_…`")).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components
            .add_security_scheme("apiKeyHeader", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))));
    }
}

/// The document, as pretty JSON with a final newline.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut json = doc.to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

/// `GET /openapi.json`.
pub(crate) async fn serve() -> HttpResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HttpResponse::Ok().content_type(header::ContentType::json()).body(DOCUMENT.get_or_init(document).clone())
}
