//! Usage of keys, counted in memory and written in batches.
//!
//! A cached key counts its successful verifications in its own
//! [`UseTally`]: one compare-and-swap per verification, no lock. The first
//! use in a new second hands the previous second's count to the
//! [`UsageRecorder`] (with the details of the use, as the key's last use);
//! a flush takes what every cached tally still holds, and a tally dropped
//! from the cache hands over its rest as it goes, so every counted
//! verification is handed over exactly once. Refusals that name a key are
//! rarer and go to the recorder directly.
//!
//! The recorder is not capped: only verifications of existing keys are
//! counted, so it holds at most one entry per key used since the last
//! flush. Past `soft_capacity` keys it asks for an early flush.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use latchkey_domain::usage::{Granularity, LastUse, UsageOutcome};
use latchkey_domain::{ApiKeyId, TenantId};
use latchkey_store::{UsageBatch, UsageDelta};
use tokio::sync::Notify;

use super::shards::ShardedMap;

/// The uses of one cached key not yet handed to the recorder: the second
/// (Unix time) of the latest use in the high half, the uses in that second
/// in the low half.
#[derive(Debug, Default)]
pub struct UseTally(AtomicU64);

fn pack(second: u32, count: u32) -> u64 {
    (u64::from(second) << 32) | u64::from(count)
}

fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// The second of `at` as a tally keeps it (clamped to what fits).
pub(crate) fn second_of(at: DateTime<Utc>) -> u32 {
    u32::try_from(at.timestamp().max(0)).unwrap_or(u32::MAX)
}

fn instant_of(second: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(second), 0).unwrap_or_default()
}

impl UseTally {
    /// Counts a use in `second`. The first use in a later second starts a
    /// new count and returns the previous one, `(second, uses)`, for the
    /// recorder (uses may be 0: it was taken by a flush meanwhile). A use in
    /// an earlier second (the clock went back) counts in the latest.
    pub(crate) fn count(&self, second: u32) -> Option<(u32, u32)> {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (latest, uses) = unpack(current);
            let (next, handed) = if second <= latest {
                (pack(latest, uses.saturating_add(1)), None)
            } else {
                (pack(second, 1), Some((latest, uses)))
            };
            match self.0.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return handed,
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes the uses not handed over yet, `(second, uses)`.
    pub(crate) fn take(&self) -> (u32, u32) {
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let (latest, uses) = unpack(current);
            if uses == 0 {
                return (latest, 0);
            }
            match self.0.compare_exchange_weak(current, pack(latest, 0), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return (latest, uses),
                Err(actual) => current = actual,
            }
        }
    }
}

/// What one key's flush will write.
#[derive(Debug)]
struct PendingUse {
    tenant: TenantId,
    /// (hour, outcome, count); a few entries between two flushes.
    counts: Vec<(DateTime<Utc>, UsageOutcome, u64)>,
    last: Option<LastUse>,
}

/// Uses waiting to be written; see the module documentation.
pub(crate) struct UsageRecorder {
    pending: ShardedMap<ApiKeyId, PendingUse>,
    /// A batch whose write failed, written first next time.
    unwritten: Mutex<Option<UsageBatch>>,
    full: Notify,
}

impl std::fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageRecorder").field("keys", &self.pending.len()).finish_non_exhaustive()
    }
}

impl UsageRecorder {
    /// A recorder asking for a flush past about `soft_capacity` keys.
    pub(crate) fn new(soft_capacity: usize) -> Self {
        UsageRecorder { pending: ShardedMap::new(soft_capacity), unwritten: Mutex::default(), full: Notify::new() }
    }

    fn with_key(&self, key: ApiKeyId, tenant: TenantId, f: impl FnOnce(&mut PendingUse)) {
        let mut shard = self.pending.shard(&key);
        if shard.len() >= self.pending.shard_capacity() && !shard.contains_key(&key) {
            self.full.notify_one();
        }
        f(shard.entry(key).or_insert_with(|| PendingUse { tenant, counts: Vec::new(), last: None }));
    }

    /// Counts `uses` verifications of `key` at `at` as `outcome`.
    pub(crate) fn count(&self, key: ApiKeyId, tenant: TenantId, at: DateTime<Utc>, outcome: UsageOutcome, uses: u64) {
        if uses == 0 {
            return;
        }
        let hour = Granularity::Hour.bucket_of(at);
        self.with_key(key, tenant, |pending| {
            match pending.counts.iter_mut().find(|(h, o, _)| *h == hour && *o == outcome) {
                Some((_, _, count)) => *count += uses,
                None => pending.counts.push((hour, outcome, uses)),
            }
        });
    }

    /// Counts what a tally handed over, `(second, uses)`.
    pub(crate) fn count_handed(&self, key: ApiKeyId, tenant: TenantId, outcome: UsageOutcome, handed: (u32, u32)) {
        self.count(key, tenant, instant_of(handed.0), outcome, u64::from(handed.1));
    }

    /// Records a successful use of `key` (the latest is kept).
    pub(crate) fn last_use(&self, key: ApiKeyId, tenant: TenantId, last: LastUse) {
        self.with_key(key, tenant, |pending| {
            if pending.last.as_ref().is_none_or(|kept| kept.at < last.at) {
                pending.last = Some(last);
            }
        });
    }

    /// Takes everything waiting, the batch that failed last time first.
    pub(crate) fn drain(&self) -> UsageBatch {
        let mut batch = self.unwritten.lock().unwrap_or_else(PoisonError::into_inner).take().unwrap_or_default();
        self.pending.for_each_shard(|shard| {
            for (key_id, pending) in shard.drain() {
                batch.counts.extend(pending.counts.into_iter().map(|(hour, outcome, count)| UsageDelta {
                    key_id,
                    tenant_id: pending.tenant,
                    hour,
                    outcome,
                    count,
                }));
                if let Some(last) = pending.last {
                    batch.last_uses.push((key_id, last));
                }
            }
        });
        batch
    }

    /// Keeps a batch whose write failed for the next flush.
    pub(crate) fn unwritten(&self, batch: UsageBatch) {
        *self.unwritten.lock().unwrap_or_else(PoisonError::into_inner) = Some(batch);
    }

    /// Resolves when many keys wait and a flush should run.
    pub(crate) async fn filled(&self) {
        self.full.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    #[test]
    fn a_tally_hands_over_each_use_once() {
        let tally = UseTally::default();
        assert_eq!(tally.count(100), Some((0, 0)), "the first use ever starts a second");
        assert_eq!(tally.count(100), None);
        assert_eq!(tally.count(99), None, "a clock that went back counts in the latest second");
        assert_eq!(tally.count(101), Some((100, 3)));
        assert_eq!(tally.take(), (101, 1));
        assert_eq!(tally.take(), (101, 0), "taken once");
        assert_eq!(tally.count(101), None);
        assert_eq!(tally.count(102), Some((101, 1)));
    }

    #[test]
    fn concurrent_uses_are_all_counted() {
        let tally = std::sync::Arc::new(UseTally::default());
        let handed = std::sync::Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (tally, handed) = (tally.clone(), handed.clone());
                std::thread::spawn(move || {
                    for n in 0..10_000u32 {
                        if let Some((_, uses)) = tally.count(1_000 + (n + t) / 100) {
                            handed.fetch_add(u64::from(uses), Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let total = handed.load(Ordering::Relaxed) + u64::from(tally.take().1);
        assert_eq!(total, 40_000);
    }

    #[tokio::test]
    async fn the_recorder_sums_per_hour_and_outcome_keeps_the_latest_use_and_retries_a_failed_batch() {
        let recorder = UsageRecorder::new(32); // one key per shard
        let at = |m, s| Utc.with_ymd_and_hms(2026, 1, 1, 10, m, s).unwrap();
        let (key, tenant) = (ApiKeyId(Uuid::from_u128(1)), TenantId(Uuid::from_u128(2)));
        recorder.count(key, tenant, at(5, 0), UsageOutcome::Valid, 2);
        recorder.count(key, tenant, at(59, 59), UsageOutcome::Valid, 3);
        recorder.count(key, tenant, at(6, 0), UsageOutcome::Forbidden, 1);
        recorder.count(key, tenant, at(7, 0), UsageOutcome::Valid, 0);
        let use_at = |m| LastUse { at: at(m, 0), cloud: None, client_address: None, user_agent: None };
        recorder.last_use(key, tenant, use_at(9));
        recorder.last_use(key, tenant, use_at(8));
        let batch = recorder.drain();
        let hour = at(0, 0);
        assert_eq!(
            batch.counts,
            [
                UsageDelta { key_id: key, tenant_id: tenant, hour, outcome: UsageOutcome::Valid, count: 5 },
                UsageDelta { key_id: key, tenant_id: tenant, hour, outcome: UsageOutcome::Forbidden, count: 1 },
            ]
        );
        assert_eq!(batch.last_uses, [(key, use_at(9))]);
        recorder.unwritten(batch.clone());
        assert_eq!(recorder.drain(), batch, "a failed batch comes back once");
        assert!(recorder.drain().is_empty());
        for n in 0..1_000 {
            recorder.count(ApiKeyId(Uuid::from_u128(n)), tenant, at(1, 0), UsageOutcome::Valid, 1);
        }
        assert_eq!(recorder.drain().counts.len(), 1_000, "nothing is dropped past the soft capacity");
        tokio::time::timeout(std::time::Duration::from_secs(1), recorder.filled()).await.expect("asked for a flush");
    }
}
