//! Verified keys in memory, keyed by an HMAC of the secret under a random
//! key of this process (never the secret), bounded, each entry with a
//! deadline (the TTL backstop, or the secret's own end if sooner).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::TryRng;
use sha2::Sha256;
use uuid::Uuid;

use crate::clock::Tick;
use crate::decide::{Catalogue, Rules};
use crate::verification::VerifiedKey;

const SHARDS: usize = 16;

/// The cache key of a secret.
pub(crate) type Digest = [u8; 32];

/// A cached working key.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) key: Arc<VerifiedKey>,
    pub(crate) rules: Rules,
    /// The catalogue `rules` were read with, to read requests with.
    pub(crate) catalogue: Arc<Catalogue>,
    /// Not answered from then on.
    pub(crate) until: Tick,
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
    mac: Hmac<Sha256>,
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    /// Bumped by every invalidation: an answer fetched across one is not cached.
    epoch: AtomicU64,
}

impl KeyCache {
    /// A cache of at most `capacity` entries (at least one per shard);
    /// `None` when the system's random generator fails.
    pub(crate) fn new(capacity: usize) -> Option<KeyCache> {
        // A key of HMAC-SHA-256's block size, drawn for this process only.
        let mut secret = [0u8; 64];
        rand::rngs::SysRng.try_fill_bytes(&mut secret).ok()?;
        Some(KeyCache {
            mac: <Hmac<Sha256> as KeyInit>::new(&secret.into()),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            epoch: AtomicU64::new(0),
        })
    }

    /// The cache key of `secret`.
    pub(crate) fn digest(&self, secret: &str) -> Digest {
        let mut mac = self.mac.clone();
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn shard(&self, digest: &Digest) -> std::sync::MutexGuard<'_, Shard> {
        let shard = &self.shards[usize::from(digest[0]) % SHARDS];
        shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What `answer` makes of the live entry for `digest` (under the
    /// shard's lock: keep it short), counted as a hit when it answers.
    pub(crate) fn answer<T>(&self, digest: &Digest, now: Tick, answer: impl FnOnce(&Entry) -> Option<T>) -> Option<T> {
        let mut shard = self.shard(digest);
        let entry = shard.entries.get(digest)?;
        if now >= entry.until {
            shard.entries.remove(digest);
            return None;
        }
        let answered = answer(entry)?;
        shard.hits += 1;
        Some(answered)
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
            let soonest = shard.entries.iter().min_by_key(|(_, e)| e.until).map(|(d, _)| *d);
            if let Some(soonest) = soonest {
                shard.entries.remove(&soonest);
            }
        }
        shard.entries.insert(digest, entry);
    }

    /// Drops every entry of `key_id`.
    pub(crate) fn remove_key(&self, key_id: Uuid) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            shard.entries.retain(|_, e| e.key.key_id != key_id);
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entries.clear();
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
