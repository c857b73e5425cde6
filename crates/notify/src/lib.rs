//! Latchkey's notification port: notices leave the outbox (written by the
//! store in the transaction of the key change) and reach the key's owner.
//!
//! A [`Notifier`] delivers one event; the [`Dispatcher`] claims due events from
//! the store, hands them to the notifier and records the outcome.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub mod mail;
pub mod webhooks;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use latchkey_domain::{Clock, Notice};
use latchkey_store::Store;
use tokio::sync::{Notify, watch};

/// Why a delivery failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying later (server down, timeout, 4xx reply).
    #[error("temporary delivery failure: {0}")]
    Transient(String),
    /// Retrying will not help (5xx reply, unusable address).
    #[error("permanent delivery failure: {0}")]
    Permanent(String),
}

/// A boxed future returned by [`Notifier::deliver`].
pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;

/// Delivers one notice to its owner.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Delivers `event`.
    fn deliver<'a>(&'a self, event: &'a Notice) -> DeliveryFuture<'a>;
}

/// A notifier that keeps every event it is given, for tests and for
/// inspection.
#[derive(Debug, Default, Clone)]
pub struct RecordingNotifier {
    delivered: Arc<Mutex<Vec<Notice>>>,
}

impl RecordingNotifier {
    /// Everything delivered so far.
    pub fn delivered(&self) -> Vec<Notice> {
        self.delivered.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Notifier for RecordingNotifier {
    fn deliver<'a>(&'a self, event: &'a Notice) -> DeliveryFuture<'a> {
        Box::pin(async move {
            if let Ok(mut v) = self.delivered.lock() {
                v.push(event.clone());
            }
            Ok(())
        })
    }
}

/// Dispatcher settings.
#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// How often the outbox is polled when nothing wakes the dispatcher (other
    /// processes' events are found this way).
    pub poll_interval: Duration,
    /// Most events claimed per round.
    pub batch_size: u64,
    /// How long a claim lasts; a claimer that dies releases its events when
    /// this runs out. Must exceed `send_timeout`.
    pub lease: Duration,
    /// Longest time one delivery may take before it counts as a temporary failure.
    pub send_timeout: Duration,
    /// Attempts before an event is marked failed.
    pub max_attempts: i32,
    /// Delay after the first failure; doubles with each attempt.
    pub retry_base: Duration,
    /// Longest delay between attempts.
    pub retry_cap: Duration,
    /// Deliveries in flight at once (each on its own pooled SMTP connection).
    pub concurrency: usize,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            poll_interval: Duration::from_millis(500),
            batch_size: 20,
            lease: Duration::from_secs(60),
            send_timeout: Duration::from_secs(20),
            max_attempts: 12,
            retry_base: Duration::from_secs(1),
            retry_cap: Duration::from_secs(60),
            concurrency: 8,
        }
    }
}

/// Delay before attempt `attempts + 1`: exponential from `base`, capped at
/// `cap`, with "equal jitter" (half fixed, half random from `jitter` in
/// `[0, 1)`), so retries of many events spread out but never exceed the cap.
pub fn retry_delay(attempts: i32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let exponential = base.saturating_mul(2u32.saturating_pow(exponent)).min(cap);
    let half = exponential / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

fn jitter() -> f64 {
    use rand::TryRng;
    let mut bytes = [0u8; 4];
    match rand::rngs::SysRng.try_fill_bytes(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

/// What one round of dispatch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Delivered.
    pub sent: usize,
    /// Failed and scheduled again.
    pub retried: usize,
    /// Failed for good.
    pub failed: usize,
    /// Claimed but handed back unattempted (shutdown).
    pub released: usize,
}

/// Deliveries since the dispatcher started, for operators.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Delivered.
    pub sent: std::sync::atomic::AtomicU64,
    /// Failed and scheduled again.
    pub retried: std::sync::atomic::AtomicU64,
    /// Failed for good.
    pub failed: std::sync::atomic::AtomicU64,
}

enum Handled {
    Sent,
    Retried,
    Failed,
    Released,
}

/// Moves due events from the outbox to the notifier: claims them with a
/// lease, delivers them, and records sent / retry later / failed. Several
/// dispatchers (in several processes) may run on one database.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Store,
    clock: Arc<dyn Clock>,
    notifier: Arc<dyn Notifier>,
    config: DispatcherConfig,
    wake: Arc<Notify>,
    stats: Arc<DeliveryStats>,
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Dispatcher {
    /// A dispatcher from `store` to `notifier`, telling time with `clock`,
    /// woken early through `wake`.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        notifier: Arc<dyn Notifier>,
        config: DispatcherConfig,
        wake: Arc<Notify>,
    ) -> Self {
        Dispatcher { store, clock, notifier, config, wake, stats: Arc::default() }
    }

    /// Counts deliveries into `stats` (the service's metrics).
    pub fn counting_into(mut self, stats: Arc<DeliveryStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Claims and delivers what is due now, several at a time. Stops early
    /// (handing the rest of its claim back) when `shutdown` turns true.
    pub async fn run_once(&self, shutdown: &watch::Receiver<bool>) -> Result<RoundReport, latchkey_store::StoreError> {
        use futures_util::StreamExt;
        let now = self.clock.now();
        let lease_until = now + chrono_duration(self.config.lease);
        let claimed = self.store.claim_due_events(now, lease_until, self.config.batch_size).await?;
        let outcomes: Vec<Result<Handled, latchkey_store::StoreError>> = futures_util::stream::iter(claimed)
            .map(|stored| self.handle(stored, lease_until, shutdown))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut report = RoundReport::default();
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(Handled::Sent) => report.sent += 1,
                Ok(Handled::Retried) => report.retried += 1,
                Ok(Handled::Failed) => report.failed += 1,
                Ok(Handled::Released) => report.released += 1,
                Err(e) => _ = first_error.get_or_insert(e),
            }
        }
        let add = |counter: &std::sync::atomic::AtomicU64, n: usize| {
            counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        };
        add(&self.stats.sent, report.sent);
        add(&self.stats.retried, report.retried);
        add(&self.stats.failed, report.failed);
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(report)
    }

    async fn handle(
        &self,
        stored: latchkey_store::StoredEvent,
        lease_until: chrono::DateTime<Utc>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Handled, latchkey_store::StoreError> {
        let id = stored.event.id;
        // Never send on an expiring lease: another dispatcher may already have
        // claimed the event again.
        let lease_left = lease_until - self.clock.now();
        if *shutdown.borrow() || lease_left < chrono_duration(self.config.send_timeout) {
            self.store.release_event(id).await?;
            return Ok(Handled::Released);
        }
        let outcome = match tokio::time::timeout(self.config.send_timeout, self.notifier.deliver(&stored.event)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(DeliveryError::Transient(format!(
                "delivery took longer than {} s",
                self.config.send_timeout.as_secs_f64()
            ))),
        };
        match outcome {
            Ok(()) => {
                self.store.mark_event_sent(id, self.clock.now()).await?;
                tracing::info!(event = %id, kind = stored.event.kind.as_str(), attempts = stored.attempts, "owner notified");
                Ok(Handled::Sent)
            }
            Err(DeliveryError::Permanent(reason)) => {
                tracing::error!(event = %id, %reason, "owner notice failed permanently");
                self.store.mark_event_failed(id, &reason).await?;
                Ok(Handled::Failed)
            }
            Err(DeliveryError::Transient(reason)) if stored.attempts >= self.config.max_attempts => {
                let reason = format!("gave up after {} attempts; last error: {reason}", stored.attempts);
                tracing::error!(event = %id, %reason, "owner notice failed");
                self.store.mark_event_failed(id, &reason).await?;
                Ok(Handled::Failed)
            }
            Err(DeliveryError::Transient(reason)) => {
                let delay = retry_delay(stored.attempts, self.config.retry_base, self.config.retry_cap, jitter());
                tracing::warn!(event = %id, %reason, attempts = stored.attempts, retry_in_ms = delay.as_millis() as u64, "owner notice will be retried");
                self.store.reschedule_event(id, self.clock.now() + chrono_duration(delay), &reason).await?;
                Ok(Handled::Retried)
            }
        }
    }

    /// Runs until `shutdown` turns true, then returns once the message in
    /// flight is done and the rest of the claim is handed back.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_once(&shutdown).await {
                // A full batch: there may be more due right away.
                Ok(r) if (r.sent + r.retried + r.failed + r.released) as u64 >= self.config.batch_size => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "outbox dispatch failed; will retry"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_exponentially_with_jitter_and_a_cap() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(retry_delay(1, base, cap, 0.0), Duration::from_millis(500));
        let almost = retry_delay(1, base, cap, 0.999_999);
        assert!(almost > Duration::from_millis(999) && almost < Duration::from_secs(1), "{almost:?}");
        assert_eq!(retry_delay(2, base, cap, 0.0), Duration::from_secs(1));
        assert_eq!(retry_delay(5, base, cap, 0.0), Duration::from_secs(8));
        for attempts in [7, 8, 30, 1000, i32::MAX] {
            let d = retry_delay(attempts, base, cap, 1.0);
            assert!(d <= cap, "{attempts}: {d:?}");
            assert!(retry_delay(attempts, base, cap, 0.0) >= cap / 2);
        }
        assert_eq!(retry_delay(0, base, cap, 0.0), Duration::from_millis(500));
        assert_eq!(retry_delay(-3, base, cap, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_is_in_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
