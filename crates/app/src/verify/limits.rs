//! Failure limits: who presents wrong keys, and how often.
//!
//! The limits are about the *failing presenter*, never the key's holder: a
//! correct secret is always checked and always accepted. What they do:
//! * a presenter (a client address, or anyone presenting one lookup id) over
//!   its limit gets `RATE_LIMITED` instead of `INVALID` for its failures;
//! * the one expensive check left, a legacy argon2id hash, is budgeted per
//!   lookup id, and the budget is taken *before* the hash runs (and given back
//!   when it verifies), so concurrent guesses cannot run more hashes than the
//!   limit allows;
//! * a presented key that failed is remembered (by its HMAC digest) for the
//!   window, so repeating it costs no database work.
//!
//! Every map is sharded and size-capped; a full shard drops its expired
//! windows, then arbitrary ones. That can only forget failures, never refuse
//! a correct key.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use latchkey_domain::secret::LOOKUP_ID_LEN;
use latchkey_domain::{ApiKeyId, LookupId};

use sha2::{Digest as _, Sha256};

use super::cache::Digest;
use super::shards::ShardedMap;

/// Who failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Presenter {
    /// Anyone presenting this lookup id (a Latchkey key's).
    Key([u8; LOOKUP_ID_LEN]),
    /// Anyone presenting a key found by this stored lookup (an imported
    /// key's `prefix:…` or digest), by its SHA-256: lookups are longer than
    /// a lookup id and must never share a budget by a common beginning.
    Stored([u8; 16]),
    /// One client address; IPv6 clients by their /64 (one host's share).
    Client(IpAddr),
    /// A working key refused for its restrictions, by one client (or by
    /// clients of unknown address).
    Refused(ApiKeyId, Option<IpAddr>),
}

fn key_presenter(lookup: &LookupId) -> Presenter {
    let raw = lookup.as_str().as_bytes();
    if raw.len() <= LOOKUP_ID_LEN {
        let mut bytes = [0u8; LOOKUP_ID_LEN];
        bytes[..raw.len()].copy_from_slice(raw);
        return Presenter::Key(bytes);
    }
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&Sha256::digest(raw)[..16]);
    Presenter::Stored(bytes)
}

/// The presenter a client address counts as: an IPv4 address itself, an
/// IPv6 address by its /64 (a host is given a whole /64 and picks any
/// address in it).
pub(crate) fn client_presenter(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Failures in the window that started at `.0`.
#[derive(Clone, Copy, Debug)]
struct Window(Instant, u32);

/// The limits; see the module documentation.
pub(crate) struct FailureLimiter {
    window: Duration,
    per_key: u32,
    per_client: u32,
    counts: ShardedMap<Presenter, Window>,
    failed: ShardedMap<Digest, Instant>,
}

impl FailureLimiter {
    /// Limits of `per_key` failures per lookup id and `per_client` per client
    /// address per `window`, remembering about `capacity` presenters and
    /// failed keys.
    pub(crate) fn new(window: Duration, per_key: u32, per_client: u32, capacity: usize) -> Self {
        FailureLimiter {
            window,
            per_key,
            per_client,
            counts: ShardedMap::new(capacity),
            failed: ShardedMap::new(capacity),
        }
    }

    fn limit_of(&self, presenter: &Presenter) -> u32 {
        match presenter {
            Presenter::Key(_) | Presenter::Stored(_) | Presenter::Refused(..) => self.per_key,
            Presenter::Client(_) => self.per_client,
        }
    }

    /// Adds `n` failures of `presenter` at `now`; the count afterwards.
    fn add(&self, presenter: Presenter, n: u32, now: Instant) -> u32 {
        let window = self.window;
        let mut shard = self.counts.shard(&presenter);
        let current = match shard.get(&presenter) {
            Some(w) if now.duration_since(w.0) < window => Window(w.0, w.1.saturating_add(n)),
            _ => Window(now, n),
        };
        self.counts.insert_bounded(&mut shard, presenter, current, |w| now.duration_since(w.0) >= window, |_, _| {});
        current.1
    }

    fn count(&self, presenter: &Presenter, now: Instant) -> u32 {
        let shard = self.counts.shard(presenter);
        shard.get(presenter).filter(|w| now.duration_since(w.0) < self.window).map_or(0, |w| w.1)
    }

    /// How long failures are counted: the longest a `RATE_LIMITED`
    /// presenter waits before its count starts again.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// Records a failed verification of `digest` (a key with `lookup`) from
    /// `client`. Returns whether the presenter is now over a limit, so the
    /// answer should be `RATE_LIMITED` rather than `INVALID`.
    pub(crate) fn fail(&self, digest: Digest, lookup: &LookupId, client: Option<IpAddr>, now: Instant) -> bool {
        let window = self.window;
        let mut shard = self.failed.shard(&digest);
        self.failed.insert_bounded(&mut shard, digest, now + window, |until| *until <= now, |_, _| {});
        drop(shard);
        self.count_failure(lookup, client, now)
    }

    /// Counts a failure of `lookup` from `client` without remembering the
    /// key; whether the presenter is now over a limit.
    pub(crate) fn count_failure(&self, lookup: &LookupId, client: Option<IpAddr>, now: Instant) -> bool {
        let key = key_presenter(lookup);
        let mut over = self.add(key, 1, now) > self.per_key;
        if let Some(ip) = client {
            over |= self.add(Presenter::Client(client_presenter(ip)), 1, now) > self.per_client;
        }
        over
    }

    /// Whether `client` is over its failure limit now: it is answered
    /// `RATE_LIMITED`, and no expensive check runs for it.
    pub(crate) fn client_over_limit(&self, client: Option<IpAddr>, now: Instant) -> bool {
        client.is_some_and(|ip| self.count(&Presenter::Client(client_presenter(ip)), now) >= self.per_client)
    }

    /// Counts a restriction refusal of `key` for `client`; whether that
    /// presenter is now over the per-key limit.
    pub(crate) fn refuse(&self, key: ApiKeyId, client: Option<IpAddr>, now: Instant) -> bool {
        self.add(Presenter::Refused(key, client.map(client_presenter)), 1, now) > self.per_key
    }

    /// Whether `key` was refused for `client` as often as the per-key limit
    /// allows within the window.
    pub(crate) fn refused_too_often(&self, key: ApiKeyId, client: Option<IpAddr>, now: Instant) -> bool {
        self.count(&Presenter::Refused(key, client.map(client_presenter)), now) >= self.per_key
    }

    /// Whether `digest` failed within the window. If so, the repeat counts as
    /// another failure; returns whether the presenter is over a limit.
    pub(crate) fn failed_before(
        &self,
        digest: &Digest,
        lookup: &LookupId,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Option<bool> {
        let failed = self.failed.shard(digest).get(digest).is_some_and(|until| *until > now);
        failed.then(|| self.count_failure(lookup, client, now))
    }

    /// Takes one unit of `lookup`'s budget before an expensive check (a legacy
    /// hash), counted as a failure until [`Self::refund`]; `false`, taking
    /// nothing, when the budget is spent.
    pub(crate) fn reserve(&self, lookup: &LookupId, now: Instant) -> bool {
        let key = key_presenter(lookup);
        if self.count(&key, now) >= self.limit_of(&key) {
            return false;
        }
        if self.add(key, 1, now) > self.per_key {
            self.refund(lookup, now);
            return false;
        }
        true
    }

    /// Gives back a unit taken by [`Self::reserve`] (the check succeeded).
    pub(crate) fn refund(&self, lookup: &LookupId, now: Instant) {
        let key = key_presenter(lookup);
        let mut shard = self.counts.shard(&key);
        if let Some(w) = shard.get_mut(&key).filter(|w| now.duration_since(w.0) < self.window) {
            w.1 = w.1.saturating_sub(1);
        }
    }

    /// Entries held (presenters and failed keys).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.counts.len() + self.failed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(c: char) -> LookupId {
        LookupId::from_stored(c.to_string().repeat(LOOKUP_ID_LEN))
    }

    #[test]
    fn presenters_over_their_limit_are_told_so_per_key_and_per_client() {
        let limiter = FailureLimiter::new(Duration::from_secs(60), 3, 5, 1000);
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let over: Vec<bool> = (0..4u8).map(|n| limiter.fail([n; 32], &lookup('a'), None, now)).collect();
        assert_eq!(over, [false, false, false, true], "the fourth failure on one lookup id is over");
        assert!(!limiter.fail([9; 32], &lookup('b'), Some(ip), now));
        let over: Vec<bool> = (10..14u8).map(|n| limiter.fail([n; 32], &lookup('c'), Some(ip), now)).collect();
        assert_eq!(over, [false, false, false, true], "a client's sixth failure, across keys, is over");
        assert!(!limiter.fail([20; 32], &lookup('d'), None, now + Duration::from_secs(61)));
    }

    #[test]
    fn failed_keys_are_remembered_for_the_window() {
        let limiter = FailureLimiter::new(Duration::from_secs(60), 3, 100, 1000);
        let now = Instant::now();
        assert_eq!(limiter.failed_before(&[1; 32], &lookup('a'), None, now), None);
        limiter.fail([1; 32], &lookup('a'), None, now);
        assert_eq!(limiter.failed_before(&[1; 32], &lookup('a'), None, now), Some(false));
        assert_eq!(limiter.failed_before(&[1; 32], &lookup('a'), None, now), Some(false));
        assert_eq!(limiter.failed_before(&[1; 32], &lookup('a'), None, now), Some(true), "the fourth");
        assert_eq!(limiter.failed_before(&[1; 32], &lookup('a'), None, now + Duration::from_secs(61)), None);
    }

    #[test]
    fn budgets_are_taken_before_the_work_and_refunded_on_success() {
        let limiter = FailureLimiter::new(Duration::from_secs(60), 3, 100, 1000);
        let now = Instant::now();
        assert!((0..3).all(|_| limiter.reserve(&lookup('a'), now)));
        assert!(!limiter.reserve(&lookup('a'), now), "three checks in flight or failed: no fourth");
        limiter.refund(&lookup('a'), now);
        assert!(limiter.reserve(&lookup('a'), now), "a success gives its unit back");
        assert!(limiter.reserve(&lookup('b'), now), "other keys are unaffected");
    }

    #[test]
    fn long_stored_lookups_never_share_a_budget_and_ipv6_counts_per_64() {
        let limiter = FailureLimiter::new(Duration::from_secs(60), 1, 2, 1000);
        let now = Instant::now();
        let a = LookupId::from_stored("prefix:abcdefgh1".into());
        let b = LookupId::from_stored("prefix:abcdefgh2".into());
        assert!(limiter.reserve(&a, now));
        assert!(!limiter.reserve(&a, now));
        assert!(limiter.reserve(&b, now), "a common beginning is not the same key");
        let host = |last: &str| Some(format!("2001:db8:1:2::{last}").parse::<IpAddr>().unwrap());
        assert!(!limiter.fail([1; 32], &lookup('x'), host("1"), now));
        assert!(!limiter.fail([2; 32], &lookup('y'), host("2"), now));
        assert!(limiter.client_over_limit(host("ffff"), now), "one /64 is one client");
        assert!(!limiter.client_over_limit(Some("2001:db8:1:3::1".parse().unwrap()), now));
    }

    #[test]
    fn restriction_refusals_count_per_key_and_client() {
        let limiter = FailureLimiter::new(Duration::from_secs(60), 2, 100, 1000);
        let now = Instant::now();
        let (key, other_key) = (ApiKeyId(uuid::Uuid::from_u128(1)), ApiKeyId(uuid::Uuid::from_u128(2)));
        let (a, b) = (Some(IpAddr::from([192, 0, 2, 1])), Some(IpAddr::from([192, 0, 2, 2])));
        assert_eq!(
            [limiter.refuse(key, a, now), limiter.refuse(key, a, now), limiter.refuse(key, a, now)],
            [false, false, true]
        );
        assert!(limiter.refused_too_often(key, a, now));
        assert!(!limiter.refused_too_often(key, b, now), "another client of the key");
        assert!(!limiter.refused_too_often(other_key, a, now), "another key of the client");
        assert!(!limiter.client_over_limit(a, now), "refusals are not the client's wrong secrets");
        assert!(!limiter.refused_too_often(key, a, now + Duration::from_secs(61)));
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = FailureLimiter::new(Duration::from_secs(60), 3, 5, 256);
        let now = Instant::now();
        for n in 0..20_000u32 {
            let mut digest = [0u8; 32];
            digest[..4].copy_from_slice(&n.to_le_bytes());
            let ip = IpAddr::from(n.to_be_bytes());
            limiter.fail(digest, &LookupId::from_stored(format!("{n:012}")), Some(ip), now);
        }
        assert!(limiter.len() <= 2 * limiter.counts.capacity(), "{}", limiter.len());
    }
}
