//! The API keys page: its HTML (with the CSP that keeps it to this origin),
//! its ES modules and stylesheet, compiled in, and what its organisation
//! sign-in needs.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Serialize;

use crate::answers::RestError;
use crate::context::ServerContext;

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

/// The API keys page, also served as the Webhooks page beside it (the
/// page shows the section its address names). With organisation sign-in, the page may also post to
/// the identity provider's token endpoint (the code exchange of PKCE).
pub(crate) async fn api_keys_page(ctx: web::Data<ServerContext>) -> HttpResponse {
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
    ("chart.js", include_str!("../assets/api-keys/chart.js")),
    ("row-menu.js", include_str!("../assets/api-keys/row-menu.js")),
    ("detail-panel.js", include_str!("../assets/api-keys/detail-panel.js")),
    ("key-policy.js", include_str!("../assets/api-keys/key-policy.js")),
    ("report.js", include_str!("../assets/api-keys/report.js")),
    ("limits-form.js", include_str!("../assets/api-keys/limits-form.js")),
    ("limits-panel.js", include_str!("../assets/api-keys/limits-panel.js")),
    ("webhooks.js", include_str!("../assets/api-keys/webhooks.js")),
    ("webhook-log.js", include_str!("../assets/api-keys/webhook-log.js")),
];

pub(crate) async fn api_keys_module(module: web::Path<String>) -> HttpResponse {
    match PAGE_MODULES.iter().find(|(name, _)| *name == module.as_str()) {
        Some((_, source)) => console_asset("text/javascript; charset=utf-8", source),
        None => RestError::not_found("No such page module.").response(),
    }
}

pub(crate) async fn console_css() -> HttpResponse {
    console_asset("text/css; charset=utf-8", include_str!("../assets/console.css"))
}

/// `GET /api-keys/sign-in.json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SignInOptions {
    /// None when the page has no organisation sign-in.
    oidc: Option<PageFlow>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageFlow {
    issuer: String,
    client_id: String,
    scope: String,
    authorization_endpoint: String,
    token_endpoint: String,
    extra_params: std::collections::BTreeMap<String, String>,
}

/// What the API keys page needs to offer "Sign in with your organisation".
pub(crate) async fn sign_in_options(ctx: web::Data<ServerContext>) -> HttpResponse {
    let (Some(provider), Some(page)) = (&ctx.oidc_provider, &ctx.page_sign_in) else {
        return HttpResponse::Ok().json(SignInOptions { oidc: None });
    };
    let discovery = match provider.discovery().await {
        Ok(discovery) => discovery,
        Err(error) => {
            tracing::warn!(%error, "the identity provider's discovery document could not be fetched");
            return RestError::unavailable("The identity provider cannot be reached; try again shortly.").response();
        }
    };
    let (Some(authorization_endpoint), Some(token_endpoint)) =
        (discovery.authorization_endpoint, discovery.token_endpoint)
    else {
        return RestError::unavailable("The identity provider publishes no authorization or token endpoint.")
            .response();
    };
    HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(SignInOptions {
        oidc: Some(PageFlow {
            issuer: discovery.issuer,
            client_id: page.client_id.clone(),
            scope: page.scope.clone(),
            authorization_endpoint,
            token_endpoint,
            extra_params: page.extra_params.iter().cloned().collect(),
        }),
    })
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
