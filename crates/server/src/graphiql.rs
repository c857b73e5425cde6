//! GraphiQL, served from files compiled into the binary (see
//! `assets/graphiql/README.md`): no CDN, so it works offline.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::answers::RestError;

/// Only this server's own files; fonts and images are data URIs in
/// GraphiQL's stylesheet; its editors set inline styles.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    font-src 'self' data:; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// The files under `/assets/graphiql/`, with their media types.
const FILES: &[(&str, &str, &[u8])] = &[
    ("graphiql.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/graphiql/graphiql.min.js")),
    ("graphiql.min.css", "text/css; charset=utf-8", include_bytes!("../assets/graphiql/graphiql.min.css")),
    (
        "react.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react.production.min.js"),
    ),
    (
        "react-dom.production.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/graphiql/react-dom.production.min.js"),
    ),
    ("start.js", "text/javascript; charset=utf-8", include_bytes!("../assets/graphiql/start.js")),
    ("page.css", "text/css; charset=utf-8", include_bytes!("../assets/graphiql/page.css")),
];

fn asset(content_type: &str, body: &'static [u8], cache: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, cache))
        .body(body)
}

/// `GET /graphiql`.
pub async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", include_bytes!("../assets/graphiql/index.html"), "no-cache")
}

/// `GET /assets/graphiql/{file}`.
pub async fn file(name: web::Path<String>) -> HttpResponse {
    match FILES.iter().find(|(file, _, _)| *file == name.as_str()) {
        Some((_, content_type, body)) => asset(content_type, body, "public, max-age=3600"),
        None => RestError::not_found("No such GraphiQL file.").response(),
    }
}
