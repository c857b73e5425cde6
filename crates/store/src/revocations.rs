//! Revocation signals between replicas (PostgreSQL `LISTEN/NOTIFY`).
//!
//! Rotating or deleting a key sends `NOTIFY latchkey_key_revoked, '<key id>'`
//! inside the same transaction, so it is delivered exactly when the change
//! commits. Every replica listens and drops the key from its verification
//! cache. A listener that loses its connection reconnects and reports
//! [`RevocationSignal::Resync`]: notices sent while it was away are lost, so
//! the whole cache must go.

use std::time::Duration;

use latchkey_domain::ApiKeyId;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::StoreResult;

/// The notification channel.
pub const REVOCATION_CHANNEL: &str = "latchkey_key_revoked";

/// What a listener reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationSignal {
    /// This key's secret changed or the key is gone.
    Revoked(ApiKeyId),
    /// The listener (re)connected: anything may have been missed.
    Resync,
}

/// Sends the revocation of `key` (PostgreSQL only; a no-op on SQLite, which
/// serves one process). Call inside the transaction of the change.
pub(crate) async fn notify_revocation<C: ConnectionTrait>(conn: &C, key: ApiKeyId) -> StoreResult<()> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [REVOCATION_CHANNEL.into(), key.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Listens for revocations, reconnecting by itself.
#[derive(Debug)]
pub struct RevocationListener {
    url: String,
    listener: Option<PgListener>,
    retry: Duration,
}

impl RevocationListener {
    /// A listener for the PostgreSQL database at `url` (connects lazily).
    pub fn new(url: &str) -> Self {
        RevocationListener { url: url.to_owned(), listener: None, retry: Duration::from_millis(250) }
    }

    async fn connect(&self) -> Result<PgListener, sea_orm::sqlx::Error> {
        let mut listener = PgListener::connect(&self.url).await?;
        listener.listen(REVOCATION_CHANNEL).await?;
        Ok(listener)
    }

    /// The next signal. After every (re)connection this is
    /// [`RevocationSignal::Resync`].
    pub async fn next(&mut self) -> RevocationSignal {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                match self.connect().await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        tracing::info!("listening for key revocations");
                        return RevocationSignal::Resync;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for key revocations; retrying");
                        tokio::time::sleep(self.retry).await;
                        continue;
                    }
                }
            };
            match listener.try_recv().await {
                Ok(Some(notification)) => match notification.payload().parse() {
                    Ok(id) => return RevocationSignal::Revoked(id),
                    Err(_) => return RevocationSignal::Resync,
                },
                Ok(None) => {
                    tracing::warn!("revocation listener lost its connection; reconnecting");
                    self.listener = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "revocation listener failed; reconnecting");
                    self.listener = None;
                    tokio::time::sleep(self.retry).await;
                }
            }
        }
    }
}
