//! Last use of keys, recorded in memory on every verification and written to
//! the database in batches (forward only). Bounded: past its capacity a new
//! key's use waits for the next flush, which is asked for at once.

use chrono::{DateTime, Utc};
use latchkey_domain::ApiKeyId;
use tokio::sync::Notify;

use super::shards::ShardedMap;

/// Recorded uses waiting to be written.
pub(crate) struct UsageRecorder {
    pending: ShardedMap<ApiKeyId, DateTime<Utc>>,
    full: Notify,
}

impl UsageRecorder {
    /// A recorder holding about `capacity` keys between flushes.
    pub(crate) fn new(capacity: usize) -> Self {
        UsageRecorder { pending: ShardedMap::new(capacity), full: Notify::new() }
    }

    /// Records that `key` was used at `at` (keeps the latest).
    pub(crate) fn record(&self, key: ApiKeyId, at: DateTime<Utc>) {
        let mut shard = self.pending.shard(&key);
        if let Some(last) = shard.get_mut(&key) {
            *last = (*last).max(at);
            return;
        }
        if shard.len() >= self.pending.shard_capacity() {
            // Full: this use is dropped (an earlier or later one will be
            // written); the flusher is woken to make room.
            self.full.notify_one();
            return;
        }
        shard.insert(key, at);
    }

    /// Takes every recorded use.
    pub(crate) fn drain(&self) -> Vec<(ApiKeyId, DateTime<Utc>)> {
        let mut batch = Vec::new();
        self.pending.for_each_shard(|shard| batch.extend(shard.drain()));
        batch
    }

    /// Puts uses back after a failed write (keeping the latest of each).
    pub(crate) fn restore(&self, batch: Vec<(ApiKeyId, DateTime<Utc>)>) {
        for (key, at) in batch {
            let mut shard = self.pending.shard(&key);
            let last = shard.entry(key).or_insert(at);
            *last = (*last).max(at);
        }
    }

    /// Resolves when the recorder filled up and wants a flush.
    pub(crate) async fn filled(&self) {
        self.full.notified().await;
    }

    /// Keys waiting.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}
