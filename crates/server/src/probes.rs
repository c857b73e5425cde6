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
    /// The read standby, when one is set (`LATCHKEY_DATABASE_READ_URL`): a
    /// standby that is down or too far behind is bypassed, not a reason to
    /// be unready.
    #[serde(skip_serializing_if = "Option::is_none")]
    standby: Option<StandbyHealth>,
}

/// The read standby as `/readyz` reports it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StandbyHealth {
    /// `reading` (reads go to it) or `bypassed` (down, or lagging more than
    /// `LATCHKEY_READ_MAX_LAG_SECS`: reads go to the primary).
    #[schema(example = "reading")]
    status: &'static str,
    /// How far behind the primary it was at its last check, in seconds.
    lag_seconds: f64,
}

/// The process is up (it answers HTTP).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Health)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", reason: None, standby: None })
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
    let standby = || {
        ctx.app.standby_status().map(|s| StandbyHealth {
            status: if s.usable { "reading" } else { "bypassed" },
            lag_seconds: s.lag.as_secs_f64(),
        })
    };
    let unavailable = |reason: &'static str| {
        HttpResponse::ServiceUnavailable().json(Health {
            status: "unavailable",
            reason: Some(reason),
            standby: standby(),
        })
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), ctx.app.readiness()).await {
        Ok(Readiness::Ready) => HttpResponse::Ok().json(Health { status: "ready", reason: None, standby: standby() }),
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
