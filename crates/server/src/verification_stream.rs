//! `GET /v1/verifications/stream`: Server-Sent Events telling a service
//! that caches verifications which of its tenant's keys to drop (see the
//! app's `verification_stream`).

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use latchkey_app::verification_stream::{HEARTBEAT_EVERY, StreamEvent, StreamGrant, Subscription};
use tokio::sync::broadcast::error::RecvError;

use crate::answers::{ErrorBody, client_address, rest_error, user_agent};
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
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let client = client_address(&req, &ctx.trusted_proxies);
    let user_agent = user_agent(&req);
    let authenticated = ctx.app.authenticate_request(authorization, client, user_agent.as_deref()).await;
    let grant = match authenticated.and_then(|auth| ctx.app.verification_stream(&auth)) {
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
