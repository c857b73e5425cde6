//! Latchkey's notification port: key events leave the outbox (written by the
//! store in the transaction of the key change) and reach the key's owner.
//!
//! A [`Notifier`] delivers one event; the [`Dispatcher`] claims due events from
//! the store, hands them to the notifier and records the outcome.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use latchkey_domain::KeyEvent;
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

/// Delivers one key event to its owner.
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Delivers `event`.
    fn deliver<'a>(&'a self, event: &'a KeyEvent) -> DeliveryFuture<'a>;
}

/// A notifier that keeps every event it is given, for tests and for
/// inspection.
#[derive(Debug, Default, Clone)]
pub struct RecordingNotifier {
    delivered: Arc<Mutex<Vec<KeyEvent>>>,
}

impl RecordingNotifier {
    /// Everything delivered so far.
    pub fn delivered(&self) -> Vec<KeyEvent> {
        self.delivered.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Notifier for RecordingNotifier {
    fn deliver<'a>(&'a self, event: &'a KeyEvent) -> DeliveryFuture<'a> {
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
    /// How often the outbox is polled when nothing wakes the dispatcher.
    pub poll_interval: Duration,
    /// Most events taken per round.
    pub batch_size: u64,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig { poll_interval: Duration::from_millis(500), batch_size: 50 }
    }
}

/// Moves due events from the outbox to the notifier.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    store: Store,
    notifier: Arc<dyn Notifier>,
    config: DispatcherConfig,
    wake: Arc<Notify>,
    now: fn() -> DateTime<Utc>,
}

impl Dispatcher {
    /// A dispatcher from `store` to `notifier`.
    pub fn new(store: Store, notifier: Arc<dyn Notifier>, config: DispatcherConfig) -> Self {
        Dispatcher { store, notifier, config, wake: Arc::new(Notify::new()), now: Utc::now }
    }

    /// A handle that wakes the dispatcher at once (call after a key change).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Delivers what is due now; returns how many events were delivered.
    pub async fn run_once(&self) -> Result<usize, latchkey_store::StoreError> {
        let due = self.store.due_events((self.now)(), self.config.batch_size).await?;
        let mut delivered = 0;
        for stored in due {
            match self.notifier.deliver(&stored.event).await {
                Ok(()) => {
                    self.store.mark_event_sent(stored.event.id, (self.now)()).await?;
                    delivered += 1;
                }
                Err(e) => tracing::warn!(event = %stored.event.id, error = %e, "delivery failed"),
            }
        }
        Ok(delivered)
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "outbox dispatch failed"),
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
