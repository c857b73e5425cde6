//! Following `GET /v1/verifications/stream`: every `revoked` or `changed`
//! drops the key's cached verifications, `flush` drops them all. The
//! connection resumes with `Last-Event-ID`, so nothing is missed across a
//! reconnection (Latchkey sends `flush` when it cannot prove that).
//!
//! Trust in the cache: while the stream is up, until 15 s (the heartbeat
//! period) plus `stale_after` after the last byte read, so a connection
//! that dies silently is given up then; once it ends, for `stale_after`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rand::TryRng;
use reqwest::header;
use uuid::Uuid;

use crate::clock;
use crate::decide::Catalogue;
use crate::shared::{Scope, Shared};
use crate::sse::{Event, Parser};

/// How often Latchkey sends a heartbeat on a quiet stream.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);
/// The first wait before reconnecting; doubled after each failed attempt.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Follows the stream for as long as the verifier lives.
pub(crate) async fn follow(shared: Weak<Shared>) {
    let mut last_event_id: Option<String> = None;
    let mut failures: u32 = 0;
    let mut last_refusal: Option<String> = None;
    loop {
        let Some(strong) = shared.upgrade() else { return };
        match connect(&strong, &mut last_event_id).await {
            Ok(()) => {
                failures = 0;
                last_refusal = None;
            }
            Err(why) => {
                failures = failures.saturating_add(1);
                if last_refusal.as_deref() != Some(why.as_str()) {
                    tracing::warn!(reason = %why, "latchkey verification stream unavailable; retrying");
                    last_refusal = Some(why);
                }
            }
        }
        // Down: the cache is used for `stale_after` more at most.
        strong.distrust_after(clock::after(clock::now(), strong.stale_after));
        drop(strong);
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// The wait before the next attempt: exponential, with jitter (half to all of it).
fn backoff(failures: u32) -> Duration {
    let full = FIRST_BACKOFF.saturating_mul(2u32.saturating_pow(failures.min(16))).min(MAX_BACKOFF);
    let mut byte = [0u8; 1];
    let jitter = rand::rngs::SysRng.try_fill_bytes(&mut byte).map_or(255, |()| byte[0]);
    full / 2 + full / 2 * u32::from(jitter) / 255
}

/// One connection: `Ok` once it was up and then ended, `Err` when it never came up.
async fn connect(shared: &Arc<Shared>, last_event_id: &mut Option<String>) -> Result<(), String> {
    // The catalogue, fetched with each connection (a new Latchkey version may bring permissions).
    let catalogue = fetch_catalogue(shared).await?;
    let mut request = shared
        .http
        .get(format!("{}/v1/verifications/stream", shared.url))
        .bearer_auth(&shared.stream_key)
        .header(header::ACCEPT, "text/event-stream");
    if let Some(id) = last_event_id.as_deref() {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(format!("the stream answered {status} {message}").trim_end().to_owned());
    }
    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
    if last_event_id.is_none() {
        // Nothing to resume from: what was cached cannot be proved current.
        reset(shared);
    }
    let mut parser = Parser::default();
    let mut up = false;
    loop {
        let silence_limit = HEARTBEAT_EVERY + shared.stale_after;
        let chunk = match tokio::time::timeout(silence_limit, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            // Ended, broken, or silent past a heartbeat: reconnect.
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
        };
        for event in parser.feed(&chunk) {
            if let Some(id) = &event.id {
                *last_event_id = Some(id.clone());
            }
            if !up && event.event == "heartbeat" {
                // The opening heartbeat: whose keys, and the stream is up.
                up = true;
                let mut state = shared.lock_state();
                state.connected = true;
                state.scope = scope_of(&event);
                state.catalogue = Some(catalogue.clone());
            }
            apply(shared, &event);
        }
        if up {
            shared.trust_until(clock::after(clock::now(), silence_limit));
        }
    }
    let mut state = shared.lock_state();
    state.scope = None;
    state.connected = false;
    if up { Ok(()) } else { Err("the stream ended before it started".into()) }
}

async fn fetch_catalogue(shared: &Shared) -> Result<Arc<Catalogue>, String> {
    let response = shared
        .http
        .get(format!("{}/v1/permissions", shared.url))
        .timeout(shared.request_timeout)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("the permission catalogue answered {}", response.status()));
    }
    let bytes = response.bytes().await.map_err(|e| e.without_url().to_string())?;
    Catalogue::from_json(&bytes).map(Arc::new).ok_or_else(|| "the permission catalogue is unreadable".into())
}

/// Whose keys the stream carries, as its opening heartbeat says; `None`
/// when it does not say (nothing is cached then).
fn scope_of(heartbeat: &Event) -> Option<Scope> {
    let data: serde_json::Value = serde_json::from_str(&heartbeat.data).unwrap_or_default();
    match data["tenantId"].as_str().and_then(|t| t.parse::<Uuid>().ok()) {
        Some(tenant) => Some(Scope::Tenant(tenant)),
        None => (data["allTenants"] == serde_json::Value::Bool(true)).then_some(Scope::Every),
    }
}

fn apply(shared: &Shared, event: &Event) {
    match event.event.as_str() {
        "revoked" | "changed" => {
            let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
            match data["keyId"].as_str().and_then(|k| k.parse::<Uuid>().ok()) {
                Some(key_id) => shared.cache.remove_key(key_id),
                // A signal that names no key we can read: drop everything rather than guess.
                None => shared.cache.clear(),
            }
            shared.counters.signals.fetch_add(1, Ordering::Relaxed);
        }
        "flush" => reset(shared),
        _ => {}
    }
}

fn reset(shared: &Shared) {
    shared.cache.clear();
    shared.counters.flushes.fetch_add(1, Ordering::Relaxed);
}
