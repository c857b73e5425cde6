//! What operators measure, in the Prometheus text format (the `prometheus`
//! crate).
//!
//! Labels never carry a tenant, key, user or path: only a bounded set of
//! values (result codes, route patterns, methods, statuses), so a metric
//! cannot leak who uses the service or grow without bound.
//!
//! Counters on the verification path are handles made once at start-up, so
//! recording is one atomic add. Gauges of state held elsewhere (the outbox,
//! the pools, the cache) are read at scrape time ([`App::render_metrics`](crate::App::render_metrics)).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_notify::DeliveryStats;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::error::{AppError, AppResult};
use crate::verify::outcome::{REFUSAL_CODES, VerifyOutcome};

/// The media type of [`Metrics`]' exposition (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// HTTP methods with a label of their own; any other is `OTHER`.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Upper bounds of the HTTP latency buckets, in seconds.
const HTTP_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The service's metrics; see the module documentation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `VALID`, then one per [`REFUSAL_CODES`].
    verifications: [IntCounter; REFUSAL_CODES.len() + 1],
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    cache_entries: IntGauge,
    legacy_hash_wait: Histogram,
    legacy_hashes: IntCounter,
    http: HistogramVec,
    revocation_notices: IntCounter,
    listener_reconnects: IntCounter,
    outbox_pending: IntGauge,
    outbox_failed: IntGauge,
    outbox_oldest_pending_age: Gauge,
    pool_open: IntGauge,
    pool_in_use: IntGauge,
    standby_usable: IntGauge,
    standby_lag: Gauge,
    /// The dispatcher counts here; copied into `mail` at scrape time.
    mail_stats: Arc<DeliveryStats>,
    mail: IntCounterVec,
    /// Fetches of the identity provider's key set: succeeded, failed.
    oidc_key_fetches: [IntCounter; 2],
    /// One scrape at a time updates the scrape-time values.
    scrape: Mutex<()>,
}

fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> AppResult<M> {
    let metric = metric.map_err(|e| AppError::internal(&e))?;
    registry.register(Box::new(metric.clone())).map_err(|e| AppError::internal(&e))?;
    Ok(metric)
}

impl Metrics {
    /// Every metric, registered, at zero.
    pub fn new() -> AppResult<Self> {
        let registry = Registry::new_custom(Some("latchkey".into()), None).map_err(|e| AppError::internal(&e))?;
        let r = &registry;
        let counter = |name: &str, help: &str| registered(r, IntCounter::new(name, help));
        let gauge = |name: &str, help: &str| registered(r, IntGauge::new(name, help));
        let by_result = |name: &str, help: &str| registered(r, IntCounterVec::new(Opts::new(name, help), &["result"]));

        let results = by_result(
            "verifications_total",
            "Key verifications (REST, forward auth and GraphQL keys), by result code.",
        )?;
        let cache = by_result("verification_cache_lookups_total", "Lookups of the verified-key cache, by result.")?;
        let mail = by_result(
            "mail_deliveries_total",
            "Owner notices handed to the mail backend, by result (retried: will be tried again).",
        )?;
        for result in ["sent", "retried", "failed"] {
            mail.with_label_values(&[result]);
        }
        let oidc_key_fetches = by_result(
            "oidc_key_fetches_total",
            "Fetches of the identity provider's signing keys (OIDC sign-in), by result.",
        )?;
        let legacy_buckets = prometheus::exponential_buckets(0.0005, 4.0, 8).map_err(|e| AppError::internal(&e))?;
        Ok(Metrics {
            verifications: std::array::from_fn(|i| {
                results.with_label_values(&[if i == 0 { "VALID" } else { REFUSAL_CODES[i - 1] }])
            }),
            cache_hits: cache.with_label_values(&["hit"]),
            cache_misses: cache.with_label_values(&["miss"]),
            cache_entries: gauge("verification_cache_entries", "Keys in the verified-key cache.")?,
            legacy_hash_wait: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "legacy_hash_queue_wait_seconds",
                        "Time a legacy (argon2id) hash check waited for a hashing slot.",
                    )
                    .buckets(legacy_buckets),
                ),
            )?,
            legacy_hashes: counter(
                "legacy_hashes_total",
                "Legacy (argon2id) hash checks run: each within its key's budget, never for a presenter over its limit.",
            )?,
            http: registered(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "HTTP requests by route pattern, method and status.",
                    )
                    .buckets(HTTP_BUCKETS.to_vec()),
                    &["route", "method", "status"],
                ),
            )?,
            revocation_notices: counter(
                "revocation_notices_total",
                "Revocations received from other replicas (PostgreSQL LISTEN).",
            )?,
            listener_reconnects: counter(
                "revocation_listener_reconnects_total",
                "Times the revocation listener reconnected after start-up (the cache was resynchronised).",
            )?,
            outbox_pending: gauge("outbox_pending", "Owner notices waiting to be sent (retries included).")?,
            outbox_failed: gauge(
                "outbox_failed",
                "Owner notices given up on; `latchkey outbox retry` sends one again.",
            )?,
            outbox_oldest_pending_age: registered(
                r,
                Gauge::new(
                    "outbox_oldest_pending_age_seconds",
                    "Age of the oldest owner notice waiting to be sent; 0 when none waits.",
                ),
            )?,
            pool_open: gauge("db_connections_open", "Database connections open.")?,
            pool_in_use: gauge("db_connections_in_use", "Database connections lent to a query.")?,
            standby_usable: gauge(
                "db_standby_usable",
                "1 while reads go to the read standby; 0 while it is bypassed (down, too far behind) or none is set.",
            )?,
            standby_lag: registered(
                r,
                Gauge::new(
                    "db_standby_lag_seconds",
                    "How far the read standby was behind the primary at its last check.",
                ),
            )?,
            mail_stats: Arc::default(),
            mail,
            oidc_key_fetches: [
                oidc_key_fetches.with_label_values(&["ok"]),
                oidc_key_fetches.with_label_values(&["error"]),
            ],
            scrape: Mutex::new(()),
            registry,
        })
    }

    /// The totals the mail dispatcher counts into.
    pub fn mail(&self) -> Arc<DeliveryStats> {
        self.mail_stats.clone()
    }

    /// Counts a verification's result.
    pub(crate) fn verification(&self, outcome: &VerifyOutcome) {
        let slot = match outcome.code() {
            None => Some(0),
            Some(code) => REFUSAL_CODES.iter().position(|c| *c == code).map(|i| i + 1),
        };
        if let Some(i) = slot {
            self.verifications[i].inc();
        }
    }

    /// Counts a cache lookup.
    pub(crate) fn cache_lookup(&self, hit: bool) {
        if hit {
            self.cache_hits.inc()
        } else {
            self.cache_misses.inc()
        };
    }

    /// Records how long a legacy hash check waited for its slot.
    pub(crate) fn legacy_hash_waited(&self, waited: Duration) {
        self.legacy_hash_wait.observe(waited.as_secs_f64());
    }

    /// Counts a legacy hash check that runs.
    pub(crate) fn legacy_hash_run(&self) {
        self.legacy_hashes.inc();
    }

    /// Records an HTTP request: `route` is the matched pattern (never the
    /// path), `None` when no route matched.
    pub fn http_request(&self, route: Option<&str>, method: &str, status: u16, took: Duration) {
        let method = METHODS.iter().copied().find(|m| *m == method).unwrap_or("OTHER");
        let digits = status_digits(status);
        let status = std::str::from_utf8(&digits).unwrap_or("000");
        self.http.with_label_values(&[route.unwrap_or("unmatched"), method, status]).observe(took.as_secs_f64());
    }

    /// Counts a fetch of the identity provider's key set.
    pub(crate) fn oidc_key_fetch(&self, ok: bool) {
        self.oidc_key_fetches[usize::from(!ok)].inc();
    }

    /// Counts a revocation received from another replica.
    pub fn revocation_notice(&self) {
        self.revocation_notices.inc();
    }

    /// Counts a reconnect of the revocation listener.
    pub fn listener_reconnect(&self) {
        self.listener_reconnects.inc();
    }

    /// The text exposition, with the scrape-time values as given.
    pub(crate) fn render(&self, state: &ScrapeState) -> AppResult<String> {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        {
            let _one_at_a_time = self.scrape.lock().map_err(|_| AppError::internal(&"metrics lock poisoned"))?;
            self.cache_entries.set(gauge(state.cache_entries as u64));
            self.outbox_pending.set(gauge(state.outbox.pending));
            self.outbox_failed.set(gauge(state.outbox.failed));
            self.outbox_oldest_pending_age.set(state.oldest_pending_age.as_secs_f64());
            self.pool_open.set(i64::from(state.pool.open));
            self.pool_in_use.set(i64::from(state.pool.in_use));
            self.standby_usable.set(i64::from(state.standby.is_some_and(|s| s.usable)));
            self.standby_lag.set(state.standby.map_or(0.0, |s| s.lag.as_secs_f64()));
            let stats = &self.mail_stats;
            for (result, total) in [("sent", &stats.sent), ("retried", &stats.retried), ("failed", &stats.failed)] {
                let counter = self.mail.with_label_values(&[result]);
                counter.inc_by(total.load(Ordering::Relaxed).saturating_sub(counter.get()));
            }
        }
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text).map_err(|e| AppError::internal(&e))?;
        String::from_utf8(text).map_err(|e| AppError::internal(&e))
    }
}

/// A status code's three digits, without allocating.
fn status_digits(status: u16) -> [u8; 3] {
    let status = status.min(999);
    [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}

/// What is read at scrape time.
pub(crate) struct ScrapeState {
    pub cache_entries: usize,
    pub outbox: latchkey_store::OutboxStats,
    pub oldest_pending_age: Duration,
    pub pool: latchkey_store::PoolStatus,
    pub standby: Option<latchkey_store::StandbyStatus>,
}
