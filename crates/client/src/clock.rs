//! The clock of cache deadlines and of the trust window: the kernel's
//! coarse monotonic clock, read in a few nanoseconds (`Instant::now` costs
//! 30 on a cached verification of under 200) and ticking every few
//! milliseconds, precise enough for a TTL and `stale_after`.

use std::time::Duration;

/// A point of the coarse monotonic clock.
pub(crate) type Tick = coarsetime::Instant;

/// Now. (Not `coarsetime::Instant::now`, which also writes a global every
/// core would share.)
pub(crate) fn now() -> Tick {
    coarsetime::Instant::now_without_cache_update()
}

/// `duration` after `tick`.
pub(crate) fn after(tick: Tick, duration: Duration) -> Tick {
    tick.saturating_add(coarsetime::Duration::from(duration))
}
