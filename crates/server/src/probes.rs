//! Probes and metrics: `/healthz`, `/readyz`, and `/metrics` on the metrics
//! listener.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use latchkey_app::Readiness;
use serde::Serialize;
use utoipa::ToSchema;

use crate::answers::rest_error;
use crate::context::ServerContext;

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
pub(crate) async fn readyz(ctx: web::Data<ServerContext>) -> HttpResponse {
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

/// `GET /metrics` on the metrics listener, in the Prometheus text format.
pub async fn metrics(ctx: web::Data<ServerContext>) -> HttpResponse {
    match ctx.app.render_metrics().await {
        Ok(text) => HttpResponse::Ok()
            .content_type(latchkey_app::metrics::CONTENT_TYPE)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(text),
        Err(e) => rest_error(e),
    }
}
