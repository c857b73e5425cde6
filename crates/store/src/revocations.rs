//! Revocation signals between replicas (PostgreSQL `LISTEN/NOTIFY`).
//!
//! A change that makes a key's cached verifications wrong sends
//! `NOTIFY latchkey_key_revoked, '<key id> <tenant id> <kind>'` (see
//! [`KeySignal::to_wire`]) inside the same transaction, so it is delivered
//! exactly when the change commits. Every replica listens, drops the key
//! from its verification cache and tells its verification streams. A listener that loses its connection reconnects and reports
//! [`RevocationSignal::Resync`]: notices sent while it was away are lost, so
//! the whole cache must go.

use std::time::Duration;

use latchkey_domain::key_signals::KeySignal;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::StoreResult;

/// The notification channel.
pub const REVOCATION_CHANNEL: &str = "latchkey_key_revoked";

/// The channel a listener checks itself on: a notice sent where revocations
/// are sent must reach it.
const PROBE_CHANNEL: &str = "latchkey_listener_probe";

/// How long a listener waits for its own probe.
const PROBE_WAIT: Duration = Duration::from_secs(3);

/// What a listener reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationSignal {
    /// This key's cached verifications no longer hold.
    Key(KeySignal),
    /// The listener (re)connected, or a notice it cannot read came (from a
    /// replica of an earlier version): anything may have been missed.
    Resync,
}

/// Sends `signal` to every replica (PostgreSQL only; a no-op on SQLite,
/// which serves one process). Call inside the transaction of the change.
pub(crate) async fn notify_revocation<C: ConnectionTrait>(conn: &C, signal: &KeySignal) -> StoreResult<()> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [REVOCATION_CHANNEL.into(), signal.to_wire().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Listens for revocations, reconnecting by itself.
#[derive(Debug)]
pub struct RevocationListener {
    url: String,
    /// Where changes send their notices (the main URL).
    notify_url: String,
    listener: Option<PgListener>,
    retry: Duration,
    /// Whether its probe was heard (none before its first connection).
    delivers: Option<bool>,
}

impl RevocationListener {
    /// A listener on a session of its own at `url`, for the notices sent on
    /// the main URL `notify_url` (connects lazily).
    pub fn new(url: &str, notify_url: &str) -> Self {
        RevocationListener {
            url: url.to_owned(),
            notify_url: notify_url.to_owned(),
            listener: None,
            retry: Duration::from_millis(250),
            delivers: None,
        }
    }

    /// Whether notices sent on the main URL reach this listener, as its probe
    /// on its first connection found; none before that.
    pub fn delivers(&self) -> Option<bool> {
        self.delivers
    }

    async fn connect(&self) -> Result<PgListener, sea_orm::sqlx::Error> {
        PgListener::connect(&self.url).await
    }

    /// Whether `listener` has a session of its own where notices sent on the
    /// main URL arrive. Behind a transaction pooler it has not: the pooler
    /// hands its server session to other clients between statements, and
    /// notices for it are lost. Two checks, since either alone can pass on a
    /// quiet pooler: a session lock the listener holds must keep another
    /// client of the same URL out (a pooler may give that client the same
    /// server session), and a notice sent on the main URL must reach it.
    /// Logged loudly when it fails: revocations on other replicas then reach
    /// this one only through the cache's time to live.
    async fn probe(&self, listener: &mut PgListener) -> Result<bool, sea_orm::sqlx::Error> {
        use sea_orm::sqlx::{Connection as _, Row as _};
        let lock = 0x6c6b_7072_6f62_6500_i64 | i64::from(std::process::id() & 0xff);
        let payload = format!("probe-{}", std::process::id());
        // Simple queries only (no prepared statement): fine through any pooler.
        let sql = |text: String| sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(text));
        let lock_kept_out = async {
            sql(format!("SELECT pg_advisory_lock({lock})")).execute(&mut *listener).await?;
            let mut other = sea_orm::sqlx::PgConnection::connect(&self.url).await?;
            let row = sql(format!("SELECT pg_try_advisory_lock({lock})::int")).fetch_one(&mut other).await?;
            let taken_too: i32 = row.try_get(0)?;
            sql("SELECT pg_advisory_unlock_all()".to_owned()).execute(&mut other).await?;
            other.close().await?;
            sql(format!("SELECT pg_advisory_unlock({lock})")).execute(&mut *listener).await?;
            Ok::<_, sea_orm::sqlx::Error>(taken_too == 0)
        };
        let own_session = match lock_kept_out.await {
            Ok(own) => own,
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the revocation listener's session");
                false
            }
        };
        // Listening last: the session's last statement is its `LISTEN`.
        listener.listen_all([REVOCATION_CHANNEL, PROBE_CHANNEL]).await?;
        if !own_session {
            return Ok(false);
        }
        let sent = async {
            let mut sender = sea_orm::sqlx::PgConnection::connect(&self.notify_url).await?;
            sql(format!("SELECT pg_notify('{PROBE_CHANNEL}', '{payload}')")).execute(&mut sender).await?;
            sender.close().await
        };
        if let Err(e) = sent.await {
            // E.g. the notice came back to the sender: it shares the listener's session.
            tracing::warn!(error = %e, "the revocation listener's probe failed");
            return Ok(false);
        }
        let heard = tokio::time::timeout(PROBE_WAIT, async {
            while let Ok(notification) = listener.recv().await {
                if notification.channel() == PROBE_CHANNEL && notification.payload() == payload {
                    return true;
                }
            }
            false
        })
        .await;
        Ok(heard.unwrap_or(false))
    }

    /// The next signal. After every (re)connection this is
    /// [`RevocationSignal::Resync`].
    pub async fn next(&mut self) -> RevocationSignal {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                match self.connect().await {
                    Ok(mut listener) => {
                        let probed = match self.delivers {
                            None => self.probe(&mut listener).await.map(Some),
                            Some(_) => listener.listen_all([REVOCATION_CHANNEL, PROBE_CHANNEL]).await.map(|()| None),
                        };
                        let heard = match probed {
                            Ok(heard) => heard,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot listen for key revocations; retrying");
                                tokio::time::sleep(self.retry).await;
                                continue;
                            }
                        };
                        if let Some(heard) = heard {
                            self.delivers = Some(heard);
                            if !heard {
                                tracing::error!(
                                    "revocation notices do not reach this replica: its listener is behind a \
                                     transaction pooler; set LATCHKEY_DATABASE_LISTEN_URL to a direct connection \
                                     (until then, keys revoked on other replicas keep working here for up to \
                                     LATCHKEY_KEY_CACHE_TTL_SECS)"
                                );
                            }
                        }
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
                Ok(Some(notification)) if notification.channel() == PROBE_CHANNEL => {}
                Ok(Some(notification)) => match KeySignal::from_wire(notification.payload()) {
                    Some(signal) => return RevocationSignal::Key(signal),
                    None => return RevocationSignal::Resync,
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
