//! A service of the platform that verifies Latchkey keys in process.
//!
//! ```text
//! LATCHKEY_URL=http://127.0.0.1:8080 LATCHKEY_STREAM_KEY=lk_… \
//!   cargo run -p latchkey-client --example verify_service
//! ```
//!
//! - `GET /whoami`: any working key; answers its ids.
//! - `GET /users`: a key allowed `users:read` in the customer cloud.
//! - `GET /public/whoami`: the same work without a key (to measure what
//!   verification costs).
//! - `GET /stats`: the verifier's counters (cache hits, stream state).
//!
//! `BIND` (default `127.0.0.1:3000`; port 0 for any), `STALE_AFTER_MS`,
//! `CACHE_TTL_SECS` and `REPORT_USES_MS` tune it. It prints `listening on ADDRESS` once ready.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Extension, State};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_client::{Cloud, RequestContext, VerifiedKey, Verifier, VerifyLayer};
use serde_json::{Value, json};

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("LATCHKEY_URL").map_err(|_| "set LATCHKEY_URL, e.g. http://127.0.0.1:8080")?;
    let stream_key =
        std::env::var("LATCHKEY_STREAM_KEY").map_err(|_| "set LATCHKEY_STREAM_KEY to a key allowed verify:stream")?;
    let mut builder = Verifier::builder(url, stream_key);
    if let Some(ms) = env_number("STALE_AFTER_MS") {
        builder = builder.stale_after(Duration::from_millis(ms));
    }
    if let Some(secs) = env_number("CACHE_TTL_SECS") {
        builder = builder.cache_ttl(Duration::from_secs(secs));
    }
    if let Some(ms) = env_number("REPORT_USES_MS") {
        builder = builder.report_uses_every(Duration::from_millis(ms));
    }
    let verifier = builder.build()?;

    let client_ip = |_: &http::HeaderMap, extensions: &http::Extensions| {
        extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
    };
    let any_key = VerifyLayer::new(verifier.clone(), RequestContext::new()).client_ip(client_ip);
    let readers =
        VerifyLayer::new(verifier.clone(), RequestContext::new().cloud(Cloud::Customer).permissions(["users:read"]))
            .client_ip(client_ip);

    let app = Router::new()
        .route("/whoami", get(whoami).layer(any_key))
        .route("/users", get(users).layer(readers))
        .route("/public/whoami", get(public_whoami))
        .route("/stats", get(stats))
        .with_state(verifier);

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn whoami(Extension(key): Extension<Arc<VerifiedKey>>) -> Json<Value> {
    Json(json!({ "keyId": key.key_id, "tenantId": key.tenant_id, "ownerId": key.owner_id }))
}

async fn users(Extension(key): Extension<Arc<VerifiedKey>>) -> Json<Value> {
    Json(json!({ "tenantId": key.tenant_id, "users": [] }))
}

async fn public_whoami() -> Json<Value> {
    Json(json!({ "keyId": uuid::Uuid::nil(), "tenantId": uuid::Uuid::nil(), "ownerId": uuid::Uuid::nil() }))
}

async fn stats(State(verifier): State<Verifier>) -> Json<Value> {
    let s = verifier.stats();
    Json(json!({
        "cacheHits": s.cache_hits, "asked": s.asked, "reported": s.reported, "reportFailures": s.report_failures,
        "cachedKeys": s.cached_keys, "signals": s.signals,
        "flushes": s.flushes, "connections": s.connections, "connected": s.connected, "trusted": s.trusted,
    }))
}
