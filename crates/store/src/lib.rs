//! Latchkey's persistence: sea-orm entities and the tenant-scoped queries the
//! service needs.
//!
//! Entities never leave this crate: every function takes and returns domain
//! types. Every key query is scoped by tenant. It decides nothing: the
//! application opens a unit of work ([`Store::begin`]), writes the change and
//! its audit entry, notices and revocations through the [`Tx`], and commits.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

mod audit;
mod entities;
mod events;
mod keys;
mod limits;
mod owners;
mod pool;
mod revocations;
mod scim;
mod standby;
mod tx;
mod usage;
mod users;
mod webhooks;

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use latchkey_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::LikeExpr;
use sea_orm::{ConnectOptions, Database, DbErr, SqlErr};

use crate::pool::Pool;

pub use audit::AuditPage;
pub use events::{OutboxStats, StoredEvent};
pub use keys::{
    ImportState, KeyCursor, KeyOrderField, KeyPage, KeyQuery, NewCredential, NewKey, NoticeStage, Rotation,
    SelfRotationState, StoredCredential,
};
pub use limits::{WindowId, WindowLease};
pub use owners::{UserFilter, UserPage};
pub use revocations::{REVOCATION_CHANNEL, RevocationListener, RevocationSignal};
pub use scim::{ScimMatch, ScimUser, ScimUserWrite};
pub use standby::{StandbyStatus, TICK as STANDBY_CHECK_INTERVAL};
pub use tx::{Tx, Written};
pub use usage::{ReceiptOutcome, UsageBatch, UsageDelta, UsageReceipt};
pub use users::NewUser;
pub use webhooks::{AttemptResult, DeliveryPage, DueDelivery};

/// Which database engine a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default.
    Sqlite,
    /// Production.
    Postgres,
}

/// Pool settings.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Largest pool size (PostgreSQL; SQLite always uses one writer connection).
    pub max_connections: u32,
    /// How long a request waits for a pooled connection.
    pub acquire_timeout: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// Longest statement (PostgreSQL `statement_timeout`); `None` for no limit.
    pub statement_timeout: Option<Duration>,
    /// A direct connection for what needs a session of its own (the
    /// revocation listener's `LISTEN`, the migrations' advisory lock), when
    /// the main URL goes through a transaction pooler such as PgBouncer in
    /// `pool_mode = transaction`. Set to another URL than the main one, it
    /// also runs every statement on the main URL inside a transaction (see
    /// `pool.rs`). None: the main URL is a session.
    pub session_url: Option<String>,
    /// A hot standby for reads (cold verification lookups, the key table,
    /// the audit trail, usage); see `standby.rs` for what stays on the
    /// primary. None: every read goes to the primary.
    pub read_url: Option<String>,
    /// A standby lagging more than this is not read from.
    pub read_max_lag: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            statement_timeout: Some(Duration::from_secs(10)),
            session_url: None,
            read_url: None,
            read_max_lag: Duration::from_secs(5),
        }
    }
}

/// A failure of the store. Its text is for logs, never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one Latchkey can use.
    #[error("unsupported database URL (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// A uniqueness rule was violated (e.g. a user's email within a tenant).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist.
    #[error("a referenced row does not exist: {0}")]
    MissingReference(String),
    /// A stored value could not be read back as a domain value.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The database cannot be reached now: no connection could be had, the
    /// connection broke, the server is shutting down or starting up, or it
    /// is a standby that takes no writes (a failover in progress). A change
    /// that meets this is rolled back whole, unless the break came while
    /// its commit was under way (its outcome is then unknown to this
    /// replica). Retrying later is the remedy.
    #[error("database unavailable: {0}")]
    Unavailable(DbErr),
    /// The database failed.
    #[error("database error: {0}")]
    Database(DbErr),
}

impl StoreError {
    /// Whether this is [`StoreError::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    /// Whether a connection the pool lent broke under the statement (the
    /// server went away or shut it down): the pool learns of a dead
    /// connection only by using it, so a read may be tried once more on
    /// another. Not for a full pool or a refused connection, which a retry
    /// would only wait on again.
    pub(crate) fn connection_broke(&self) -> bool {
        use sea_orm::sqlx::Error as Sqlx;
        let StoreError::Unavailable(DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime)) = self else {
            return false;
        };
        let sea_orm::RuntimeErr::SqlxError(sqlx) = runtime else { return false };
        match sqlx.as_ref() {
            Sqlx::Io(_) | Sqlx::Protocol(_) => true,
            Sqlx::Database(db) => {
                db.code().is_some_and(|code| code.starts_with("08") || code == "57P01" || code == "57P02")
            }
            _ => false,
        }
    }
}

/// PostgreSQL error codes (SQLSTATE) that mean the server cannot serve this
/// connection now, rather than that the statement is wrong: class 08
/// (connection exception), `admin_shutdown`, `crash_shutdown`,
/// `cannot_connect_now`, `too_many_connections`, and
/// `read_only_sql_transaction` (a write reached a standby: the primary is
/// gone and the standby is not promoted yet, or a proxy points at it).
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "25006")
}

/// Whether `e` says the database is unreachable (see [`StoreError::Unavailable`]).
fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;
    let runtime = match e {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
        _ => return false,
    };
    let RuntimeErr::SqlxError(sqlx) = runtime else { return false };
    match sqlx.as_ref() {
        // A protocol error is a stream that broke off mid-message (a proxy
        // whose backend is gone answers the SSL request by closing).
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => true,
        Sqlx::Database(db) => db.code().is_some_and(|code| unavailable_sqlstate(&code)),
        _ => false,
    }
}

impl From<DbErr> for StoreError {
    fn from(e: DbErr) -> Self {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(m)) => StoreError::Conflict(m),
            Some(SqlErr::ForeignKeyConstraintViolation(m)) => StoreError::MissingReference(m),
            _ if is_unavailable(&e) => StoreError::Unavailable(e),
            _ => StoreError::Database(e),
        }
    }
}

/// The advisory lock key that serialises migrations ("latchkey" in ASCII).
const MIGRATION_LOCK_ID: i64 = 0x6c61_7463_686b_6579;

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Handle on the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Pool,
    /// For reads outside transactions: on SQLite a pool of read-only
    /// connections beside the single writer (WAL lets readers run alongside
    /// it); on PostgreSQL the same pool as `db`.
    reader: Pool,
    backend: Backend,
    /// Where a session of its own is opened (LISTEN, the migration lock):
    /// `StoreOptions::session_url`, else the main URL.
    session_url: String,
    /// Whether the main URL goes through a transaction pooler.
    behind_pooler: bool,
    /// The main URL.
    main_url: String,
    /// The hot standby reads may go to.
    pub(crate) standby: Option<standby::Standby>,
}

/// Database connections, for operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open.
    pub open: u32,
    /// Connections lent out to a query or transaction.
    pub in_use: u32,
}

/// Read-only SQLite connections beside the writer.
const SQLITE_READERS: u32 = 4;

/// `%term%` with LIKE's wildcards in the term escaped.
pub(crate) fn contains_pattern(term: &str) -> LikeExpr {
    let mut escaped = String::with_capacity(term.len() + 2);
    escaped.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    LikeExpr::new(escaped).escape('\\')
}

/// The precision every stored instant is kept at (PostgreSQL keeps microseconds).
pub fn storable(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://...`).
    pub async fn connect(url: &str, options: &StoreOptions) -> StoreResult<Store> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let sqlite = |opts: &mut ConnectOptions, read_only: bool| {
            opts.map_sqlx_sqlite_opts(move |o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5))
                    .read_only(read_only)
            });
        };
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.acquire_timeout(options.acquire_timeout).connect_timeout(options.connect_timeout).sqlx_logging(false);
        // Pinging a connection on every acquire doubles the round trips of a
        // one-query request (a cold verification); ping only connections
        // that sat idle long enough to have gone stale.
        opts.test_before_acquire_if_idle_for(Duration::from_secs(1));
        match backend {
            Backend::Sqlite => {
                // One writer connection: SQLite has a single writer anyway, and
                // this rules out SQLITE_BUSY on read-then-write transactions.
                opts.max_connections(1).min_connections(1);
                sqlite(&mut opts, false);
                let db = Pool::direct(Database::connect(opts.clone()).await?);
                opts.max_connections(SQLITE_READERS).min_connections(0);
                sqlite(&mut opts, true);
                let reader = Pool::direct(Database::connect(opts).await?);
                Ok(Store {
                    db,
                    reader,
                    backend,
                    session_url: url.to_owned(),
                    behind_pooler: false,
                    main_url: url.to_owned(),
                    standby: None,
                })
            }
            Backend::Postgres => {
                // A few connections open up front, so the first burst after a
                // start does not queue behind connection setup.
                opts.max_connections(options.max_connections.max(1))
                    .min_connections(options.max_connections.clamp(1, 4));
                let session_url = options.session_url.clone().unwrap_or_else(|| url.to_owned());
                let behind_pooler = session_url != url;
                let millis = options.statement_timeout.map(|t| t.as_millis().to_string());
                let db = if behind_pooler {
                    // No named statement outlives its transaction (see `pool.rs`);
                    // the timeout is set per transaction, the pooler drops `options`.
                    opts.map_sqlx_postgres_opts(|o| o.statement_cache_capacity(0));
                    let mut prelude = "DEALLOCATE ALL".to_owned();
                    if let Some(millis) = &millis {
                        prelude.push_str(&format!("; SET LOCAL statement_timeout = {millis}"));
                    }
                    Pool::behind_transaction_pooler(Database::connect(opts).await?, prelude)
                } else {
                    if let Some(millis) = millis {
                        opts.map_sqlx_postgres_opts(move |o| o.options([("statement_timeout", millis.as_str())]));
                    }
                    Pool::direct(Database::connect(opts).await?)
                };
                let standby = match &options.read_url {
                    None => None,
                    Some(read_url) => {
                        let mut opts = ConnectOptions::new(read_url.clone());
                        opts.acquire_timeout(options.acquire_timeout)
                            .connect_timeout(options.connect_timeout)
                            .sqlx_logging(false)
                            .max_connections(options.max_connections.max(1))
                            .min_connections(0);
                        opts.test_before_acquire_if_idle_for(Duration::from_secs(1));
                        // Lazily: a standby that is down at start is only not read from.
                        opts.connect_lazy(true);
                        let pool = Pool::direct(Database::connect(opts).await?);
                        Some(standby::Standby::new(pool, options.read_max_lag))
                    }
                };
                Ok(Store {
                    reader: db.clone(),
                    db,
                    backend,
                    session_url,
                    behind_pooler,
                    main_url: url.to_owned(),
                    standby,
                })
            }
        }
    }

    /// Which engine this store uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies pending migrations. On PostgreSQL a session advisory lock
    /// (held on a connection of its own) makes replicas that start together
    /// migrate one at a time: the first applies, the others find nothing to do.
    pub async fn migrate(&self) -> StoreResult<()> {
        if self.backend != Backend::Postgres {
            Migrator::up(self.db.inner(), None).await?;
            return Ok(());
        }
        use sea_orm::sqlx::Connection as _;
        let sqlx_err = |e: sea_orm::sqlx::Error| StoreError::Database(DbErr::Custom(e.to_string()));
        let mut lock = sea_orm::sqlx::PgConnection::connect(&self.session_url).await.map_err(sqlx_err)?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_ID)
            .execute(&mut lock)
            .await
            .map_err(sqlx_err)?;
        // Migrations run on the session too: their statements (and
        // sea-orm-migration's own bookkeeping) are not made for a pooler.
        let session = if self.behind_pooler {
            let mut opts = ConnectOptions::new(self.session_url.clone());
            opts.max_connections(1).sqlx_logging(false);
            Some(Database::connect(opts).await?)
        } else {
            None
        };
        let db = session.as_ref().unwrap_or(self.db.inner());
        let pending = Migrator::get_pending_migrations(db).await?.len();
        let result = Migrator::up(db, None).await;
        let _ = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK_ID).execute(&mut lock).await;
        let _ = lock.close().await;
        if let Some(session) = session {
            let _ = session.close().await;
        }
        result?;
        if pending > 0 {
            tracing::info!(applied = pending, "migrations applied");
        }
        Ok(())
    }

    /// A listener for revocations from other replicas; `None` on SQLite.
    pub fn revocation_listener(&self) -> Option<RevocationListener> {
        (self.backend == Backend::Postgres).then(|| RevocationListener::new(&self.session_url, &self.main_url))
    }

    /// Whether every known migration has been applied.
    pub async fn migrations_current(&self) -> StoreResult<bool> {
        if !self.behind_pooler {
            return Ok(Migrator::get_pending_migrations(self.db.inner()).await?.is_empty());
        }
        // In a transaction: behind a transaction pooler nothing else holds.
        let txn = self.db.begin().await?;
        let pending = Migrator::get_pending_migrations(&txn).await?;
        txn.commit().await?;
        Ok(pending.is_empty())
    }

    /// A trivial round trip, for readiness.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db.inner().ping().await?;
        Ok(())
    }

    /// Closes the pools.
    pub async fn close(self) -> StoreResult<()> {
        if self.backend == Backend::Sqlite {
            self.reader.into_inner().close().await?;
        }
        self.db.into_inner().close().await?;
        Ok(())
    }

    pub(crate) fn conn(&self) -> &Pool {
        &self.db
    }

    /// The database connections open and in use, over the writer and reader
    /// pools.
    pub fn pool_status(&self) -> PoolStatus {
        let mut status = PoolStatus::default();
        let pools = if self.backend == Backend::Sqlite { vec![&self.db, &self.reader] } else { vec![&self.db] };
        for conn in pools.into_iter().map(Pool::inner) {
            let (open, idle) = match self.backend {
                Backend::Sqlite => {
                    let pool = conn.get_sqlite_connection_pool();
                    (pool.size(), pool.num_idle())
                }
                Backend::Postgres => {
                    let pool = conn.get_postgres_connection_pool();
                    (pool.size(), pool.num_idle())
                }
            };
            status.open += open;
            status.in_use += open.saturating_sub(idle as u32);
        }
        status
    }

    /// The connection for reads outside a transaction.
    pub(crate) fn reader(&self) -> &Pool {
        &self.reader
    }

    /// The connection for lists (the key table, the audit trail, usage):
    /// the standby when it is current enough, else [`Store::reader`].
    pub(crate) fn list_reader(&self) -> &Pool {
        match &self.standby {
            Some(standby) if standby.for_lists() => &standby.pool,
            _ => &self.reader,
        }
    }

    /// The standby a lookup may try first, when it may.
    pub(crate) fn lookup_standby(&self) -> Option<&standby::Standby> {
        self.standby.as_ref().filter(|s| s.for_lookups())
    }

    /// Checks the standby once (its lag, what it has replayed); call every
    /// [`STANDBY_CHECK_INTERVAL`]. Nothing without a standby.
    pub async fn check_standby(&self) {
        if let Some(standby) = &self.standby {
            standby.tick(&self.db).await;
        }
    }

    /// The standby's state; none without one.
    pub fn standby_status(&self) -> Option<StandbyStatus> {
        self.standby.as_ref().map(standby::Standby::status)
    }

    /// Tells the standby guard what the revocation listener reported.
    pub fn note_revocation(&self, signal: RevocationSignal) {
        let Some(standby) = &self.standby else { return };
        match signal {
            RevocationSignal::Key(signal) => standby.state.guard(signal.key_id),
            RevocationSignal::Resync => standby.state.guard_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::{ConnAcquireErr, RuntimeErr};

    use super::*;

    fn sqlx(e: sea_orm::sqlx::Error) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(e)))
    }

    #[test]
    fn connection_failures_are_unavailable_and_statement_failures_are_not() {
        let reset = || sea_orm::sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let broken = StoreError::from(sqlx(reset()));
        assert!(broken.is_unavailable() && broken.connection_broke());
        let waited = StoreError::from(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout));
        assert!(waited.is_unavailable() && !waited.connection_broke(), "a retry would wait again");
        assert!(StoreError::from(sqlx(sea_orm::sqlx::Error::PoolTimedOut)).is_unavailable());
        for wrong in [sqlx(sea_orm::sqlx::Error::RowNotFound), DbErr::Custom("no such column".into())] {
            assert!(!StoreError::from(wrong).is_unavailable());
        }
        for code in ["08006", "08001", "57P01", "57P03", "25006", "53300"] {
            assert!(unavailable_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "57014", "40001"] {
            assert!(!unavailable_sqlstate(code), "{code}");
        }
    }
}
