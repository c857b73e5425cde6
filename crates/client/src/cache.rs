//! Verified keys in memory, keyed by an HMAC of the secret under a random
//! key of this process (never the secret), bounded, each entry with a
//! deadline (the TTL backstop, or the secret's own end if sooner).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::TryRng;
use uuid::Uuid;

use crate::clock::Tick;
use crate::context::Cloud;
use crate::decide::{Catalogue, Rules};
use crate::verification::VerifiedKey;

const SHARDS: usize = 16;

pub(crate) use crate::digest::Digest;
use crate::digest::SecretMac;

/// How long past its TTL an entry still answers while one request asks
/// Latchkey again (stale while revalidating: the TTL's expiry of a busy
/// key sends one question, not one per request in flight).
const REVALIDATE_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// A cached working key.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) key: Arc<VerifiedKey>,
    pub(crate) rules: Rules,
    /// The catalogue `rules` were read with, to read requests with.
    pub(crate) catalogue: Arc<Catalogue>,
    /// Its TTL: from then on one request asks Latchkey again.
    pub(crate) fresh_until: Tick,
    /// When the secret stops working, if it does: never answered from then on.
    pub(crate) valid_until: Option<Tick>,
    /// Whether a request is asking Latchkey again.
    pub(crate) revalidating: bool,
    /// Verifications answered from it, not yet reported to Latchkey.
    pub(crate) uses: u64,
    /// The last of them.
    pub(crate) last_use: Option<LastSeen>,
}

impl Entry {
    /// A new entry for `key`, answered by `rules` read with `catalogue`:
    /// fresh until `fresh_until`, never answered past `valid_until`.
    pub(crate) fn new(
        key: Arc<VerifiedKey>,
        rules: Rules,
        catalogue: Arc<Catalogue>,
        fresh_until: Tick,
        valid_until: Option<Tick>,
    ) -> Entry {
        Entry { key, rules, catalogue, fresh_until, valid_until, revalidating: false, uses: 0, last_use: None }
    }
}

/// The last cached verification of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastSeen {
    pub(crate) at: Tick,
    pub(crate) cloud: Option<Cloud>,
    pub(crate) ip: Option<IpAddr>,
}

/// A key's cached verifications to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Uses {
    pub(crate) count: u64,
    pub(crate) last: LastSeen,
}

impl Uses {
    fn add(&mut self, other: Uses) {
        self.count += other.count;
        if other.last.at > self.last.at {
            self.last = other.last;
        }
    }
}

/// Digests are HMAC outputs, uniformly distributed: their first eight
/// bytes are as good a hash as any, and cost nothing to compute.
#[derive(Debug, Default, Clone, Copy)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A `[u8; 32]` hashes as its length, then its bytes: keep the first eight of those.
        if bytes.len() >= 8 {
            let mut head = [0u8; 8];
            head.copy_from_slice(&bytes[..8]);
            self.0 = u64::from_le_bytes(head);
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<Digest, Entry, BuildHasherDefault<DigestHasher>>,
    hits: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct KeyCache {
    mac: SecretMac,
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// Bumped by every invalidation: an answer fetched across one is not cached.
    epoch: AtomicU64,
    /// Uses of entries dropped before they were reported (and of reports
    /// that failed), by key.
    retired: Mutex<HashMap<Uuid, Uses>>,
}

impl KeyCache {
    /// A cache of at most `capacity` entries (at least one per shard);
    /// `None` when the system's random generator fails.
    pub(crate) fn new(capacity: usize) -> Option<KeyCache> {
        // A key of HMAC-SHA-256's block size, drawn for this process only.
        let mut secret = [0u8; 64];
        rand::rngs::SysRng.try_fill_bytes(&mut secret).ok()?;
        Some(KeyCache {
            mac: SecretMac::new(&secret),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            epoch: AtomicU64::new(0),
            retired: Mutex::default(),
        })
    }

    /// The cache key of `secret`.
    pub(crate) fn digest(&self, secret: &str) -> Digest {
        self.mac.digest(secret)
    }

    fn shard(&self, digest: &Digest) -> std::sync::MutexGuard<'_, Shard> {
        let shard = &self.shards[usize::from(digest[0]) % SHARDS];
        shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What `answer` makes of the live entry for `digest` (under the
    /// shard's lock: keep it short), counted as a hit when it answers.
    /// `None` past the entry's TTL for the first caller, who asks Latchkey
    /// again while the others are still answered, for [`REVALIDATE_FOR`] at most.
    pub(crate) fn answer<T>(
        &self,
        digest: &Digest,
        now: Tick,
        answer: impl FnOnce(&mut Entry) -> Option<T>,
    ) -> Option<T> {
        let mut guard = self.shard(digest);
        let shard = &mut *guard;
        let entry = shard.entries.get_mut(digest)?;
        let ended = entry.valid_until.is_some_and(|until| now >= until);
        if ended || now >= crate::clock::after(entry.fresh_until, REVALIDATE_FOR) {
            self.retire(shard.entries.remove(digest));
            return None;
        }
        if now >= entry.fresh_until && !entry.revalidating {
            entry.revalidating = true;
            return None;
        }
        let answered = answer(entry)?;
        shard.hits += 1;
        Some(answered)
    }

    /// Drops the entry of `digest` (Latchkey refused its secret).
    pub(crate) fn remove(&self, digest: &Digest) {
        let removed = self.shard(digest).entries.remove(digest);
        self.retire(removed);
    }

    /// Keeps the unreported uses of a dropped entry for the next report.
    fn retire(&self, entry: Option<Entry>) {
        if let Some(Entry { key, uses: count @ 1.., last_use: Some(last), .. }) = entry {
            let uses = Uses { count, last };
            self.lock_retired().entry(key.key_id).and_modify(|kept| kept.add(uses)).or_insert(uses);
        }
    }

    /// Takes the uses not yet reported, by key.
    pub(crate) fn take_uses(&self) -> Vec<(Uuid, Uses)> {
        let mut taken: HashMap<Uuid, Uses> = std::mem::take(&mut *self.lock_retired());
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for entry in shard.entries.values_mut() {
                if let (count @ 1.., Some(last)) = (entry.uses, entry.last_use) {
                    entry.uses = 0;
                    let uses = Uses { count, last };
                    taken.entry(entry.key.key_id).and_modify(|kept| kept.add(uses)).or_insert(uses);
                }
            }
        }
        taken.into_iter().collect()
    }

    fn lock_retired(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Uses>> {
        self.retired.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current invalidation epoch: pass it back to [`KeyCache::insert`].
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Caches `entry`, unless an invalidation came since `epoch` was read
    /// (the answer may predate it). When full, the entry nearest its
    /// deadline makes room.
    pub(crate) fn insert(&self, digest: Digest, entry: Entry, epoch: u64) {
        let mut shard = self.shard(&digest);
        // Read under the shard's lock: an invalidation takes every shard's lock after bumping it.
        if self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&digest) {
            let soonest = shard.entries.iter().min_by_key(|(_, e)| e.fresh_until).map(|(d, _)| *d);
            if let Some(soonest) = soonest {
                self.retire(shard.entries.remove(&soonest));
            }
        }
        self.retire(shard.entries.insert(digest, entry));
    }

    /// Drops every entry of `key_id`.
    pub(crate) fn remove_key(&self, key_id: Uuid) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (_, entry) in shard.entries.extract_if(|_, e| e.key.key_id == key_id) {
                self.retire(Some(entry));
            }
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (_, entry) in shard.entries.drain() {
                self.retire(Some(entry));
            }
        }
    }

    /// Entries held (expired ones included until they are next looked up)
    /// and hits so far.
    pub(crate) fn counts(&self) -> (usize, u64) {
        self.shards.iter().fold((0, 0), |(entries, hits), shard| {
            let shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (entries + shard.entries.len(), hits + shard.hits)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{after, now};

    fn entry(key_id: u128, fresh_until: Tick, valid_until: Option<Tick>) -> Entry {
        let key = VerifiedKey {
            key_id: Uuid::from_u128(key_id),
            tenant_id: Uuid::nil(),
            owner_id: Uuid::nil(),
            clouds: vec![Cloud::Employee],
            permissions: None,
            allowed_ips: Vec::new(),
            valid_until: None,
            credits: None,
            limits: Vec::new(),
        };
        let catalogue = Arc::new(Catalogue::from_json(br#"{"permissions":[]}"#).expect("catalogue"));
        let rules = catalogue.rules_of(&key).expect("rules");
        Entry::new(Arc::new(key), rules, catalogue, fresh_until, valid_until)
    }

    fn hit(cache: &KeyCache, digest: &Digest, at: Tick) -> bool {
        cache.answer(digest, at, |_| Some(())).is_some()
    }

    #[test]
    fn past_its_ttl_one_caller_revalidates_while_the_others_are_answered() {
        let cache = KeyCache::new(100).expect("cache");
        let t0 = now();
        let digest = cache.digest("lk_a");
        cache.insert(digest, entry(1, after(t0, Duration::from_secs(60)), None), cache.epoch());
        assert!(hit(&cache, &digest, t0));
        let expired = after(t0, Duration::from_secs(61));
        assert!(!hit(&cache, &digest, expired), "the first caller past the TTL asks Latchkey");
        assert!(hit(&cache, &digest, expired), "the others are answered meanwhile");
        assert!(!hit(&cache, &digest, after(t0, Duration::from_secs(63))), "not past the revalidation window");
        assert!(!hit(&cache, &digest, expired), "and it was dropped");
    }

    #[test]
    fn a_secret_past_its_own_end_is_never_answered() {
        let cache = KeyCache::new(100).expect("cache");
        let t0 = now();
        let digest = cache.digest("lk_b");
        let ends = after(t0, Duration::from_secs(5));
        cache.insert(digest, entry(1, after(t0, Duration::from_secs(60)), Some(ends)), cache.epoch());
        assert!(hit(&cache, &digest, t0));
        assert!(!hit(&cache, &digest, ends));
        assert!(!hit(&cache, &digest, t0), "dropped");
    }

    #[test]
    fn an_answer_read_across_an_invalidation_is_not_kept_and_the_cache_is_bounded() {
        let cache = KeyCache::new(SHARDS).expect("cache");
        let t0 = now();
        let epoch = cache.epoch();
        cache.remove_key(Uuid::from_u128(9));
        let digest = cache.digest("lk_c");
        cache.insert(digest, entry(1, after(t0, Duration::from_secs(60)), None), epoch);
        assert!(!hit(&cache, &digest, t0), "raced a signal: not cached");
        for i in 0..1_000u128 {
            let digest = cache.digest(&format!("lk_{i}"));
            cache.insert(digest, entry(i, after(t0, Duration::from_secs(60)), None), cache.epoch());
        }
        assert!(cache.counts().0 <= SHARDS, "one entry per shard at most: {}", cache.counts().0);
        let digest = cache.digest("lk_999");
        assert!(hit(&cache, &digest, t0), "the newest is kept");
        cache.remove_key(Uuid::from_u128(999));
        assert!(!hit(&cache, &digest, t0));
    }
}
