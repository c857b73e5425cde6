//! Verification of presented API keys.
//!
//! 1. Malformed keys (an `lk_` key's shape or checksum; a string no system's
//!    key could be) are refused without the database. Other non-`lk_`
//!    strings are looked up as imported keys (`latchkey_domain::import`).
//! 2. A cached verified key (see [`cache`]) is answered from memory: one HMAC
//!    and one shard lookup.
//! 3. A key that failed within the window is answered from memory too.
//! 4. Otherwise: one indexed lookup by the key's public lookup id and one hash
//!    check. For the current scheme that is a SHA-256, done inline; for an
//!    unknown lookup id the same work is done and thrown away, so both answers
//!    take the same time. A legacy argon2id hash is checked on the blocking
//!    pool, within the key's failure budget (taken first) and a global bound
//!    on concurrent hashes, then upgraded to the current scheme.
//! 5. The right secret of a disabled key answers `DISABLED`; of a key whose
//!    owner was deactivated, `OWNER_INACTIVE`; of an expired
//!    key, or a previous secret past its rotation's overlap, `EXPIRED`. A
//!    cached verification carries its secret's deadline and is not answered
//!    past it (time from the [`Clock`]); disabling, deactivating the owner,
//!    a transfer, and any change of expiry or overlap, is pushed to every
//!    replica's cache like a revocation.
//! 6. A working key is then decided against the request (cloud, address,
//!    permissions, in that order; [`Restrictions::decide`](latchkey_domain::restrictions::Restrictions::decide)): its restrictions
//!    and its owner's permissions are part of the cached entry, so this costs
//!    a few comparisons. A refusal is `NotAllowed`, not a failure.
//! 7. Failures are counted per lookup id and per client address; a presenter
//!    over its limit is answered `RATE_LIMITED` (see [`limits`]). A correct
//!    key is never refused for anyone else's failures. Restriction refusals
//!    are counted per key and client, and no legacy hash runs for a client
//!    over its limit.
//!
//! 8. A working key's request then spends its cost from the key's rate
//!    limits, its owner's and its credits, all or nothing, in memory (see
//!    [`budgets`]): over a limit it is `RATE_LIMIT_EXCEEDED`, short of
//!    credits `USAGE_EXCEEDED`, and nothing is spent.
//!
//! Every verification that names a key is counted (see [`usage`]): in
//! memory, written in batches with the key's last use.

mod budgets;
pub mod cache;
mod limits;
mod lookup;
pub(crate) mod outcome;
mod shards;
mod usage;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use latchkey_domain::hashing::{HashScheme, needs_upgrade, sha256_stored, verify_nothing, verify_raw, verify_secret};
use latchkey_domain::import;
use latchkey_domain::restrictions::RequestContext;
use latchkey_domain::usage::{LastUse, UsageOutcome, clean_user_agent};
use latchkey_domain::{Clock, LookupId, ParsedKey};
use latchkey_store::{RevocationSignal, Store, StoredCredential};
use tokio::sync::Semaphore;

use crate::error::AppResult;
use crate::metrics::Metrics;
use budgets::{Admission, Budgets};
pub use budgets::{Allowance, IDLE_RETURN, LimitReading};
pub use cache::{Verified, VerifiedKey, VerifiedKeyCache};
use limits::FailureLimiter;
pub(crate) use limits::client_presenter;
use lookup::CredentialLoader;
pub use outcome::{REFUSAL_CODES, VerifyOutcome};
use usage::UsageRecorder;

/// Tuning of verification.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// Most cached keys.
    pub cache_capacity: usize,
    /// How long a cached verification is trusted without looking again.
    /// Revocation is pushed, so this only bounds the damage of a revocation
    /// notice lost without the listener noticing.
    pub cache_ttl: Duration,
    /// The window failures are counted in.
    pub failure_window: Duration,
    /// Failures per lookup id per window before its presenters are `RATE_LIMITED`
    /// (and the legacy-hash budget of that key).
    pub max_failures_per_key: u32,
    /// Failures per client address per window before it is `RATE_LIMITED`.
    pub max_failures_per_client: u32,
    /// Most presenters and failed keys remembered.
    pub limiter_capacity: usize,
    /// Keys whose usage waits for the next flush past which a flush is asked
    /// for early (not a cap: only existing keys are counted).
    pub usage_capacity: usize,
    /// Concurrent legacy (argon2id) hash checks.
    pub legacy_hash_concurrency: usize,
    /// How long a legacy check waits for a slot before `RATE_LIMITED`.
    pub legacy_hash_queue_timeout: Duration,
    /// Batched credential queries in flight at once.
    pub lookup_concurrency: usize,
}

impl VerifierConfig {
    /// An upper bound of the memory verification holds once every map is at
    /// its cap: per entry, three map slots (a hash table is at worst 7/16
    /// full, just after growing) plus what the entry owns on the heap (a
    /// cached key's rendered answer, with allocator overhead).
    pub fn max_memory_bytes(&self) -> usize {
        const SLOTS: usize = 3;
        const CACHED_KEY: usize = SLOTS * 112 + 512; // digest -> key, deadline; Arc'd rendered answers
        const KEY_MAPPING: usize = 2 * SLOTS * 48; // key id -> digest, twice the cache's cap
        const PRESENTER: usize = SLOTS * 48; // lookup id or address -> window
        const FAILED_KEY: usize = SLOTS * 48; // digest -> deadline
        const RECORDED_USE: usize = SLOTS * 96 + 2 * 48 + 256; // key id -> counts of an hour or two, last use
        self.cache_capacity * (CACHED_KEY + KEY_MAPPING)
            + self.limiter_capacity * (PRESENTER + FAILED_KEY)
            + self.usage_capacity * RECORDED_USE
    }
}

/// The default TTL of a cached verification: 5 minutes.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

impl Default for VerifierConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        VerifierConfig {
            cache_capacity: 100_000,
            cache_ttl: DEFAULT_CACHE_TTL,
            failure_window: Duration::from_secs(60),
            max_failures_per_key: 10,
            max_failures_per_client: 300,
            limiter_capacity: 100_000,
            usage_capacity: 100_000,
            legacy_hash_concurrency: cores,
            legacy_hash_queue_timeout: Duration::from_millis(500),
            lookup_concurrency: 4,
        }
    }
}

/// Verifies presented keys; see the module documentation.
pub struct KeyVerifier {
    store: Store,
    credentials: CredentialLoader,
    clock: Arc<dyn Clock>,
    cache: VerifiedKeyCache,
    limiter: FailureLimiter,
    usage: Arc<UsageRecorder>,
    budgets: Budgets,
    legacy_slots: Semaphore,
    legacy_queue_timeout: Duration,
    metrics: Arc<Metrics>,
    first_uses: FirstUses,
}

/// A current secret that verified while its key keeps a previous secret
/// that stops on that first use (`endOverlapOnFirstUse`): the key and the
/// credential version that verified.
pub type FirstUse = (latchkey_domain::ApiKeyId, i32);

/// The queue of [`FirstUse`]s, drained by one task
/// ([`crate::App::end_overlap_on_first_use`]). Bounded: when full, a use is
/// dropped and the overlap ends at its deadline instead.
struct FirstUses {
    sender: tokio::sync::mpsc::Sender<FirstUse>,
    receiver: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<FirstUse>>>,
}

impl FirstUses {
    fn new() -> Self {
        let (sender, receiver) = tokio::sync::mpsc::channel(1024);
        FirstUses { sender, receiver: std::sync::Mutex::new(Some(receiver)) }
    }
}

impl std::fmt::Debug for KeyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVerifier").field("cache", &self.cache).finish_non_exhaustive()
    }
}

fn refused(over_limit: bool) -> VerifyOutcome {
    if over_limit { VerifyOutcome::RateLimited } else { VerifyOutcome::Invalid }
}

impl KeyVerifier {
    /// The queue of first uses of new secrets whose previous secret must
    /// then stop; given once (to the task that drains it), then none.
    pub fn take_first_uses(&self) -> Option<tokio::sync::mpsc::Receiver<FirstUse>> {
        self.first_uses.receiver.lock().ok()?.take()
    }

    /// A verifier over `store`. Spawns its credential loader on the current
    /// tokio runtime; wakes `outbox` when a key's credits run low.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        config: &VerifierConfig,
        metrics: Arc<Metrics>,
        outbox: Arc<tokio::sync::Notify>,
    ) -> AppResult<Self> {
        Ok(KeyVerifier {
            first_uses: FirstUses::new(),
            budgets: Budgets::new(store.clone(), outbox),
            credentials: CredentialLoader::new(store.clone(), config.lookup_concurrency)?,
            store,
            clock,
            cache: VerifiedKeyCache::new(config.cache_capacity, config.cache_ttl)?,
            limiter: FailureLimiter::new(
                config.failure_window,
                config.max_failures_per_key,
                config.max_failures_per_client,
                config.limiter_capacity,
            ),
            usage: Arc::new(UsageRecorder::new(config.usage_capacity)),
            legacy_slots: Semaphore::new(config.legacy_hash_concurrency.max(1)),
            legacy_queue_timeout: config.legacy_hash_queue_timeout,
            metrics,
        })
    }

    /// Verifies `presented`, from `client` when known, for `request`.
    pub async fn verify(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        request: &RequestContext,
    ) -> AppResult<VerifyOutcome> {
        let now = self.clock.now();
        let outcome = match self.check_credential(presented, client, now).await? {
            VerifyOutcome::Valid(key, _) => match self.decide(key, client, request, now) {
                VerifyOutcome::Valid(key, _) => self.admit(key, client, request, now).await?,
                refused => refused,
            },
            other => other,
        };
        self.metrics.verification(&outcome);
        Ok(outcome)
    }

    /// Spends the request's cost from the key's limits and credits, and
    /// counts the verdict for the key.
    async fn admit(
        &self,
        key: VerifiedKey,
        client: Option<IpAddr>,
        request: &RequestContext,
        now: DateTime<Utc>,
    ) -> AppResult<VerifyOutcome> {
        let allowance = if key.budgets.is_unlimited() {
            Allowance::default()
        } else {
            match self.budgets.admit(&key.budgets, request.cost, now).await? {
                Admission::Admitted(allowance) => allowance,
                Admission::OverLimit(reading) => {
                    self.usage.count(key.key_id, key.tenant_id, now, UsageOutcome::RateLimitExceeded, 1);
                    return Ok(VerifyOutcome::RateLimitExceeded(reading));
                }
                Admission::OutOfCredits(remaining, refills_at) => {
                    self.usage.count(key.key_id, key.tenant_id, now, UsageOutcome::UsageExceeded, 1);
                    return Ok(VerifyOutcome::UsageExceeded { remaining, refills_at });
                }
            }
        };
        self.count_valid(&key, client, request, now);
        Ok(VerifyOutcome::Valid(key, allowance))
    }

    /// Decides a working key against the request. A refusal counts as a
    /// failure of its presenter, the key from this client (like a wrong
    /// secret, and on the same limit per window): past it, refusals answer
    /// `RATE_LIMITED`, and so does every answer of an address-restricted key
    /// to that client, so probing `ip` cannot map an allowlist. Other
    /// clients of the key, and the client's other keys, are not affected.
    ///
    /// A refusal is counted for the key; a pass is counted once admitted.
    fn decide(
        &self,
        key: VerifiedKey,
        client: Option<IpAddr>,
        request: &RequestContext,
        now: DateTime<Utc>,
    ) -> VerifyOutcome {
        let instant = Instant::now();
        let refused = |outcome: UsageOutcome, answer: VerifyOutcome| {
            self.usage.count(key.key_id, key.tenant_id, now, outcome, 1);
            answer
        };
        if !key.restrictions.allowed_networks.is_empty() && self.limiter.refused_too_often(key.key_id, client, instant)
        {
            return refused(UsageOutcome::RateLimited, VerifyOutcome::RateLimited);
        }
        match key.restrictions.decide(key.owner_may, request) {
            Ok(()) => VerifyOutcome::Valid(key, Allowance::default()),
            Err(_) if self.limiter.refuse(key.key_id, client, instant) => {
                refused(UsageOutcome::RateLimited, VerifyOutcome::RateLimited)
            }
            Err(refusal) => refused(UsageOutcome::Forbidden, VerifyOutcome::NotAllowed(refusal)),
        }
    }

    /// Counts a successful verification in the key's tally; the first in a
    /// second also records it as the key's last use.
    fn count_valid(&self, key: &VerifiedKey, client: Option<IpAddr>, request: &RequestContext, now: DateTime<Utc>) {
        let Some(handed) = key.tally.count(usage::second_of(now)) else { return };
        self.usage.count_handed(key.key_id, key.tenant_id, key.valid_outcome(), handed);
        let last = LastUse {
            at: now,
            cloud: request.cloud,
            client_address: request.ip.or(client),
            user_agent: request.user_agent.as_deref().and_then(clean_user_agent),
        };
        self.usage.last_use(key.key_id, key.tenant_id, last);
    }

    /// Whether `presented` is a working key, whatever it is asked to do.
    async fn check_credential(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        wall_now: DateTime<Utc>,
    ) -> AppResult<VerifyOutcome> {
        let Ok(parsed) = ParsedKey::parse(presented) else {
            if presented.starts_with(latchkey_domain::secret::KEY_PREFIX) || !import::plausible_foreign_key(presented) {
                return Ok(VerifyOutcome::Malformed);
            }
            return self.verify_imported(presented, client, wall_now).await;
        };
        let now = Instant::now();
        let digest = self.cache.digest(presented);
        if let Some(hit) = self.cached(&digest, now, wall_now) {
            return Ok(VerifyOutcome::Valid(hit, Allowance::default()));
        }
        let lookup = parsed.lookup_id();
        if let Some(over_limit) = self.limiter.failed_before(&digest, &lookup, client, now) {
            return Ok(refused(over_limit));
        }
        let epoch = self.cache.epoch();
        let stored = self.credentials.load(lookup.clone()).await?;
        let matched = match &stored {
            None => {
                verify_nothing(&parsed);
                false
            }
            Some(credential) => match HashScheme::of(&credential.hash) {
                Some(HashScheme::LegacyArgon2id) => {
                    match self.check_legacy(presented, &lookup, client, credential).await? {
                        Some(matched) => matched,
                        None => return Ok(VerifyOutcome::RateLimited),
                    }
                }
                _ => verify_secret(&parsed, &credential.hash),
            },
        };
        let (true, Some(credential)) = (matched, stored) else {
            return Ok(refused(self.limiter.fail(digest, &lookup, client, Instant::now())));
        };
        Ok(self.accept(presented, credential, digest, epoch, wall_now).await)
    }

    /// A key imported in another system's format: found by its prefix or
    /// digest (one indexed query), checked like any key. Failures and the
    /// legacy-hash budget count against what the key is stored under (its
    /// `prefix:…`), so guesses at one imported key share one budget however
    /// they vary the rest.
    async fn verify_imported(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        wall_now: DateTime<Utc>,
    ) -> AppResult<VerifyOutcome> {
        let now = Instant::now();
        let digest = self.cache.digest(presented);
        if let Some(hit) = self.cached(&digest, now, wall_now) {
            return Ok(VerifyOutcome::Valid(hit, Allowance::default()));
        }
        let lookups = import::lookups_of(presented);
        // Before anything is found, the presented key's own digest stands in
        // for a lookup id. A failed foreign key is counted, not remembered:
        // it may be imported the next minute (by another process), and
        // remembering saves nothing against guesses, which all differ.
        let mut lookup = LookupId::from_stored(lookups[0].clone());
        let epoch = self.cache.epoch();
        let mut matched = None;
        for credential in self.store.credentials_by_import_lookups(&lookups).await? {
            lookup = credential.lookup_id.clone();
            let ok = match HashScheme::of(&credential.hash) {
                Some(HashScheme::LegacyArgon2id) => {
                    match self.check_legacy(presented, &credential.lookup_id, client, &credential).await? {
                        Some(ok) => ok,
                        None => return Ok(VerifyOutcome::RateLimited),
                    }
                }
                _ => verify_raw(presented, &credential.hash),
            };
            if ok {
                matched = Some(credential);
                break;
            }
        }
        let Some(credential) = matched else {
            return Ok(refused(self.limiter.count_failure(&lookup, client, Instant::now())));
        };
        Ok(self.accept(presented, credential, digest, epoch, wall_now).await)
    }

    /// A live cached verification, unless past its secret's deadline.
    fn cached(&self, digest: &cache::Digest, now: Instant, wall_now: DateTime<Utc>) -> Option<VerifiedKey> {
        let hit = self.cache.get(digest, now);
        self.metrics.cache_lookup(hit.is_some());
        let hit = hit?;
        // Past its deadline, a cached secret is looked up again (and refused).
        if hit.valid_until.is_some_and(|until| wall_now >= until) {
            return None;
        }
        Some(hit)
    }

    /// The verdict for the right secret: its key's state decides (and a
    /// refusal here is not a failure); a working key is cached and its use
    /// recorded, and a hash of an older scheme is upgraded.
    async fn accept(
        &self,
        presented: &str,
        credential: StoredCredential,
        digest: cache::Digest,
        epoch: u64,
        now: DateTime<Utc>,
    ) -> VerifyOutcome {
        let refused = |outcome: UsageOutcome, answer: VerifyOutcome| {
            self.usage.count(credential.key_id, credential.tenant_id, now, outcome, 1);
            answer
        };
        if credential.compromised {
            return refused(UsageOutcome::Compromised, VerifyOutcome::Compromised);
        }
        if credential.disabled {
            return refused(UsageOutcome::Disabled, VerifyOutcome::Disabled);
        }
        if credential.owner_inactive {
            return refused(UsageOutcome::OwnerInactive, VerifyOutcome::OwnerInactive);
        }
        if credential.works_until.is_some_and(|until| until <= now) {
            return refused(UsageOutcome::Expired, VerifyOutcome::Expired);
        }
        if !credential.previous && needs_upgrade(&credential.hash) {
            self.upgrade(presented, &credential).await;
        }
        if credential.ends_overlap_on_use {
            // Every first use of the new secret on any replica is a lookup
            // (rotation dropped the cached entries), so this sees it.
            let _ = self.first_uses.sender.try_send((credential.key_id, credential.version));
        }
        let key = VerifiedKey::new(Verified {
            key_id: credential.key_id,
            tenant_id: credential.tenant_id,
            owner_id: credential.owner_id,
            version: credential.version,
            valid_until: credential.works_until,
            restrictions: credential.restrictions.clone(),
            owner_may: credential.owner_may,
            rendered: std::sync::OnceLock::new(),
            rendered_headers: std::sync::OnceLock::new(),
            previous: credential.previous,
            tally: usage::UseTally::default(),
            recorder: self.usage.clone(),
            budgets: self.budgets.for_key(&credential),
        });
        self.cache.insert(digest, key.clone(), epoch, Instant::now());
        VerifyOutcome::Valid(key, Allowance::default())
    }

    /// Checks a legacy argon2id hash within the key's budget, its
    /// presenter's failure limit and the global bound; `None` (no hash run)
    /// when any is exhausted.
    async fn check_legacy(
        &self,
        presented: &str,
        lookup: &LookupId,
        client: Option<IpAddr>,
        credential: &StoredCredential,
    ) -> AppResult<Option<bool>> {
        if self.limiter.client_over_limit(client, Instant::now()) || !self.limiter.reserve(lookup, Instant::now()) {
            return Ok(None);
        }
        let queued = Instant::now();
        let slot = tokio::time::timeout(self.legacy_queue_timeout, self.legacy_slots.acquire()).await;
        self.metrics.legacy_hash_waited(queued.elapsed());
        let Ok(Ok(_slot)) = slot else {
            self.limiter.refund(lookup, Instant::now());
            return Ok(None);
        };
        self.metrics.legacy_hash_run();
        let (presented, hash) = (presented.to_owned(), credential.hash.clone());
        let matched = tokio::task::spawn_blocking(move || verify_raw(&presented, &hash)).await?;
        // The reservation held the place of this check while it ran; a
        // mismatch is counted by the caller like any other failure.
        self.limiter.refund(lookup, Instant::now());
        Ok(Some(matched))
    }

    /// Replaces a legacy hash by the current scheme's, unless the key was
    /// rotated or deleted meanwhile (then that change wins). A failure is
    /// logged and retried on the next verification.
    async fn upgrade(&self, presented: &str, credential: &StoredCredential) {
        match self.store.upgrade_credential_hash(credential, &sha256_stored(presented)).await {
            Ok(true) => tracing::info!(key = %credential.key_id, "key hash upgraded to the current scheme"),
            Ok(false) => tracing::info!(key = %credential.key_id, "key changed before its hash upgrade; kept"),
            Err(e) => tracing::warn!(key = %credential.key_id, error = %e, "key hash upgrade failed; will retry"),
        }
    }

    /// How long a `RATE_LIMITED` presenter should wait before retrying (the
    /// failure window: its count has started again by then).
    pub fn retry_after(&self) -> Duration {
        self.limiter.window()
    }

    /// How many verified keys are cached.
    pub fn cached_keys(&self) -> usize {
        self.cache.len()
    }

    /// Forgets a key that was rotated or deleted in this process.
    pub fn forget(&self, key: latchkey_domain::ApiKeyId) {
        self.cache.invalidate(key);
        self.budgets.key_changed(key);
    }

    /// Applies a revocation signal from another replica.
    pub fn apply(&self, signal: RevocationSignal) {
        // First the standby's guard, so no lookup after the cache forgets
        // reads the key from a standby that has not replayed its revocation.
        self.store.note_revocation(signal);
        match signal {
            RevocationSignal::Key(signal) => self.forget(signal.key_id),
            RevocationSignal::Resync => {
                self.cache.invalidate_all();
                self.budgets.all_changed();
            }
        }
    }

    /// A reading of a key's credits: stored plus held here (see
    /// `Budgets::read_credits`).
    pub(crate) async fn read_credits<F, Fut>(
        &self,
        key: latchkey_domain::ApiKeyId,
        now: chrono::DateTime<chrono::Utc>,
        stored: Option<latchkey_domain::limits::KeyCredits>,
        reread: F,
    ) -> AppResult<Option<latchkey_domain::limits::KeyCredits>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = AppResult<Option<latchkey_domain::limits::KeyCredits>>>,
    {
        self.budgets.read_credits(key, now, stored, reread).await
    }

    /// Gives back every credit this replica holds (at shutdown); returns how many.
    pub async fn give_back_credits(&self) -> AppResult<u64> {
        self.budgets.tidy(self.clock.now(), true).await
    }

    /// Writes what was counted (every cached key's tally included) and the
    /// keys' last uses, and drops usage past its retention; returns how many
    /// counts were written. On failure the batch is kept for next time.
    pub async fn flush_usage(&self) -> AppResult<usize> {
        let now = self.clock.now();
        // First, so that the counts go to the window of today, and the days
        // that left it are still stored when they are taken off.
        if self.store.advance_usage_window(latchkey_domain::usage::UsageRange::recent(now).from).await? {
            tracing::info!("the usage window moved on a day");
        }
        self.cache.for_each(|key| key.hand_over_uses());
        let batch = self.usage.drain();
        let written = batch.counts.len();
        if !batch.is_empty()
            && let Err(e) = self.store.record_usage(&batch).await
        {
            self.usage.unwritten(batch);
            return Err(e.into());
        }
        let dropped = self.store.drop_expired_usage(now).await?;
        if dropped > 0 {
            tracing::info!(rows = dropped, "usage past its retention dropped");
        }
        let receipts_before = now - chrono::Duration::hours(latchkey_domain::usage::USAGE_RECEIPT_RETENTION_HOURS);
        self.store.drop_usage_receipts(receipts_before).await?;
        self.budgets.tidy(now, false).await?;
        // Windows are at most a day long: two days on, none is current.
        self.store.drop_past_windows(now.timestamp() - 2 * 86_400).await?;
        Ok(written)
    }

    /// Resolves when recorded uses reached their cap and should be flushed.
    pub async fn usage_filled(&self) {
        self.usage.filled().await;
    }
}
