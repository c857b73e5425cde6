//! Reporting the verifications answered from the cache
//! (`POST /v1/verifications/usage`), so that Latchkey's usage charts and
//! "last used" count them: every `report_every`, at most 1,000 keys a
//! request. A report that fails is kept for the next (in memory: a
//! service killed loses what it had not reported, `report_every` at most).

use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::cache::Uses;
use crate::clock;
use crate::shared::Shared;

/// The most keys one report names (Latchkey's limit).
const KEYS_PER_REPORT: usize = 1_000;

/// Reports for as long as the verifier lives.
pub(crate) async fn report_uses(shared: Weak<Shared>, every: Duration) {
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else { return };
        let uses = shared.cache.take_uses();
        for batch in uses.chunks(KEYS_PER_REPORT) {
            match send(&shared, batch).await {
                Ok(()) => {
                    let count: u64 = batch.iter().map(|(_, uses)| uses.count).sum();
                    shared.counters.reported.fetch_add(count, Ordering::Relaxed);
                    failing = false;
                }
                Err(why) => {
                    if !failing {
                        tracing::warn!(reason = %why, "cannot report cached verifications to Latchkey; will retry");
                    }
                    failing = true;
                    shared.cache.give_back(batch.iter().copied());
                }
            }
        }
    }
}

async fn send(shared: &Shared, batch: &[(Uuid, Uses)]) -> Result<(), String> {
    let (wall, tick) = (SystemTime::now(), clock::now());
    let uses: Vec<serde_json::Value> = batch
        .iter()
        .map(|(key_id, uses)| {
            let ago = tick.duration_since(uses.last.at);
            let at: DateTime<Utc> = (wall - Duration::from_millis(ago.as_millis())).into();
            serde_json::json!({
                "keyId": key_id,
                "count": uses.count,
                "lastUsedAt": at,
                "cloud": uses.last.cloud.map(|c| c.as_str()),
                "ip": uses.last.ip.map(|ip| ip.to_string()),
            })
        })
        .collect();
    let response = shared
        .http
        .post(format!("{}/v1/verifications/usage", shared.url))
        .bearer_auth(&shared.stream_key)
        .timeout(shared.request_timeout)
        .json(&serde_json::json!({ "uses": uses }))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    match response.status() {
        status if status.is_success() => Ok(()),
        status => Err(format!("Latchkey answered {status}")),
    }
}
