//! `GET /v1/verifications/stream`: Server-Sent Events telling a service
//! that caches verifications which of its tenant's keys to drop (see the
//! app's `verification_stream`); and `POST /v1/verifications/usage`, where
//! such a service reports what it answered from its cache.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use latchkey_app::auth::Authentication;
use latchkey_app::verification_stream::{HEARTBEAT_EVERY, ReportedUse, StreamEvent, StreamGrant, Subscription};
use latchkey_domain::ApiKeyId;
use latchkey_domain::usage::{IdempotencyKey, LastUse};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use crate::answers::{ErrorBody, RestError, client_address, parse_cloud, rest_error, user_agent};
use crate::context::ServerContext;

/// How long a client waits before reconnecting (the SSE `retry` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// A stream of the tenant's key signals, for a key allowed
/// `verify:stream`. Events (`data` is JSON):
/// - `revoked` `{"keyId", "tenantId"}`: the key's secret no longer verifies
///   as it did (rotated, deleted, disabled, compromised, its previous
///   secret ended, its owner deactivated): drop what is cached for it;
/// - `changed` `{"keyId", "tenantId"}`: it still verifies, with another
///   answer (restrictions, limits, credits, expiry, owner): drop it too;
/// - `flush` `{"reason"}`: drop every cached verification (`resync`: this
///   replica may have missed signals; `resume_too_old`: the `Last-Event-ID`
///   is older than what replicas keep, 5 minutes or 10,000 signals;
///   `lagged`: the client read too slowly);
/// - `heartbeat` `{}` every 15 seconds, without an id. The first event of
///   every stream is a heartbeat `{"tenantId"}` (whose keys it carries;
///   `{"tenantId": null, "allTenants": true}` for a key of the operator's
///   tenant, `LATCHKEY_STREAM_OPERATOR_TENANT`) with an id, unless replayed
///   signals follow: resuming from it misses nothing even if no signal came.
///
/// Each signal has an `id`; reconnect with `Last-Event-ID` to get what was
/// missed, from any replica. The stream ends when its own key is revoked
/// or changed (reconnect: the key is checked again).
/// Never a secret or a hash.
#[utoipa::path(
    operation_id = "verification_stream",
    get, path = "/v1/verifications/stream", tag = "verification",
    security(("bearer" = [])),
    params((
        "Last-Event-ID" = Option<String>, Header, nullable = false,
        description = "The id of the last event received, to resume (on any replica)"
    )),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
        (status = 401, description = "No key, or a key that does not verify", body = ErrorBody),
        (status = 403, description = "The key lacks the `verify:stream` permission", body = ErrorBody),
        (status = 503, description = "Latchkey cannot answer now", body = ErrorBody),
    )
)]
pub(crate) async fn stream(ctx: web::Data<ServerContext>, req: HttpRequest) -> HttpResponse {
    let grant = match authenticate(&ctx, &req).await.and_then(|auth| ctx.app.verification_stream(&auth)) {
        Ok(grant) => grant,
        Err(e) => return rest_error(e),
    };
    let last_event_id = req.headers().get("last-event-id").and_then(|v| v.to_str().ok());
    let subscription = ctx.app.signals().subscribe(last_event_id, ctx.app.now());
    let closing = ctx.app.signals().closing();
    let events = Events {
        grant,
        subscription,
        pending: Vec::new(),
        started: false,
        ended: false,
        closing,
        next_heartbeat: tokio::time::Instant::now() + HEARTBEAT_EVERY,
    };
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // nginx: pass each event on at once (see docs/gateways/nginx.conf).
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::stream::unfold(events, |mut events| async move {
            let chunk = events.next().await?;
            Some((Ok::<_, actix_web::Error>(chunk), events))
        }))
}

/// The caller, by its bearer key (the stream's permission is checked by the use case).
async fn authenticate(ctx: &ServerContext, req: &HttpRequest) -> latchkey_app::AppResult<Authentication> {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let client = client_address(req, &ctx.trusted_proxies);
    ctx.app.authenticate_request(authorization, client, user_agent(req).as_deref()).await
}

/// One stream's state.
struct Events {
    grant: StreamGrant,
    subscription: Subscription,
    /// Replayed events not yet sent, last first.
    pending: Vec<StreamEvent>,
    started: bool,
    ended: bool,
    closing: tokio::sync::watch::Receiver<bool>,
    /// When to say the stream is alive, unless something is sent before
    /// (other tenants' signals, which this stream skips, do not count).
    next_heartbeat: tokio::time::Instant,
}

impl Events {
    /// The next bytes to send; none when the stream ends.
    async fn next(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        if !self.started {
            self.started = true;
            self.pending = std::mem::take(&mut self.subscription.replay);
            self.pending.reverse();
            // The retry hint and a first heartbeat: the client knows at once the stream is up, and
            // where it starts (unless replayed signals follow: their ids say it, one by one).
            let replays_signals = self.pending.iter().any(|e| matches!(e, StreamEvent::Key(..)));
            let id = (!replays_signals).then(|| format!("id: {}\n", self.subscription.position.encode()));
            let data = match self.grant.tenant {
                Some(tenant) => serde_json::json!({ "tenantId": tenant }),
                None => serde_json::json!({ "tenantId": null, "allTenants": true }),
            };
            return Some(Bytes::from(format!(
                "retry: {}\n\n{}event: heartbeat\ndata: {data}\n\n",
                RECONNECT_AFTER.as_millis(),
                id.unwrap_or_default()
            )));
        }
        loop {
            let event = match self.pending.pop() {
                Some(event) => event,
                None => tokio::select! {
                    received = self.subscription.live.recv() => match received {
                        Ok(event) => event,
                        Err(RecvError::Lagged(_)) => {
                            StreamEvent::Flush(None, latchkey_app::verification_stream::FlushReason::Lagged)
                        }
                        Err(RecvError::Closed) => return None,
                    },
                    _ = tokio::time::sleep_until(self.next_heartbeat) => {
                        self.next_heartbeat = tokio::time::Instant::now() + HEARTBEAT_EVERY;
                        return Some(Bytes::from(heartbeat()));
                    }
                    _ = self.closing.changed() => return None,
                },
            };
            if !self.grant.carries(&event) {
                continue;
            }
            if let StreamEvent::Key(_, signal) = &event
                && signal.key_id == self.grant.key
            {
                // Its own key revoked or changed (its permissions, say): this event, then the end. The
                // client reconnects, and the key is checked again.
                self.ended = true;
            }
            self.next_heartbeat = tokio::time::Instant::now() + HEARTBEAT_EVERY;
            return Some(Bytes::from(render(&event)));
        }
    }
}

fn heartbeat() -> String {
    "event: heartbeat\ndata: {}\n\n".to_owned()
}

/// One event in the SSE format.
fn render(event: &StreamEvent) -> String {
    match event {
        StreamEvent::Key(id, signal) => {
            let data = serde_json::json!({ "keyId": signal.key_id, "tenantId": signal.tenant_id });
            format!("id: {}\nevent: {}\ndata: {data}\n\n", id.encode(), signal.kind)
        }
        StreamEvent::Flush(id, reason) => {
            let data = serde_json::json!({ "reason": reason.as_str() });
            let id = id.map(|id| format!("id: {}\n", id.encode())).unwrap_or_default();
            format!("{id}event: flush\ndata: {data}\n\n")
        }
    }
}

/// The request header naming a report, so that its retries count once.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The answer's header saying a report was received before.
const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// What a client answered from its own cache since its last report.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsageReport {
    /// One entry per key (at most 1,000).
    uses: Vec<ReportedUseBody>,
}

/// The cached verifications of one key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ReportedUseBody {
    #[schema(value_type = uuid::Uuid)]
    key_id: uuid::Uuid,
    /// How many successful verifications (1 to 1,000,000,000).
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    count: u64,
    /// When the last of them was.
    #[schema(value_type = String, format = DateTime)]
    last_used_at: chrono::DateTime<chrono::Utc>,
    /// The last one's cloud, if the request named one.
    #[schema(value_type = Option<crate::answers::CloudName>)]
    cloud: Option<String>,
    /// The last one's end client.
    #[schema(schema_with = crate::verify::ip_address, required = false)]
    ip: Option<String>,
}

/// A report was counted.
#[derive(Serialize, ToSchema)]
pub(crate) struct UsageReceived {
    /// Keys whose uses were counted.
    counted: usize,
    /// Keys not counted: unknown, or of a tenant the stream's key does not carry.
    #[schema(value_type = Vec<uuid::Uuid>)]
    refused: Vec<String>,
}

/// Reports the verifications a service answered from its own cache (the
/// Rust client does every 10 s), so that usage and "last used" count them:
/// with the stream's key, for the keys the stream carries.
///
/// The uses are stored before the answer. Send an `Idempotency-Key` so
/// that a report retried after a lost answer is counted once.
#[utoipa::path(
    operation_id = "report_cached_uses",
    post, path = "/v1/verifications/usage", tag = "verification", request_body = UsageReport,
    security(("bearer" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255, description = "A new value (a UUID, say) for each report, the same for its retries: a report received before under the same key from the same stream key is not counted again, for 24 hours. Reusing a key for a different report is refused (400)."),
    ),
    responses(
        (status = 200, description = "Counted (or, with `Idempotent-Replayed: true`, counted before)", body = UsageReceived,
            headers(("Idempotent-Replayed" = bool, description = "Present and true when the report had been received before under its `Idempotency-Key`"))),
        (status = 400, description = "The body is not a report", body = ErrorBody),
        (status = 401, description = "No key, or a key that does not verify", body = ErrorBody),
        (status = 403, description = "The key lacks the `verify:stream` permission", body = ErrorBody),
        (status = 503, description = "Latchkey cannot answer now", body = ErrorBody),
    )
)]
pub(crate) async fn report_usage(ctx: web::Data<ServerContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let auth = match authenticate(&ctx, &req).await {
        Ok(auth) => auth,
        Err(e) => return rest_error(e),
    };
    let idempotency_key = match req.headers().get(IDEMPOTENCY_KEY).map(|raw| {
        raw.to_str().map_err(|_| "`Idempotency-Key` must be visible ASCII.".to_owned()).and_then(IdempotencyKey::parse)
    }) {
        None => None,
        Some(Ok(key)) => Some(key),
        Some(Err(message)) => return RestError::bad_request(message).response(),
    };
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let report = match serde_json::from_slice::<UsageReport>(&body) {
        Ok(report) if is_object => report,
        _ => {
            return RestError::bad_request(
                "The body must be JSON of the form {\"uses\": [{\"keyId\", \"count\", \"lastUsedAt\", \"cloud\"?, \"ip\"?}]}.",
            )
            .response();
        }
    };
    let mut uses = Vec::with_capacity(report.uses.len());
    for reported in report.uses {
        let cloud = match reported.cloud.as_deref().map(parse_cloud).transpose() {
            Ok(cloud) => cloud,
            Err(message) => return RestError::bad_request(message).response(),
        };
        let ip = match reported.ip.as_deref().map(|raw| raw.trim().parse()).transpose() {
            Ok(ip) => ip,
            Err(_) => return RestError::bad_request("`ip` must be an IPv4 or IPv6 address.").response(),
        };
        let last = LastUse { at: reported.last_used_at, cloud, client_address: ip, user_agent: None };
        uses.push(ReportedUse { key_id: ApiKeyId(reported.key_id), count: reported.count, last });
    }
    let counted = uses.len();
    match ctx.app.report_cached_uses(&auth, idempotency_key, uses).await {
        Ok(answer) => {
            let mut response = HttpResponse::Ok();
            response.insert_header((header::CACHE_CONTROL, "no-store"));
            if answer.replayed {
                response.insert_header((IDEMPOTENT_REPLAYED, "true"));
            }
            response.json(UsageReceived {
                counted: counted - answer.refused.len(),
                refused: answer.refused.iter().map(ToString::to_string).collect(),
            })
        }
        Err(e) => rest_error(e),
    }
}
