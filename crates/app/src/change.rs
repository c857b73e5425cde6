//! The unit of work of every use case that writes: the one place where a
//! change and its side effects are put together. A use case opens a
//! [`Change`], reads and writes through it (it derefs to the store's
//! [`Tx`]), records what the change means — its audit entry, the notices to
//! mail, the webhook events to send, the keys whose cached verifications
//! must go — and commits. All of
//! it lands in one transaction or none of it does; after the commit, this
//! process's cache forgets the revoked keys (other replicas learn through
//! the `NOTIFY` sent inside the transaction) and the dispatchers are woken
//! when there is mail or a webhook delivery.

use std::ops::Deref;

use chrono::{DateTime, Utc};
use latchkey_domain::key_signals::{KeySignal, KeySignalKind};
use latchkey_domain::webhook_events::{WebhookDelivery, WebhookEndpoint, WebhookEvent};
use latchkey_domain::webhooks::WebhookEventType;
use latchkey_domain::{ApiKey, AuditEntry, Notice, NoticeKind, User};
use latchkey_store::Tx;
use serde_json::{Map, Value};

use crate::App;
use crate::error::AppResult;

/// One open unit of work. Dropped without [`Change::commit`], it writes nothing.
#[derive(Debug)]
pub(crate) struct Change<'a> {
    app: &'a App,
    tx: Tx,
    revoked: Vec<KeySignal>,
    mailed: bool,
    /// The enabled webhook endpoints of the tenant, read at the first event.
    endpoints: Option<Vec<WebhookEndpoint>>,
    published: bool,
}

impl<'a> Change<'a> {
    /// Opens a unit of work on `app`'s store.
    pub(crate) async fn begin(app: &'a App) -> AppResult<Self> {
        Ok(Change {
            app,
            tx: app.store.begin().await?,
            revoked: Vec::new(),
            mailed: false,
            endpoints: None,
            published: false,
        })
    }

    /// Records `entry` in the audit trail.
    pub(crate) async fn audit(&mut self, entry: &AuditEntry) -> AppResult<()> {
        Ok(self.tx.append_audit(entry).await?)
    }

    /// Queues `notice` for mailing once the change commits.
    pub(crate) async fn mail(&mut self, notice: &Notice) -> AppResult<()> {
        self.tx.enqueue_notice(notice).await?;
        self.mailed = true;
        Ok(())
    }

    /// Queues the notice of `kind` about `key`, by `actor` at `at`, for the
    /// key's owner (the common case of [`Change::mail`]).
    pub(crate) async fn mail_owner(
        &mut self,
        kind: NoticeKind,
        key: &ApiKey,
        actor: &User,
        at: DateTime<Utc>,
    ) -> AppResult<()> {
        let owner = self.tx.owner_of(key).await?;
        self.mail(&Notice::new(kind, key, &owner, actor, at)).await
    }

    /// Queues `event` for every enabled webhook endpoint of its tenant that
    /// receives its type; the dispatcher sends it once the change commits.
    pub(crate) async fn publish(&mut self, event: WebhookEvent) -> AppResult<()> {
        let endpoints = match &self.endpoints {
            Some(endpoints) => endpoints,
            None => self.endpoints.insert(self.tx.enabled_webhook_endpoints(event.tenant_id).await?),
        };
        self.published |= queue_event(&self.tx, endpoints, &event).await?;
        Ok(())
    }

    /// [`Change::publish`] of an event of `event_type` about `key` (as it is
    /// after the change), with the type's own `fields`.
    pub(crate) async fn publish_key_event(
        &mut self,
        event_type: WebhookEventType,
        key: &ApiKey,
        actor: &User,
        at: DateTime<Utc>,
        fields: Map<String, Value>,
    ) -> AppResult<()> {
        let owner = self.tx.owner_of(key).await?;
        self.publish(WebhookEvent::about_key(event_type, key, &owner, actor, at, fields)).await
    }

    /// Drops `key`'s cached verifications on every replica and in every
    /// verification stream's client once the change commits: its secret no
    /// longer verifies as it did.
    pub(crate) async fn revoke(&mut self, key: &ApiKey) -> AppResult<()> {
        self.signal(key, KeySignalKind::Revoked).await
    }

    /// [`Change::revoke`] for a change that leaves the key working but
    /// changes its answer (restrictions, limits, expiry, owner).
    pub(crate) async fn key_changed(&mut self, key: &ApiKey) -> AppResult<()> {
        self.signal(key, KeySignalKind::Changed).await
    }

    /// [`Change::revoke`] or [`Change::key_changed`], by `kind`.
    pub(crate) async fn signal(&mut self, key: &ApiKey, kind: KeySignalKind) -> AppResult<()> {
        let signal = KeySignal { key_id: key.id, tenant_id: key.tenant_id, kind };
        self.tx.push_revocation(&signal).await?;
        self.revoked.push(signal);
        Ok(())
    }

    /// Commits the change with its side effects, then applies them here.
    pub(crate) async fn commit(self) -> AppResult<()> {
        let Change { app, tx, revoked, mailed, published, .. } = self;
        tx.commit().await?;
        // On PostgreSQL the streams hear it from the follower, with every
        // other replica's; on SQLite this process is the only one.
        let streams_here = app.store.backend() == latchkey_store::Backend::Sqlite;
        for signal in revoked {
            app.verifier.forget(signal.key_id);
            if streams_here {
                app.signals.publish(Some(signal), app.clock.now());
            }
        }
        if mailed {
            app.outbox.notify_one();
        }
        if published {
            app.webhooks.wake.notify_one();
        }
        Ok(())
    }
}

impl Deref for Change<'_> {
    type Target = Tx;

    fn deref(&self) -> &Tx {
        &self.tx
    }
}

/// Queues `event` in `tx` for each of `endpoints` (the enabled endpoints
/// of its tenant) that receives its type; whether any was queued.
pub(crate) async fn queue_event(tx: &Tx, endpoints: &[WebhookEndpoint], event: &WebhookEvent) -> AppResult<bool> {
    let deliveries: Vec<WebhookDelivery> = endpoints
        .iter()
        .filter(|endpoint| endpoint.event_types.receives(event.event_type))
        .map(|endpoint| WebhookDelivery::of(event, endpoint.id))
        .collect();
    tx.insert_webhook_deliveries(&deliveries).await?;
    Ok(!deliveries.is_empty())
}
