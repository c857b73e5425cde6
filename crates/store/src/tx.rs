//! The unit of work's handle: one database transaction, opened and committed
//! by the application layer, with the tenant-scoped writes a use case makes
//! through it (the other modules add theirs in their own `impl Tx` blocks).
//! Dropping a `Tx` without committing rolls everything back.

use latchkey_domain::key_signals::KeySignal;
use latchkey_domain::{ApiKeyId, AuditEntry, Notice};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QuerySelect, Select};

use crate::audit::insert_audit;
use crate::events::insert_event;
use crate::revocations::notify_revocation;
use crate::{Store, StoreResult};

/// An open transaction. Every write inside it commits or rolls back together.
#[derive(Debug)]
pub struct Tx {
    txn: DatabaseTransaction,
    /// The standby's guard: keys revoked here are guarded, and the commit noted.
    standby: Option<std::sync::Arc<crate::standby::StandbyState>>,
    /// The keys revoked in it, guarded again once it committed.
    revoked: std::sync::Mutex<Vec<ApiKeyId>>,
}

/// The outcome of a conditional write of one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written<T> {
    /// Written; the row as it is now.
    Done(T),
    /// The condition did not hold (e.g. already so); the row as it is.
    Unchanged(T),
    /// No such row in the tenant.
    NotFound,
}

impl Store {
    /// Opens a unit of work.
    pub async fn begin(&self) -> StoreResult<Tx> {
        let standby = self.standby.as_ref().map(|s| s.state.clone());
        Ok(Tx { txn: self.conn().begin().await?, standby, revoked: Default::default() })
    }
}

impl Tx {
    /// Makes every write of this unit of work durable at once.
    pub async fn commit(self) -> StoreResult<()> {
        self.txn.commit().await?;
        if let Some(standby) = &self.standby {
            // Guarded again from after the commit: the position that frees
            // them is then read after the commit, so it is at or past it.
            for key in self.revoked.lock().map(|r| r.clone()).unwrap_or_default() {
                standby.guard(key);
            }
            standby.wrote();
        }
        Ok(())
    }

    pub(crate) fn conn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// `select`, row-locked until the transaction ends on PostgreSQL (so
    /// concurrent changes record a true before and after; SQLite has one
    /// writer).
    pub(crate) fn locking<E: EntityTrait>(&self, select: Select<E>) -> Select<E> {
        if self.txn.get_database_backend() == DbBackend::Postgres { select.lock_exclusive() } else { select }
    }

    /// Appends an entry to the audit trail.
    pub async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        insert_audit(&self.txn, entry).await
    }

    /// Queues a notice in the outbox (the dispatcher mails it after commit).
    pub async fn enqueue_notice(&self, event: &Notice) -> StoreResult<()> {
        insert_event(&self.txn, event).await
    }

    /// Tells every replica, when this commits, to drop the signal's key
    /// from its verification cache and tell its verification streams
    /// (PostgreSQL `NOTIFY`; nothing on SQLite, which serves one process).
    pub async fn push_revocation(&self, signal: &KeySignal) -> StoreResult<()> {
        // Guarded now: a standby read of the key is not trusted from before
        // the commit until the standby has replayed it.
        if let Some(standby) = &self.standby {
            standby.guard(signal.key_id);
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.push(signal.key_id);
            }
        }
        notify_revocation(&self.txn, signal).await
    }
}
