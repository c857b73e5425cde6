//! The store's way to its database: a sea-orm pool used directly, or through
//! a transaction pooler (PgBouncer `pool_mode = transaction`).
//!
//! Behind a transaction pooler a server session lasts one transaction, and
//! sqlx prepares every statement under a name (`sqlx_s_N`, counted per client
//! connection) in one round trip and runs it in the next. Outside a
//! transaction the pooler may hand those two round trips to different server
//! sessions, and a name one client left on a session collides with another
//! client's. So in that mode every statement runs inside a transaction whose
//! first command, `DEALLOCATE ALL`, clears what an earlier client left on the
//! session (and sets the statement timeout, which PgBouncer's
//! `ignore_startup_parameters = options` drops from the connection), and the
//! client's statement cache is off (capacity 0), so no name is reused.

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
    TransactionTrait,
};

/// A pool, and what opens each of its transactions (none: used directly).
#[derive(Clone, Debug)]
pub(crate) struct Pool {
    db: DatabaseConnection,
    prelude: Option<String>,
}

impl Pool {
    /// `db` used directly.
    pub(crate) fn direct(db: DatabaseConnection) -> Self {
        Pool { db, prelude: None }
    }

    /// `db` behind a transaction pooler: each transaction starts with
    /// `prelude` (see the module's documentation).
    pub(crate) fn behind_transaction_pooler(db: DatabaseConnection, prelude: String) -> Self {
        Pool { db, prelude: Some(prelude) }
    }

    /// The sea-orm connection (for pool statistics and closing).
    pub(crate) fn inner(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The sea-orm connection, to close it.
    pub(crate) fn into_inner(self) -> DatabaseConnection {
        self.db
    }

    /// Opens a transaction (with the prelude behind a transaction pooler).
    /// On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`): a
    /// transaction that reads, then writes after another process (the CLI)
    /// wrote, would otherwise fail with `SQLITE_BUSY_SNAPSHOT` instead of
    /// waiting its turn.
    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        let txn = if self.db.get_database_backend() == DbBackend::Sqlite {
            let immediate = sea_orm::TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..Default::default()
            };
            self.db.begin_with_options(immediate).await?
        } else {
            self.db.begin().await?
        };
        if let Some(prelude) = &self.prelude {
            txn.execute_unprepared(prelude).await?;
        }
        Ok(txn)
    }

    /// Commits `txn` after `result` (a statement run in a transaction of its own).
    async fn finish<T>(txn: DatabaseTransaction, result: Result<T, DbErr>) -> Result<T, DbErr> {
        let value = result?;
        txn.commit().await?;
        Ok(value)
    }
}

#[sea_orm::prelude::async_trait::async_trait]
impl ConnectionTrait for Pool {
    fn get_database_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        if self.prelude.is_none() {
            return self.db.execute_raw(stmt).await;
        }
        let txn = self.begin().await?;
        let result = txn.execute_raw(stmt).await;
        Self::finish(txn, result).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        if self.prelude.is_none() {
            return self.db.execute_unprepared(sql).await;
        }
        let txn = self.begin().await?;
        let result = txn.execute_unprepared(sql).await;
        Self::finish(txn, result).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        if self.prelude.is_none() {
            return self.db.query_one_raw(stmt).await;
        }
        let txn = self.begin().await?;
        let result = txn.query_one_raw(stmt).await;
        Self::finish(txn, result).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        if self.prelude.is_none() {
            return self.db.query_all_raw(stmt).await;
        }
        let txn = self.begin().await?;
        let result = txn.query_all_raw(stmt).await;
        Self::finish(txn, result).await
    }

    fn support_returning(&self) -> bool {
        self.db.support_returning()
    }
}
