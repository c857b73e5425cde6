//! The webhook dispatcher: every replica runs one. It claims due deliveries
//! with a lease (so each delivery is attempted by one replica at a time, and
//! a replica that dies leaves it to another once the lease runs out), signs
//! each attempt, sends it, and records the attempt and what follows — done,
//! retried on the schedule, failed — in one transaction. An endpoint that
//! has failed for five days straight is switched off there, and the
//! tenant's internal admins are mailed once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use latchkey_domain::webhook_events::{WebhookAttempt, WebhookDelivery, WebhookEndpoint};
use latchkey_domain::webhooks::{retry_delay, signature_header};
use latchkey_domain::{ApiKeyId, Notice, NoticeId, NoticeKind};
use latchkey_notify::webhooks::WebhookRequest;
use latchkey_store::{AttemptResult, DueDelivery};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::App;
use crate::error::AppResult;

/// Dispatcher settings.
#[derive(Clone, Debug)]
pub struct WebhookDispatcherConfig {
    /// How often due deliveries are looked for when nothing wakes the
    /// dispatcher (retries, and other replicas' events, are found this way).
    pub poll_interval: Duration,
    /// Most deliveries claimed at once.
    pub batch_size: u64,
    /// Attempts in flight at once (each claim takes at most the free slots).
    pub concurrency: usize,
    /// How long a claim lasts: must exceed the attempt timeout. A replica
    /// killed mid-delivery leaves it to the others after this.
    pub lease: Duration,
    /// The attempt timeout (the sender enforces it; the lease must outlast it).
    pub attempt_timeout: Duration,
}

impl Default for WebhookDispatcherConfig {
    fn default() -> Self {
        WebhookDispatcherConfig {
            poll_interval: Duration::from_millis(500),
            batch_size: 50,
            concurrency: 32,
            lease: Duration::from_secs(60),
            attempt_timeout: latchkey_domain::webhook_events::ATTEMPT_TIMEOUT,
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A draw in -1.0..=1.0 spreading a retry.
fn jitter() -> f64 {
    use rand::TryRng;
    let mut bytes = [0u8; 4];
    match rand::rngs::SysRng.try_fill_bytes(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) * 2.0 - 1.0,
        Err(_) => 0.0,
    }
}

/// An attempt made, waiting to be recorded.
struct Attempted {
    delivery: WebhookDelivery,
    attempt: WebhookAttempt,
    result: AttemptResult,
}

/// Most attempts recorded in one transaction.
const RECORD_BATCH: usize = 200;

impl App {
    /// Sends one claimed delivery; `None` when it was handed back
    /// unattempted (shutdown, or a lease too short to send on).
    async fn attempt(
        &self,
        due: DueDelivery,
        lease_until: DateTime<Utc>,
        config: &WebhookDispatcherConfig,
        shutdown: &watch::Receiver<bool>,
    ) -> AppResult<Option<Attempted>> {
        let DueDelivery { delivery, url, secrets } = due;
        let now = self.clock.now();
        // Never send on a lease that could run out mid-attempt: another
        // replica may claim the delivery then.
        if *shutdown.borrow() || lease_until - now < chrono_duration(config.attempt_timeout) {
            self.store.release_webhook_delivery(delivery.id).await?;
            return Ok(None);
        }
        let message_id = delivery.message_id();
        let timestamp = now.timestamp();
        let request = WebhookRequest {
            signature: signature_header(&secrets.signing(now), &message_id, timestamp, &delivery.payload),
            url,
            message_id,
            timestamp,
            body: delivery.payload.clone(),
        };
        let sent = self.webhooks.sender.send(&request).await;
        let attempt = WebhookAttempt {
            attempted_at: now,
            http_status: sent.http_status,
            duration_ms: i64::try_from(sent.duration.as_millis()).unwrap_or(i64::MAX),
            response_body: sent.response_body,
            error: sent.error,
        };
        let result = if attempt.succeeded() {
            tracing::debug!(delivery = %delivery.id, "webhook delivered");
            AttemptResult::Succeeded
        } else {
            tracing::info!(delivery = %delivery.id, status = ?attempt.http_status, error = ?attempt.error, "webhook attempt failed");
            let failed = usize::try_from(delivery.attempts).unwrap_or(0) + 1;
            match retry_delay(failed, jitter()) {
                Some(delay) => AttemptResult::RetryAt(self.clock.now() + delay),
                None => AttemptResult::Failed,
            }
        };
        Ok(Some(Attempted { delivery, attempt, result }))
    }

    /// Records `batch` in one transaction: each attempt, its delivery's next
    /// state, the endpoints' failing streaks, and the switching off (with
    /// the admins' mail) of an endpoint failing for 5 days.
    async fn record(&self, batch: &[Attempted]) -> AppResult<()> {
        let tx = self.store.begin().await?;
        let succeeded: Vec<_> =
            batch.iter().filter(|a| a.result == AttemptResult::Succeeded).map(|a| (&a.delivery, &a.attempt)).collect();
        tx.record_webhook_successes(&succeeded).await?;
        let mut mailed = false;
        for Attempted { delivery, attempt, result } in batch.iter().filter(|a| a.result != AttemptResult::Succeeded) {
            let now = attempt.attempted_at;
            let failing = tx.record_webhook_attempt(delivery, attempt, *result).await?;
            let Some(endpoint) = failing.filter(|endpoint| endpoint.fails_too_long(now)) else { continue };
            let reason = failure_reason(attempt);
            let since = endpoint.failing_since.unwrap_or(now);
            let disabled = WebhookEndpoint {
                enabled: false,
                disabled_reason: Some(format!(
                    "Disabled by Latchkey at {}: every delivery has failed since {} (5 days). Last error: {reason}",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                )),
                ..endpoint
            };
            tx.update_webhook_endpoint(&disabled).await?;
            for admin in tx.active_internal_admins(disabled.tenant_id).await? {
                tx.enqueue_notice(&endpoint_disabled_notice(&disabled, &admin, &reason, now)).await?;
                mailed = true;
            }
            tracing::warn!(endpoint = %disabled.id, tenant = %disabled.tenant_id, "webhook endpoint disabled after failing for 5 days");
        }
        tx.commit().await?;
        if mailed {
            self.outbox.notify_one();
        }
        Ok(())
    }

    /// Records attempts as they come, as many per transaction as are waiting
    /// (one commit for many: the database's single writer on SQLite, and
    /// every commit's flush, are what limit throughput). Returns when every
    /// sender is gone.
    async fn run_recorder(self, mut attempted: mpsc::Receiver<Attempted>) {
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while attempted.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            if let Err(e) = self.record(&batch).await {
                // Not recorded: the leases run out and the deliveries are sent again.
                tracing::error!(error = %e, attempts = batch.len(), "recording webhook attempts failed");
            }
            batch.clear();
        }
    }

    /// Runs the dispatcher until `shutdown` turns true, then waits for the
    /// attempts in flight and their records. Attempts run side by side, up
    /// to `config.concurrency`; due deliveries are claimed when half the
    /// slots are free (or all, when less is due), so a slow receiver holds
    /// one slot, not a round. Also drops deliveries past their retention, hourly.
    pub async fn run_webhook_dispatcher(self, config: WebhookDispatcherConfig, mut shutdown: watch::Receiver<bool>) {
        let slots_total = config.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(slots_total));
        let config = Arc::new(config);
        let (record, attempted) = mpsc::channel(RECORD_BATCH * 4);
        let recorder = tokio::spawn(self.clone().run_recorder(attempted));
        let mut pruned_at: Option<DateTime<Utc>> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = self.clock.now();
            if pruned_at.is_none_or(|at| now - at >= chrono::Duration::hours(1)) {
                self.drop_old_deliveries(now).await;
                pruned_at = Some(now);
            }
            let available = slots.available_permits();
            if available == 0 || (available < slots_total.div_ceil(2) && available < slots_total) {
                // Busy: wait for a slot to free up, then look again.
                tokio::select! {
                    permit = slots.clone().acquire_owned() => drop(permit),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let free = available.min(usize::try_from(config.batch_size).unwrap_or(usize::MAX));
            let lease_until = now + chrono_duration(config.lease);
            let claimed = match self.store.claim_due_webhook_deliveries(now, lease_until, free as u64).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::error!(error = %e, "claiming webhook deliveries failed; will retry");
                    Vec::new()
                }
            };
            let more_due = claimed.len() == free;
            for due in claimed {
                let Ok(permit) = slots.clone().acquire_owned().await else { break };
                let (app, config, shutdown, record) = (self.clone(), config.clone(), shutdown.clone(), record.clone());
                tokio::spawn(async move {
                    match app.attempt(due, lease_until, &config, &shutdown).await {
                        Ok(Some(attempted)) => _ = record.send(attempted).await,
                        Ok(None) => {}
                        Err(e) => tracing::error!(error = %e, "a webhook attempt failed to start"),
                    }
                    drop(permit);
                });
            }
            if more_due {
                continue;
            }
            tokio::select! {
                _ = self.webhooks.wake.notified() => {}
                _ = tokio::time::sleep(config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        // Graceful stop: the attempts in flight finish (each within its
        // timeout) and are recorded.
        let _ = slots.acquire_many(u32::try_from(slots_total).unwrap_or(u32::MAX)).await;
        drop(record);
        let _ = recorder.await;
    }

    async fn drop_old_deliveries(&self, now: DateTime<Utc>) {
        let before = now - latchkey_domain::webhook_events::DELIVERY_RETENTION;
        match self.store.drop_webhook_deliveries_before(before).await {
            Ok(dropped) if dropped > 0 => tracing::info!(dropped, "old webhook deliveries dropped"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "dropping old webhook deliveries failed"),
        }
    }
}

/// What went wrong in an attempt, in a sentence.
fn failure_reason(attempt: &WebhookAttempt) -> String {
    match (&attempt.error, attempt.http_status) {
        (Some(error), _) => error.clone(),
        (None, Some(status)) => format!("the receiver answered HTTP {status}"),
        (None, None) => "no answer".to_owned(),
    }
}

/// The notice telling `admin` that `endpoint` was switched off: about no
/// key (nil id); its description is the endpoint's URL, and `before_after`
/// holds when it started failing and the last error.
fn endpoint_disabled_notice(
    endpoint: &WebhookEndpoint,
    admin: &latchkey_domain::User,
    reason: &str,
    now: DateTime<Utc>,
) -> Notice {
    let since = endpoint.failing_since.unwrap_or(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let system = latchkey_domain::lifecycle::system_actor(endpoint.tenant_id);
    Notice {
        id: NoticeId::new_at(now),
        kind: NoticeKind::WebhookDisabled,
        tenant_id: endpoint.tenant_id,
        key_id: ApiKeyId(uuid::Uuid::nil()),
        key_description: endpoint.url.clone(),
        key_last_four: String::new(),
        owner_id: admin.id,
        owner_email: admin.email.clone(),
        owner_name: admin.name.clone(),
        actor_id: system.id,
        actor_name: system.name,
        occurred_at: now,
        key_expires_at: None,
        previous_secret_expires_at: None,
        before_after: Some((since, reason.to_owned())),
        leak: None,
        owner_change: None,
        suspension: None,
    }
}
