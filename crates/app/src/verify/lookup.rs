//! Credential lookups, batched: concurrent cold verifications share one
//! indexed query (`lookup_id IN (...)`), like a GraphQL DataLoader. Nothing
//! waits to fill a batch: a batch is whatever queued while the previous
//! queries ran, so an idle server looks one key up at once, and a busy one
//! pays one database round trip for many keys.

use std::sync::Arc;

use latchkey_domain::LookupId;
use latchkey_store::{Store, StoredCredential};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::{AppError, AppResult};

/// Most lookup ids in one query.
const MAX_BATCH: usize = 128;
/// Queued lookups before callers wait for room.
const QUEUE: usize = 4096;

/// Why a batch's query failed, for each of its callers.
#[derive(Clone, Debug)]
struct LookupFailed {
    /// The database could not be reached (answered `UNAVAILABLE`).
    unavailable: bool,
    /// The store's error, for the log.
    detail: String,
}

type Reply = oneshot::Sender<Result<Option<StoredCredential>, LookupFailed>>;

/// Looks credentials up in batches; see the module documentation.
#[derive(Debug)]
pub(crate) struct CredentialLoader {
    queue: mpsc::Sender<(LookupId, Reply)>,
}

impl CredentialLoader {
    /// A loader over `store` running up to `concurrent_queries` queries at
    /// once. Spawns its batching task on the current tokio runtime (an
    /// error outside one).
    pub(crate) fn new(store: Store, concurrent_queries: usize) -> AppResult<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| AppError::internal(&e))?;
        let (queue, requests) = mpsc::channel(QUEUE);
        runtime.spawn(batch_requests(store, requests, Arc::new(Semaphore::new(concurrent_queries.max(1)))));
        Ok(CredentialLoader { queue })
    }

    /// The stored credential of `lookup_id`, if any.
    pub(crate) async fn load(&self, lookup_id: LookupId) -> AppResult<Option<StoredCredential>> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((lookup_id, reply)).await.map_err(|_| AppError::internal(&"the credential loader stopped"))?;
        match answer.await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(LookupFailed { unavailable: true, detail })) => {
                Err(AppError::unavailable(&format_args!("credential lookup failed: {detail}")))
            }
            Ok(Err(LookupFailed { unavailable: false, detail })) => {
                Err(AppError::internal(&format_args!("credential lookup failed: {detail}")))
            }
            Err(_) => Err(AppError::internal(&"the credential loader dropped a lookup")),
        }
    }
}

async fn batch_requests(store: Store, mut requests: mpsc::Receiver<(LookupId, Reply)>, slots: Arc<Semaphore>) {
    loop {
        // Wait for a free query slot first: lookups arriving meanwhile join the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(first) = requests.recv().await else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let store = store.clone();
        tokio::spawn(async move {
            let ids: Vec<LookupId> = batch.iter().map(|(id, _)| id.clone()).collect();
            match store.credentials_by_lookup_ids(&ids).await {
                Ok(found) => {
                    for (id, reply) in batch {
                        let _ = reply.send(Ok(found.iter().find(|c| c.lookup_id == id).cloned()));
                    }
                }
                Err(e) => {
                    let failed = LookupFailed { unavailable: e.is_unavailable(), detail: e.to_string() };
                    for (_, reply) in batch {
                        let _ = reply.send(Err(failed.clone()));
                    }
                }
            }
            drop(slot);
        });
    }
}
