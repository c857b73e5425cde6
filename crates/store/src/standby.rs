//! Reads from a hot standby (`LATCHKEY_DATABASE_READ_URL`) without letting a
//! revoked key verify from a standby that has not replayed its revocation.
//!
//! A monitor reads, every [`TICK`], the primary's WAL position and how far the
//! standby has replayed. A key is *guarded* from the moment this replica
//! learns it was revoked — after its own commit, or on the other replicas'
//! `NOTIFY`, which arrives after the commit — until the standby has replayed
//! a position the primary had reached after that moment (the next tick's
//! primary position, which is at or past the revocation's commit). (It is
//! also guarded while its change is open, so no lookup trusts the standby
//! in between; a guard set before the commit is set again after it, since a
//! position read before the commit frees nothing.) A lookup
//! that finds a guarded key on the standby, or finds nothing there (a key
//! too new for it), is read again from the primary. After a revocation
//! listener resync (notices may be lost) or at start, everything is guarded
//! until the standby has replayed the primary's position of the next tick.
//! A standby that does not answer, or lags more than the allowed bound, is
//! not used at all until it catches up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use latchkey_domain::ApiKeyId;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::pool::Pool;

/// How often the monitor reads the positions.
pub const TICK: Duration = Duration::from_millis(100);

/// A WAL position as a number (`pg_lsn - '0/0'`).
type Lsn = u64;

/// A position the standby must replay before something may be read there,
/// resolved at the tick after it was asked for: `asked` counts the requests,
/// `resolved` the last one a tick gave a position to (`lsn`).
#[derive(Debug, Default)]
struct Barrier {
    asked: AtomicU64,
    resolved: AtomicU64,
    lsn: AtomicU64,
}

impl Barrier {
    fn ask(&self) {
        self.asked.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether everything asked for is resolved and replayed.
    fn passed(&self, replayed: Lsn) -> bool {
        self.resolved.load(Ordering::SeqCst) == self.asked.load(Ordering::SeqCst)
            && self.lsn.load(Ordering::SeqCst) <= replayed
    }

    /// Gives the requests up to `asked` (read before `primary_at` was) that position.
    fn resolve(&self, asked: u64, primary_at: Lsn) {
        if self.resolved.load(Ordering::SeqCst) < asked {
            self.lsn.fetch_max(primary_at, Ordering::SeqCst);
            self.resolved.store(asked, Ordering::SeqCst);
        }
    }
}

/// What is known about the standby, shared by the store's clones.
#[derive(Debug, Default)]
pub(crate) struct StandbyState {
    /// Whether it answers and lags within the bound.
    usable: AtomicBool,
    /// The position it has replayed.
    replayed: AtomicU64,
    /// Its lag at the last tick, in milliseconds.
    lag_ms: AtomicU64,
    /// Everything waits for it: at start and after a revocation listener resync.
    everything: Barrier,
    /// Lists wait for it: every write committed here (read your own writes).
    writes: Barrier,
    /// Guarded keys: when each was last guarded (a count) and the position
    /// the standby must replay (none: the next tick's primary position).
    guarded: Mutex<HashMap<ApiKeyId, (u64, Option<Lsn>)>>,
    guards: AtomicU64,
}

/// The standby as operators see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandbyStatus {
    /// Whether reads go to it.
    pub usable: bool,
    /// How far behind the primary it was at the last check.
    pub lag: Duration,
}

impl StandbyState {
    fn new() -> Self {
        let state = StandbyState::default();
        state.everything.ask();
        state
    }

    /// Guards `key` (just revoked).
    pub(crate) fn guard(&self, key: ApiKeyId) {
        let at = self.guards.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut guarded) = self.guarded.lock() {
            guarded.insert(key, (at, None));
        }
    }

    /// Guards everything until the standby catches up with the primary.
    pub(crate) fn guard_all(&self) {
        self.everything.ask();
    }

    /// Notes a write committed here.
    pub(crate) fn wrote(&self) {
        self.writes.ask();
    }

    fn replayed(&self) -> Lsn {
        self.replayed.load(Ordering::SeqCst)
    }

    /// Whether reads may go to the standby at all.
    fn open(&self) -> bool {
        self.usable.load(Ordering::SeqCst) && self.everything.passed(self.replayed())
    }

    /// Whether a credential of `key` read from the standby can be trusted.
    pub(crate) fn trusts(&self, key: ApiKeyId) -> bool {
        let replayed = self.replayed();
        self.guarded.lock().is_ok_and(|g| g.get(&key).is_none_or(|(_, lsn)| lsn.is_some_and(|lsn| lsn <= replayed)))
    }

    fn status(&self) -> StandbyStatus {
        StandbyStatus {
            usable: self.usable.load(Ordering::SeqCst),
            lag: Duration::from_millis(self.lag_ms.load(Ordering::SeqCst)),
        }
    }
}

/// A standby: its pool and what is known of it.
#[derive(Clone, Debug)]
pub(crate) struct Standby {
    pub(crate) pool: Pool,
    pub(crate) state: std::sync::Arc<StandbyState>,
    max_lag: Duration,
}

async fn position(conn: &Pool, sql: &str) -> Result<Option<(Lsn, Option<f64>)>, sea_orm::DbErr> {
    let row = conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql)).await?;
    let Some(row) = row else { return Ok(None) };
    let lsn: Option<i64> = row.try_get_by_index(0)?;
    let age: Option<f64> = row.try_get_by_index(1).ok().flatten();
    Ok(lsn.map(|lsn| (u64::try_from(lsn).unwrap_or(0), age)))
}

impl Standby {
    pub(crate) fn new(pool: Pool, max_lag: Duration) -> Self {
        Standby { pool, state: std::sync::Arc::new(StandbyState::new()), max_lag }
    }

    /// Whether reads of lists may go to the standby now.
    pub(crate) fn for_lists(&self) -> bool {
        self.state.open() && self.state.writes.passed(self.state.replayed())
    }

    /// Whether a lookup may try the standby first.
    pub(crate) fn for_lookups(&self) -> bool {
        self.state.open()
    }

    pub(crate) fn status(&self) -> StandbyStatus {
        self.state.status()
    }

    /// One check: what was asked for until now, then the primary's position,
    /// then the standby's; gives what was asked for that primary position.
    pub(crate) async fn tick(&self, primary: &Pool) {
        let state = &self.state;
        let pending: Vec<(ApiKeyId, u64)> = state
            .guarded
            .lock()
            .map(|g| g.iter().filter(|(_, (_, lsn))| lsn.is_none()).map(|(k, (at, _))| (*k, *at)).collect())
            .unwrap_or_default();
        let everything_asked = state.everything.asked.load(Ordering::SeqCst);
        let writes_asked = state.writes.asked.load(Ordering::SeqCst);
        // The insert position: at or past every commit record, also one
        // committed with `synchronous_commit = off` and not yet written.
        let primary_sql = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint, NULL::float8";
        let Ok(Some((primary_at, _))) = position(primary, primary_sql).await else {
            state.usable.store(false, Ordering::SeqCst);
            return;
        };
        state.everything.resolve(everything_asked, primary_at);
        state.writes.resolve(writes_asked, primary_at);
        if let Ok(mut guarded) = state.guarded.lock() {
            for (key, at) in pending {
                if let Some((now_at, lsn @ None)) = guarded.get_mut(&key)
                    && *now_at == at
                {
                    *lsn = Some(primary_at);
                }
            }
        }
        let standby_sql = "SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, \
                           EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8";
        let (replayed, age) = match position(&self.pool, standby_sql).await {
            Ok(Some(found)) => found,
            other => {
                if state.usable.swap(false, Ordering::SeqCst) {
                    tracing::warn!(answer = ?other.err(), "the read standby is not usable; reading from the primary");
                }
                return;
            }
        };
        // Caught up: no lag, whatever the age of the last replayed transaction.
        let lag =
            if replayed >= primary_at { Duration::ZERO } else { Duration::from_secs_f64(age.unwrap_or(0.0).max(0.0)) };
        state.replayed.store(replayed, Ordering::SeqCst);
        state.lag_ms.store(u64::try_from(lag.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
        if let Ok(mut guarded) = state.guarded.lock() {
            guarded.retain(|_, (_, lsn)| lsn.is_none_or(|lsn| lsn > replayed));
        }
        let usable = lag <= self.max_lag;
        if state.usable.swap(usable, Ordering::SeqCst) != usable {
            if usable {
                tracing::info!(lag_ms = lag.as_millis(), "reading from the standby");
            } else {
                tracing::warn!(lag_ms = lag.as_millis(), "the read standby lags too far; reading from the primary");
            }
        }
    }
}
