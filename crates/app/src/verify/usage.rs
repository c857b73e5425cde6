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
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    #[tokio::test]
    async fn keeps_the_latest_use_stays_within_its_cap_and_asks_for_a_flush_when_full() {
        let recorder = UsageRecorder::new(32); // one key per shard
        let at = |s| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, s).unwrap();
        let key = ApiKeyId(Uuid::from_u128(1));
        recorder.record(key, at(5));
        recorder.record(key, at(3));
        assert_eq!(recorder.drain(), [(key, at(5))], "forward only");
        for n in 0..1_000 {
            recorder.record(ApiKeyId(Uuid::from_u128(n)), at(1));
        }
        let held = recorder.drain();
        assert!(held.len() <= recorder.pending.capacity(), "{}", held.len());
        // A full recorder left a wake-up for the flusher.
        tokio::time::timeout(std::time::Duration::from_secs(1), recorder.filled()).await.expect("asked for a flush");
        recorder.restore(vec![(key, at(9)), (key, at(7))]);
        assert_eq!(recorder.drain(), [(key, at(9))]);
    }
}
