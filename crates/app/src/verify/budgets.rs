//! Rate limits and credits, enforced in memory from leases of the shared
//! counts.
//!
//! Each replica holds, per limit and window, a lease: units it took from
//! the window's shared count (`rate_limit_windows`, one locked row per
//! window) and may admit without asking anyone. A request takes its cost
//! from every lease of the key and its owner, and from the key's credits,
//! all or nothing: one lock per budget, no database round trip. Only when a
//! lease runs short does one request per budget lease more (a
//! [`RateLimit::lease_size`] or [`KeyCredits::lease_size`](latchkey_domain::limits::KeyCredits::lease_size) chunk, one short
//! transaction); the others wait for it. A budget that runs below half a
//! lease leases ahead in the background, so requests rarely wait at all
//! (never for limits of 40 and less, which lease one unit at a time and
//! stay exact). A window whose shared count reached its limit, or credits
//! that are spent, are remembered as such: refusals cost nothing either.
//!
//! Bounds with N replicas: a window never admits more than its limit (the
//! leases are taken from one row under its lock); it admits at least
//! limit − (N − 1) × 1.5 × ⌈limit/40⌉ when demand exceeds it (what other
//! replicas hold unused when it ends: at most half a lease and the one
//! leased ahead). Credits are never overspent: a replica spends only what it
//! took from the stored count. What a replica held when it was killed is
//! lost (at most one and a half leases per key: ≤ 1,500 credits, or 3/40 of
//! what was stored); a replica gives back what it holds when the key has been
//! idle for [`IDLE_RETURN`] and when it shuts down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use latchkey_domain::lifecycle::system_actor;
use latchkey_domain::limits::{Cost, KeyCredits, RateLimit};
use latchkey_domain::webhook_events::{WebhookEvent, fields};
use latchkey_domain::webhooks::WebhookEventType;
use latchkey_domain::{ApiKeyId, Notice, NoticeKind};
use latchkey_store::{Store, StoredCredential, WindowId};
use tokio::sync::Notify;

use crate::error::AppResult;

/// How long a key goes unused before a replica gives back the credits it holds.
pub const IDLE_RETURN: chrono::Duration = chrono::Duration::seconds(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One limit's state after a request, as the answer shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitReading {
    /// The limit's name.
    pub name: Arc<str>,
    /// Units per window.
    pub limit: u64,
    /// Its window.
    pub period_seconds: u32,
    /// What is left of the window, as this replica knows it (exact on one
    /// replica; with several, what others hold unused counts as spent).
    pub remaining: u64,
    /// When the window ends.
    pub resets_at: DateTime<Utc>,
}

/// What an admitted request leaves of the key's limits and credits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowance {
    /// Every limit of the key, then of its owner.
    pub limits: Vec<LimitReading>,
    /// The credits left; none when unlimited.
    pub credits: Option<u64>,
}

/// Whether a request fits the key's limits and credits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Admitted: its cost is spent.
    Admitted(Allowance),
    /// Over this limit (the first that refused): nothing spent.
    OverLimit(LimitReading),
    /// Not enough credits (this many are left, refilled then): nothing spent.
    OutOfCredits(u64, Option<DateTime<Utc>>),
}

/// The budgets a cached key takes from.
#[derive(Debug, Default)]
pub(crate) struct KeyBudgets {
    limits: Vec<Arc<WindowBudget>>,
    credits: Option<Arc<CreditBudget>>,
}

impl KeyBudgets {
    /// Whether the key has no limits and no credits.
    pub(crate) fn is_unlimited(&self) -> bool {
        self.limits.is_empty() && self.credits.is_none()
    }
}

#[derive(Debug)]
struct WindowState {
    start: i64,
    held: u64,
    leased_in_all: u64,
    exhausted: bool,
}

impl WindowState {
    fn fresh(start: i64) -> Self {
        WindowState { start, held: 0, leased_in_all: 0, exhausted: false }
    }
}

/// One limit of one key or owner on this replica.
#[derive(Debug)]
struct WindowBudget {
    subject: uuid::Uuid,
    limit: RateLimit,
    name: Arc<str>,
    state: Mutex<WindowState>,
    leasing: Arc<tokio::sync::Mutex<()>>,
}

enum Take<R> {
    Taken(i64),
    Refused(R),
    NeedsLease,
}

impl WindowBudget {
    fn reading(&self, state: &WindowState, resets_at: DateTime<Utc>) -> LimitReading {
        LimitReading {
            name: self.name.clone(),
            limit: self.limit.limit,
            period_seconds: self.limit.period_seconds,
            remaining: self.limit.limit.saturating_sub(state.leased_in_all) + state.held,
            resets_at,
        }
    }

    fn current(&self, now: DateTime<Utc>) -> (MutexGuard<'_, WindowState>, latchkey_domain::limits::Window) {
        let window = self.limit.window(now);
        let mut state = lock(&self.state);
        if state.start < window.start {
            *state = WindowState::fresh(window.start);
        }
        (state, window)
    }

    fn try_take(&self, cost: u64, now: DateTime<Utc>) -> Take<LimitReading> {
        let (mut state, window) = self.current(now);
        if state.held >= cost {
            state.held -= cost;
            Take::Taken(window.start)
        } else if state.exhausted || cost > self.limit.limit {
            Take::Refused(self.reading(&state, window.resets_at))
        } else {
            Take::NeedsLease
        }
    }

    fn give_back(&self, cost: u64, start: i64) {
        let mut state = lock(&self.state);
        if state.start == start {
            state.held += cost;
        }
    }

    fn read(&self, now: DateTime<Utc>) -> LimitReading {
        let (state, window) = self.current(now);
        self.reading(&state, window.resets_at)
    }

    /// Takes `cost`, leasing first what it is short of: one request leases
    /// at a time, and takes its cost from its own grant, so a request that
    /// leases is never starved by the others.
    async fn take(&self, store: &Store, cost: u64, now: DateTime<Utc>) -> AppResult<Take<LimitReading>> {
        if let taken @ (Take::Taken(_) | Take::Refused(_)) = self.try_take(cost, now) {
            return Ok(taken);
        }
        let _one_at_a_time = self.leasing.lock().await;
        if let taken @ (Take::Taken(_) | Take::Refused(_)) = self.try_take(cost, now) {
            return Ok(taken);
        }
        self.lease(store, cost, now).await?;
        // A window that ended meanwhile asks for another round.
        Ok(self.try_take(cost, now))
    }

    /// Whether this replica should lease ahead: less than half a lease is
    /// left and the window is not spent. Limits of one-unit leases (40 and
    /// less) never lease ahead, so they stay exact.
    fn wants_more(&self, now: DateTime<Utc>) -> bool {
        let size = self.limit.lease_size();
        let (state, _) = self.current(now);
        size > 1 && !state.exhausted && state.held * 2 < size && state.leased_in_all < self.limit.limit
    }

    /// Leases a chunk, at least what `cost` is short of; the caller holds `leasing`.
    async fn lease(&self, store: &Store, cost: u64, now: DateTime<Utc>) -> AppResult<()> {
        let (want, window) = {
            let (state, window) = self.current(now);
            (self.limit.lease_size().max(cost.saturating_sub(state.held)), window)
        };
        let id = WindowId {
            subject: self.subject,
            name: self.limit.name.clone(),
            period_seconds: self.limit.period_seconds,
            start: window.start,
        };
        let lease = store.lease_window(&id, self.limit.limit, want).await?;
        let (mut state, _) = self.current(now);
        if state.start == window.start {
            state.held += lease.granted;
            state.leased_in_all = lease.leased;
            state.exhausted = lease.granted < want;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct CreditState {
    generation: i32,
    held: u64,
    stored: u64,
    exhausted: bool,
    stale: bool,
    unlimited: bool,
    next_refill_at: Option<DateTime<Utc>>,
    last_taken: Option<DateTime<Utc>>,
    last_grant: u64,
}

/// The credits of one key on this replica.
#[derive(Debug)]
struct CreditBudget {
    key_id: ApiKeyId,
    state: Mutex<CreditState>,
    leasing: Arc<tokio::sync::Mutex<()>>,
}

impl CreditBudget {
    fn try_take(&self, cost: u64, now: DateTime<Utc>) -> Take<(u64, Option<DateTime<Utc>>)> {
        let mut state = lock(&self.state);
        if state.unlimited {
            return Take::Taken(0);
        }
        if state.stale || state.next_refill_at.is_some_and(|at| now >= at) {
            return Take::NeedsLease;
        }
        if state.held >= cost {
            state.held -= cost;
            state.last_taken = Some(now);
            Take::Taken(i64::from(state.generation))
        } else if state.exhausted {
            Take::Refused((state.held + state.stored, state.next_refill_at))
        } else {
            Take::NeedsLease
        }
    }

    fn remaining(&self) -> Option<u64> {
        let state = lock(&self.state);
        (!state.unlimited).then_some(state.held + state.stored)
    }

    /// Leases at least what `cost` is short of from the stored credits, in
    /// one transaction that also applies a due refill and queues the
    /// owner's low or spent notice (once per period).
    /// The caller takes its cost from its own grant (see [`WindowBudget::take`]).
    async fn take(
        &self,
        store: &Store,
        outbox: &Notify,
        cost: u64,
        now: DateTime<Utc>,
    ) -> AppResult<Take<(u64, Option<DateTime<Utc>>)>> {
        if let taken @ (Take::Taken(_) | Take::Refused(_)) = self.try_take(cost, now) {
            return Ok(taken);
        }
        let _one_at_a_time = self.leasing.lock().await;
        if let taken @ (Take::Taken(_) | Take::Refused(_)) = self.try_take(cost, now) {
            return Ok(taken);
        }
        self.lease(store, outbox, cost, now).await?;
        Ok(self.try_take(cost, now))
    }

    /// Whether this replica should lease ahead: less than half its last
    /// lease is left and the stored credits are not spent. One-credit
    /// leases never lease ahead.
    fn wants_more(&self, now: DateTime<Utc>) -> Option<u64> {
        let state = lock(&self.state);
        let due = state.next_refill_at.is_some_and(|at| now >= at);
        let ahead = !state.unlimited && !state.stale && !state.exhausted && !due && state.stored > 0;
        (ahead && state.last_grant > 1 && state.held * 2 < state.last_grant).then_some(state.held)
    }

    async fn lease(&self, store: &Store, outbox: &Notify, cost: u64, now: DateTime<Utc>) -> AppResult<()> {
        let tx = store.begin().await?;
        let Some(key) = tx.locked_key_of_any_tenant(self.key_id).await? else {
            // Deleted: nothing to spend.
            let mut state = lock(&self.state);
            (state.held, state.stored, state.exhausted, state.stale) = (0, 0, true, false);
            return Ok(());
        };
        let Some(stored) = key.credits.clone() else {
            lock(&self.state).unlimited = true;
            return Ok(());
        };
        let mut credits = stored.as_of(now);
        let held = {
            let mut state = lock(&self.state);
            if state.generation != credits.generation {
                // Set again or refilled: what this replica held is void.
                state.held = 0;
                state.generation = credits.generation;
            }
            state.held
        };
        let short = cost.saturating_sub(held);
        let granted = if short == 0 { 0 } else { credits.lease_size(short) };
        credits.remaining -= granted as i64;
        let mut notices = Vec::new();
        if credits.low_notice_due() {
            credits.low_mailed_at = Some(now);
            notices.push(NoticeKind::CreditsLow);
        }
        // Spent: nothing stored, nothing held here (other replicas may still hold a little).
        if held + granted == 0 && short > 0 && credits.empty_notice_due() {
            credits.empty_mailed_at = Some(now);
            notices.push(NoticeKind::CreditsExhausted);
        }
        if credits != stored {
            tx.write_credits(key.id, Some(&credits)).await?;
        }
        if !notices.is_empty() {
            let owner = tx.owner_of(&key).await?;
            let actor = system_actor(key.tenant_id);
            for kind in &notices {
                tx.enqueue_notice(&Notice::new(*kind, &key, &owner, &actor, now)).await?;
            }
            if notices.contains(&NoticeKind::CreditsLow) {
                // Found by the webhook dispatcher's next poll.
                let low = fields([(
                    "credits",
                    serde_json::json!({"remaining": credits.remaining, "allotment": credits.allotment}),
                )]);
                let event = WebhookEvent::about_key(WebhookEventType::KeyCreditsLow, &key, &owner, &actor, now, low);
                let endpoints = tx.enabled_webhook_endpoints(key.tenant_id).await?;
                crate::change::queue_event(&tx, &endpoints, &event).await?;
            }
        }
        tx.commit().await?;
        if !notices.is_empty() {
            outbox.notify_one();
        }
        let mut state = lock(&self.state);
        if state.generation == credits.generation {
            state.held += granted;
        }
        state.stored = credits.remaining.max(0) as u64;
        state.exhausted = granted < short;
        state.last_grant = granted;
        state.stale = false;
        state.next_refill_at = credits.refill.map(|refill| refill.next_after(credits.since));
        Ok(())
    }

    /// Takes what this replica holds, to give it back.
    fn take_held(&self) -> Option<(i32, u64)> {
        let mut state = lock(&self.state);
        let held = std::mem::take(&mut state.held);
        (held > 0).then_some((state.generation, held))
    }
}

/// Every budget of this replica; see the module documentation.
#[derive(Debug)]
pub(crate) struct Budgets {
    store: Store,
    outbox: Arc<Notify>,
    windows: Mutex<HashMap<(uuid::Uuid, RateLimit), Arc<WindowBudget>>>,
    credits: Mutex<HashMap<ApiKeyId, Arc<CreditBudget>>>,
}

impl Budgets {
    pub(crate) fn new(store: Store, outbox: Arc<Notify>) -> Self {
        Budgets { store, outbox, windows: Mutex::default(), credits: Mutex::default() }
    }

    /// The budgets of a verified credential: its limits, its owner's and its
    /// credits (shared with every other cached secret of the key or owner).
    pub(crate) fn for_key(&self, credential: &StoredCredential) -> KeyBudgets {
        let mut budgets = KeyBudgets::default();
        if !credential.rate_limits.is_empty() || !credential.owner_rate_limits.is_empty() {
            let mut windows = lock(&self.windows);
            let subjects = [
                (credential.key_id.0, &credential.rate_limits),
                (credential.owner_id.0, &credential.owner_rate_limits),
            ];
            for (subject, limits) in subjects {
                for limit in limits.as_slice() {
                    let budget = windows.entry((subject, limit.clone())).or_insert_with(|| {
                        Arc::new(WindowBudget {
                            subject,
                            limit: limit.clone(),
                            name: limit.name.as_str().into(),
                            state: Mutex::new(WindowState::fresh(i64::MIN)),
                            leasing: Arc::default(),
                        })
                    });
                    budgets.limits.push(budget.clone());
                }
            }
        }
        if let Some(generation) = credential.credits_generation {
            let mut credits = lock(&self.credits);
            let budget = credits.entry(credential.key_id).or_insert_with(|| {
                Arc::new(CreditBudget {
                    key_id: credential.key_id,
                    state: Mutex::new(CreditState {
                        generation,
                        held: 0,
                        stored: 0,
                        exhausted: false,
                        stale: true,
                        unlimited: false,
                        next_refill_at: None,
                        last_taken: None,
                        last_grant: 0,
                    }),
                    leasing: Arc::default(),
                })
            });
            // Cached again after a change: read the stored credits first.
            let mut state = lock(&budget.state);
            state.stale = true;
            state.unlimited = false;
            drop(state);
            budgets.credits = Some(budget.clone());
        }
        budgets
    }

    /// Takes `cost` from every budget of a key, or from none.
    pub(crate) async fn admit(&self, budgets: &KeyBudgets, cost: Cost, now: DateTime<Utc>) -> AppResult<Admission> {
        let cost = cost.get();
        // A round ends short only when a window ended during a lease; the
        // bound is a safeguard.
        for _ in 0..4 {
            let mut taken: Vec<(&WindowBudget, i64)> = Vec::with_capacity(budgets.limits.len());
            let give_back = |taken: &[(&WindowBudget, i64)]| {
                for (budget, start) in taken {
                    budget.give_back(cost, *start);
                }
            };
            let mut short = false;
            for budget in &budgets.limits {
                match budget.take(&self.store, cost, now).await {
                    Ok(Take::Taken(start)) => taken.push((budget, start)),
                    Ok(Take::Refused(reading)) => {
                        give_back(&taken);
                        return Ok(Admission::OverLimit(reading));
                    }
                    Ok(Take::NeedsLease) => {
                        short = true;
                        break;
                    }
                    Err(e) => {
                        give_back(&taken);
                        return Err(e);
                    }
                }
            }
            if short {
                give_back(&taken);
                continue;
            }
            if let Some(credits) = &budgets.credits {
                match credits.take(&self.store, &self.outbox, cost, now).await {
                    Ok(Take::Taken(_)) => {}
                    Ok(Take::Refused((remaining, refills_at))) => {
                        give_back(&taken);
                        return Ok(Admission::OutOfCredits(remaining, refills_at));
                    }
                    Ok(Take::NeedsLease) => {
                        give_back(&taken);
                        continue;
                    }
                    Err(e) => {
                        give_back(&taken);
                        return Err(e);
                    }
                }
            }
            self.lease_ahead(budgets, now);
            return Ok(Admission::Admitted(Allowance {
                limits: budgets.limits.iter().map(|budget| budget.read(now)).collect(),
                credits: budgets.credits.as_ref().and_then(|credits| credits.remaining()),
            }));
        }
        let first = budgets.limits.first().map(|budget| budget.read(now));
        Ok(first.map_or(Admission::OutOfCredits(0, None), Admission::OverLimit))
    }

    /// Leases ahead, in the background, for every budget of the key that
    /// runs low, so that requests rarely wait for a lease: at most one lease
    /// per budget is in flight (the one that takes `leasing`).
    fn lease_ahead(&self, budgets: &KeyBudgets, now: DateTime<Utc>) {
        for budget in &budgets.limits {
            if !budget.wants_more(now) {
                continue;
            }
            let Ok(one_at_a_time) = budget.leasing.clone().try_lock_owned() else { continue };
            let (budget, store) = (budget.clone(), self.store.clone());
            tokio::spawn(async move {
                let _one_at_a_time = one_at_a_time;
                if let Err(e) = budget.lease(&store, 0, now).await {
                    tracing::warn!(error = %e, "leasing ahead for a rate limit failed; requests will lease");
                }
            });
        }
        let Some(credits) = &budgets.credits else { return };
        let Some(held) = credits.wants_more(now) else { return };
        let Ok(one_at_a_time) = credits.leasing.clone().try_lock_owned() else { return };
        let (credits, store, outbox) = (credits.clone(), self.store.clone(), self.outbox.clone());
        tokio::spawn(async move {
            let _one_at_a_time = one_at_a_time;
            // One more than is held: a chunk, or what is left.
            if let Err(e) = credits.lease(&store, &outbox, held + 1, now).await {
                tracing::warn!(error = %e, "leasing credits ahead failed; requests will lease");
            }
        });
    }

    /// A reading of `key`'s credits at `now`: what is stored plus what this
    /// replica holds of the same generation (a refill due at `now` voids
    /// it). `stored` is what the caller read; when this replica has a budget
    /// for the key, the stored credits are read again (`reread`) while no
    /// lease or give-back moves credits between the store and the budget, so
    /// nothing is counted twice or missed.
    pub(crate) async fn read_credits<F, Fut>(
        &self,
        key: ApiKeyId,
        now: DateTime<Utc>,
        stored: Option<KeyCredits>,
        reread: F,
    ) -> AppResult<Option<KeyCredits>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = AppResult<Option<KeyCredits>>>,
    {
        let budget = lock(&self.credits).get(&key).cloned();
        let Some(budget) = budget else { return Ok(stored.map(|stored| stored.as_of(now))) };
        let _steady = budget.leasing.lock().await;
        let Some(stored) = reread().await? else { return Ok(None) };
        let mut credits = stored.as_of(now);
        let state = lock(&budget.state);
        if credits.generation == stored.generation && state.generation == stored.generation {
            credits.remaining += state.held as i64;
        }
        Ok(Some(credits))
    }

    /// A key changed: its credits are read again before the next spend.
    pub(crate) fn key_changed(&self, key: ApiKeyId) {
        if let Some(budget) = lock(&self.credits).get(&key) {
            lock(&budget.state).stale = true;
        }
    }

    /// Any key may have changed.
    pub(crate) fn all_changed(&self) {
        for budget in lock(&self.credits).values() {
            lock(&budget.state).stale = true;
        }
    }

    /// Gives back the credits of keys idle for [`IDLE_RETURN`] (all of them
    /// when `everything`), and forgets budgets no cached key uses whose
    /// window ended; returns how many credits went back.
    pub(crate) async fn tidy(&self, now: DateTime<Utc>, everything: bool) -> AppResult<u64> {
        let idle: Vec<Arc<CreditBudget>> = lock(&self.credits)
            .values()
            .filter(|budget| {
                let state = lock(&budget.state);
                state.held > 0 && (everything || state.last_taken.is_none_or(|at| now - at >= IDLE_RETURN))
            })
            .cloned()
            .collect();
        let mut returned = 0;
        for budget in idle {
            let Ok(_one_at_a_time) = budget.leasing.try_lock() else { continue };
            if let Some((generation, held)) = budget.take_held() {
                if self.store.return_credits(budget.key_id, generation, held).await? {
                    returned += held;
                }
                let mut state = lock(&budget.state);
                state.stored += held;
                state.exhausted = false;
            }
        }
        lock(&self.credits).retain(|_, budget| Arc::strong_count(budget) > 1 || lock(&budget.state).held > 0);
        lock(&self.windows).retain(|(_, limit), budget| {
            Arc::strong_count(budget) > 1 || lock(&budget.state).start >= limit.window(now).start
        });
        Ok(returned)
    }
}
