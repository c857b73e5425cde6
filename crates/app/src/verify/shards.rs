//! A map split into independently locked shards, each with a size cap, so
//! that a hot path locks one small shard and cleanup never stops the world.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};

/// Shards per map: enough that two cores rarely meet on one lock.
const SHARDS: usize = 32;

/// A size-capped map of `SHARDS` independently locked shards.
pub(crate) struct ShardedMap<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl<K: Hash + Eq, V> ShardedMap<K, V> {
    /// A map holding at most about `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    /// The most entries one shard holds.
    pub(crate) fn shard_capacity(&self) -> usize {
        self.per_shard
    }

    /// The most entries this map holds.
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn lock(shard: &Mutex<HashMap<K, V>>) -> MutexGuard<'_, HashMap<K, V>> {
        // A panic while holding a shard leaves a consistent map: keep using it.
        shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn index(&self, key: &K) -> usize {
        (self.hasher.hash_one(key) as usize) % self.shards.len()
    }

    /// The locked shard that holds `key`.
    pub(crate) fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, V>> {
        Self::lock(&self.shards[self.index(key)])
    }

    /// Inserts into `shard` (locked by the caller, holding `key`), first making
    /// room when it is full: entries for which `stale` is true go, and if
    /// that is not enough, an arbitrary eighth of the shard, handed to
    /// `evicted`. Returns the value `key` had.
    pub(crate) fn insert_bounded(
        &self,
        shard: &mut HashMap<K, V>,
        key: K,
        value: V,
        stale: impl Fn(&V) -> bool,
        mut evicted: impl FnMut(K, V),
    ) -> Option<V>
    where
        K: Clone,
    {
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, v| !stale(v));
            if shard.len() >= self.per_shard {
                let victims: Vec<K> = shard.keys().take(self.per_shard / 8 + 1).cloned().collect();
                for victim in victims {
                    if let Some(v) = shard.remove(&victim) {
                        evicted(victim, v);
                    }
                }
            }
        }
        shard.insert(key, value)
    }

    /// Calls `f` on every shard in turn (one lock at a time).
    pub(crate) fn for_each_shard(&self, mut f: impl FnMut(&mut HashMap<K, V>)) {
        for shard in self.shards.iter() {
            f(&mut Self::lock(shard));
        }
    }

    /// How many entries there are (a snapshot, shard by shard).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| Self::lock(s).len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_its_capacity_and_drops_stale_entries_first() {
        let map: ShardedMap<u32, u32> = ShardedMap::new(64);
        for n in 0..10_000 {
            let mut shard = map.shard(&n);
            map.insert_bounded(&mut shard, n, n, |_| false, |_, _| {});
        }
        assert!(map.len() <= map.capacity(), "{} > {}", map.len(), map.capacity());
        assert!(map.capacity() < 128);

        // One entry per shard: a newcomer evicts the stale entry, not a live one.
        let map: ShardedMap<u32, bool> = ShardedMap::new(SHARDS);
        let other = (2..).find(|k| map.index(k) == map.index(&1)).unwrap();
        map.insert_bounded(&mut map.shard(&1), 1, true, |stale| *stale, |_, _| panic!("only the stale entry goes"));
        map.insert_bounded(
            &mut map.shard(&other),
            other,
            false,
            |stale| *stale,
            |_, _| panic!("only the stale entry goes"),
        );
        let shard = map.shard(&1);
        assert_eq!((shard.get(&1), shard.get(&other)), (None, Some(&false)));
    }
}
