//! Reporting the verifications answered from the cache
//! (`POST /v1/verifications/usage`), so that Latchkey's usage charts and
//! "last used" count them: every `report_every`, at most 1,000 keys a
//! request.
//!
//! Each report carries an `Idempotency-Key` of its own. A report that fails
//! (refused connection, timeout, lost answer, 5xx) is sent again as it was,
//! under the same key, before anything newer: Latchkey counts it once even
//! when it had stored it and only the answer was lost. Uses made meanwhile
//! wait in the cache. What is not reported yet is in memory: a service
//! killed loses at most `report_every` of cached uses (plus what Latchkey
//! did not take while unreachable).

use std::collections::VecDeque;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use rand::TryRng;
use uuid::Uuid;

use crate::cache::Uses;
use crate::clock;
use crate::shared::Shared;

/// The most keys one report names (Latchkey's limit).
const KEYS_PER_REPORT: usize = 1_000;

/// One report, built once and sent as it is until Latchkey takes it.
struct Report {
    idempotency_key: Uuid,
    body: serde_json::Value,
    uses: u64,
}

/// How a report's sending ended.
enum Sent {
    /// Latchkey counted it (now or on an earlier try).
    Taken,
    /// Latchkey cannot take it, ever (400): dropped.
    Refused(String),
    /// Try again later.
    Failed(String),
}

/// Reports for as long as the verifier lives.
pub(crate) async fn report_uses(shared: Weak<Shared>, every: Duration) {
    let mut unsent: VecDeque<Report> = VecDeque::new();
    let mut failing = false;
    loop {
        tokio::time::sleep(every).await;
        let Some(shared) = shared.upgrade() else { return };
        if unsent.is_empty() {
            unsent.extend(shared.cache.take_uses().chunks(KEYS_PER_REPORT).map(report_of));
        }
        while let Some(report) = unsent.front() {
            match send(&shared, report).await {
                Sent::Taken => {
                    shared.counters.reported.fetch_add(report.uses, Ordering::Relaxed);
                    unsent.pop_front();
                    failing = false;
                }
                Sent::Refused(why) => {
                    tracing::error!(reason = %why, uses = report.uses, "Latchkey refused a report of cached verifications; dropped");
                    unsent.pop_front();
                }
                Sent::Failed(why) => {
                    shared.counters.report_failures.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(reason = %why, "cannot report cached verifications to Latchkey; will retry");
                    }
                    failing = true;
                    break;
                }
            }
        }
    }
}

fn report_of(batch: &[(Uuid, Uses)]) -> Report {
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
    Report {
        idempotency_key: random_uuid(),
        body: serde_json::json!({ "uses": uses }),
        uses: batch.iter().map(|(_, uses)| uses.count).sum(),
    }
}

/// A version 4 UUID from the system's generator; should it fail, from the
/// wall clock's nanoseconds and a count of this process's reports, still
/// distinct for each report.
fn random_uuid() -> Uuid {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 16];
    if rand::rngs::SysRng.try_fill_bytes(&mut bytes).is_err() {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        bytes[8..].copy_from_slice(&MADE.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

async fn send(shared: &Shared, report: &Report) -> Sent {
    let response = shared
        .http
        .post(format!("{}/v1/verifications/usage", shared.url))
        .bearer_auth(&shared.stream_key)
        .header("Idempotency-Key", report.idempotency_key.to_string())
        .timeout(shared.request_timeout)
        .json(&report.body)
        .send()
        .await;
    match response {
        Err(e) => Sent::Failed(e.without_url().to_string()),
        Ok(response) if response.status().is_success() => Sent::Taken,
        Ok(response) if response.status() == reqwest::StatusCode::BAD_REQUEST => {
            Sent::Refused(format!("Latchkey answered {}", response.status()))
        }
        // 401/403 (the stream key's permission may come back), 429, 5xx.
        Ok(response) => Sent::Failed(format!("Latchkey answered {}", response.status())),
    }
}
