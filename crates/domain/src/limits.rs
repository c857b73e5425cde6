//! How much a key may be used: rate limits (on a key, and shared by all keys
//! of an owner) and credits with their refills.
//!
//! A rate limit admits `limit` units of cost per fixed window of
//! `period_seconds`, aligned to the Unix epoch (a 60 s window starts on the
//! minute), so every replica and the database agree on a window from the
//! time alone. Credits are spent by cost and never go below zero; a refill
//! sets them to its amount at 00:00 UTC, daily or on a day of the month.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Violation, ViolationCode};

/// The most rate limits on one key (or one owner).
pub const MAX_RATE_LIMITS: usize = 5;
/// The largest `limit` of a rate limit.
pub const MAX_LIMIT: i64 = 1_000_000_000;
/// The longest period of a rate limit: a day.
pub const MAX_PERIOD_SECONDS: i64 = 86_400;
/// The most credits a key holds, and the largest refill or top-up.
pub const MAX_CREDITS: i64 = 1_000_000_000;
/// The largest cost of one request.
pub const MAX_COST: i64 = 1_000;
/// Credits below this share (in percent) of the last allotment are low: the
/// owner is told once per refill period.
pub const LOW_CREDITS_PERCENT: i64 = 10;

/// What one request spends of every limit and of the credits (0 checks
/// without spending). Defaults to 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost(u32);

impl Default for Cost {
    fn default() -> Self {
        Cost(1)
    }
}

impl Cost {
    /// A cost of 0..=[`MAX_COST`]; `None` otherwise.
    pub fn new(cost: i64) -> Option<Cost> {
        (0..=MAX_COST).contains(&cost).then_some(Cost(cost as u32))
    }

    /// The cost as a count.
    pub fn get(self) -> u64 {
        u64::from(self.0)
    }
}

/// A refused limit or credit input: the field (relative to the limit or the
/// credits input) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitProblem {
    /// `name`, `limit`, `periodSeconds`, `remaining`, `refill.amount`,
    /// `refill.day`, `amount`, or `""` for the list as a whole.
    pub field: &'static str,
    /// What is wrong.
    pub violation: Violation,
}

fn problem(field: &'static str, message: impl Into<String>) -> LimitProblem {
    LimitProblem { field, violation: Violation::new(ViolationCode::Invalid, message) }
}

/// One rate limit: `limit` units of cost per `period_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Unique among the limits it is set with (`[a-z0-9_-]{1,32}`).
    pub name: String,
    /// Units admitted per window, 1..=[`MAX_LIMIT`].
    pub limit: u64,
    /// The window, 1..=[`MAX_PERIOD_SECONDS`].
    pub period_seconds: u32,
}

/// The window of a rate limit that contains an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Its start, in seconds since the Unix epoch (a multiple of the period).
    pub start: i64,
    /// When the next window starts (and the limit is whole again).
    pub resets_at: DateTime<Utc>,
}

impl RateLimit {
    /// The window containing `now`.
    pub fn window(&self, now: DateTime<Utc>) -> Window {
        let period = i64::from(self.period_seconds.max(1));
        let start = now.timestamp().div_euclid(period) * period;
        let resets_at = Utc.timestamp_opt(start + period, 0).single().unwrap_or(now);
        Window { start, resets_at }
    }

    /// How much of a window one replica takes from the shared count at a
    /// time: a 40th of the limit (at least 1). Replicas that hold unused
    /// leases when a window ends (half a lease and the one taken ahead at
    /// most) leave at most (replicas − 1) × 1.5 × ⌈limit/40⌉ of it unspent;
    /// a limit of 40 or less leases one unit at a time and is exact.
    pub fn lease_size(&self) -> u64 {
        self.limit.div_ceil(40).max(1)
    }
}

/// The rate limits of a key or an owner, checked: at most
/// [`MAX_RATE_LIMITS`], names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateLimits(Vec<RateLimit>);

impl RateLimits {
    /// Checks limits as given (`name`, `limit`, `period_seconds`); every
    /// problem is reported, with the index of its limit.
    pub fn parse(given: &[(String, i64, i64)]) -> Result<RateLimits, Vec<(usize, LimitProblem)>> {
        let mut problems = Vec::new();
        if given.len() > MAX_RATE_LIMITS {
            problems.push((0, problem("", format!("A key or owner has at most {MAX_RATE_LIMITS} rate limits."))));
        }
        let mut limits = Vec::with_capacity(given.len());
        for (index, (name, limit, period)) in given.iter().enumerate() {
            let name_ok = (1..=32).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            if !name_ok {
                problems.push((index, problem("name", "A limit's name is 1 to 32 of a-z, 0-9, _ and -.")));
            } else if given[..index].iter().any(|(other, _, _)| other == name) {
                problems.push((index, problem("name", format!("Two limits are named {name:?}."))));
            }
            if !(1..=MAX_LIMIT).contains(limit) {
                problems.push((index, problem("limit", format!("A limit is 1 to {MAX_LIMIT}."))));
            }
            if !(1..=MAX_PERIOD_SECONDS).contains(period) {
                problems
                    .push((index, problem("periodSeconds", format!("A period is 1 to {MAX_PERIOD_SECONDS} seconds."))));
            }
            if problems.is_empty() {
                limits.push(RateLimit { name: name.clone(), limit: *limit as u64, period_seconds: *period as u32 });
            }
        }
        if problems.is_empty() { Ok(RateLimits(limits)) } else { Err(problems) }
    }

    /// The limits, in the order they were set.
    pub fn as_slice(&self) -> &[RateLimit] {
        &self.0
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stored form (JSON), `None` for no limits.
    pub fn to_stored(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| serde_json::to_string(&self.0).unwrap_or_default())
    }

    /// Reads the stored form; an unreadable value is no limits (it was
    /// written by [`Self::to_stored`]).
    pub fn from_stored(stored: Option<&str>) -> RateLimits {
        RateLimits(stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default())
    }

    /// For people (mail, audit): "100 per 60 s (burst), 10000 per 86400 s (daily)".
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "no rate limits".into();
        }
        let parts: Vec<String> =
            self.0.iter().map(|l| format!("{} per {} s ({})", l.limit, l.period_seconds, l.name)).collect();
        parts.join(", ")
    }
}

crate::string_enum! {
    /// How often credits are refilled.
    pub enum RefillInterval {
        /// Every day at 00:00 UTC.
        Daily = "DAILY",
        /// On a day of every month at 00:00 UTC.
        Monthly = "MONTHLY",
    }
}

/// A refill: credits are set to `amount` at each refill time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CreditRefill {
    /// What the credits are set to, 1..=[`MAX_CREDITS`].
    pub amount: i64,
    /// Daily or monthly.
    pub interval: RefillInterval,
    /// For a monthly refill, the day of the month (1..=31; the last day of
    /// a shorter month). None for daily.
    pub day: Option<u32>,
}

impl CreditRefill {
    /// Checks a refill as given; a monthly refill without a day refills on the 1st.
    pub fn parse(amount: i64, interval: RefillInterval, day: Option<i64>) -> Result<CreditRefill, Vec<LimitProblem>> {
        let mut problems = Vec::new();
        if !(1..=MAX_CREDITS).contains(&amount) {
            problems.push(problem("refill.amount", format!("A refill is 1 to {MAX_CREDITS} credits.")));
        }
        let day = match (interval, day) {
            (RefillInterval::Daily, None) => None,
            (RefillInterval::Daily, Some(_)) => {
                problems.push(problem("refill.day", "A daily refill has no day."));
                None
            }
            (RefillInterval::Monthly, None) => Some(1),
            (RefillInterval::Monthly, Some(day)) if (1..=31).contains(&day) => Some(day as u32),
            (RefillInterval::Monthly, Some(_)) => {
                problems.push(problem("refill.day", "A monthly refill's day is 1 to 31."));
                None
            }
        };
        if problems.is_empty() { Ok(CreditRefill { amount, interval, day }) } else { Err(problems) }
    }

    /// The latest refill time at or before `now`.
    pub fn latest_at_or_before(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let today = now.date_naive();
        let date = match self.interval {
            RefillInterval::Daily => today,
            RefillInterval::Monthly => {
                let day = self.day.unwrap_or(1);
                let this_month = day_in_month(today.year(), today.month(), day);
                if this_month <= today {
                    this_month
                } else {
                    let (year, month) =
                        if today.month() == 1 { (today.year() - 1, 12) } else { (today.year(), today.month() - 1) };
                    day_in_month(year, month, day)
                }
            }
        };
        date.and_hms_opt(0, 0, 0).map_or(now, |t| t.and_utc())
    }
}

impl CreditRefill {
    /// The first refill time after `at`.
    pub fn next_after(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        // The latest refill at or before a time 32 days on is after `at`
        // (refills are at most a month apart), and walking back from it by
        // days finds the first one.
        let mut next = self.latest_at_or_before(at + Duration::days(32));
        loop {
            let earlier = self.latest_at_or_before(next - Duration::seconds(1));
            if earlier <= at {
                return next;
            }
            next = earlier;
        }
    }
}

/// `day` of a month, or its last day when the month is shorter.
fn day_in_month(year: i32, month: u32, day: u32) -> NaiveDate {
    (1..=day).rev().find_map(|d| NaiveDate::from_ymd_opt(year, month, d)).unwrap_or(NaiveDate::MIN)
}

/// A key's credits as stored: what is left to take (on several replicas,
/// what no replica holds yet), and when they were set or last refilled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCredits {
    /// Credits not yet spent (or held by a replica).
    pub remaining: i64,
    /// What the credits were set or refilled to, plus top-ups since: "low"
    /// is measured against it.
    pub allotment: i64,
    /// The refill, if any.
    pub refill: Option<CreditRefill>,
    /// When the credits were last set or refilled: the start of the period.
    pub since: DateTime<Utc>,
    /// When they were last refilled; None before the first refill.
    pub last_refilled_at: Option<DateTime<Utc>>,
    /// Bumped each time the credits are set or refilled: what a replica
    /// holds of an older generation is void.
    pub generation: i32,
    /// When the owner was last told the credits are low.
    pub low_mailed_at: Option<DateTime<Utc>>,
    /// When the owner was last told the credits are spent.
    pub empty_mailed_at: Option<DateTime<Utc>>,
}

impl KeyCredits {
    /// Credits set to `remaining` at `now`.
    pub fn set(remaining: i64, refill: Option<CreditRefill>, now: DateTime<Utc>, generation: i32) -> KeyCredits {
        KeyCredits {
            remaining,
            allotment: remaining,
            refill,
            since: now,
            last_refilled_at: None,
            generation,
            low_mailed_at: None,
            empty_mailed_at: None,
        }
    }

    /// The refill due at `now`, if one fell due since the credits were set
    /// or last refilled.
    pub fn due_refill(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let refill = self.refill?;
        let at = refill.latest_at_or_before(now);
        (at > self.since).then_some(at)
    }

    /// The credits as they are at `now`: refilled when a refill is due.
    pub fn as_of(&self, now: DateTime<Utc>) -> KeyCredits {
        match (self.due_refill(now), self.refill) {
            (Some(at), Some(refill)) => KeyCredits {
                remaining: refill.amount,
                allotment: refill.amount,
                since: at,
                last_refilled_at: Some(at),
                generation: self.generation + 1,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// Whether `remaining` is below [`LOW_CREDITS_PERCENT`] of the allotment.
    pub fn is_low(&self, remaining: i64) -> bool {
        remaining * 100 < self.allotment * LOW_CREDITS_PERCENT
    }

    /// Whether the owner should be told now that the credits are low (once per period).
    pub fn low_notice_due(&self) -> bool {
        self.remaining > 0 && self.is_low(self.remaining) && self.low_mailed_at.is_none_or(|at| at < self.since)
    }

    /// Whether the owner should be told now that the credits are spent (once per period).
    pub fn empty_notice_due(&self) -> bool {
        self.remaining == 0 && self.empty_mailed_at.is_none_or(|at| at < self.since)
    }

    /// How much a replica takes from the stored credits at a time for a
    /// request of `cost`: a 20th of what is left, at most 1,000 (at least
    /// the cost, at most what is left). A replica killed holding leases
    /// loses at most one and a half of them.
    pub fn lease_size(&self, cost: u64) -> u64 {
        let left = self.remaining.max(0) as u64;
        (left / 20).clamp(1, 1_000).max(cost).min(left)
    }

    /// The credits given (set, refill, top-up) checked: 0..=[`MAX_CREDITS`].
    pub fn check_remaining(remaining: i64) -> Result<i64, LimitProblem> {
        if (0..=MAX_CREDITS).contains(&remaining) {
            Ok(remaining)
        } else {
            Err(problem("remaining", format!("Credits are 0 to {MAX_CREDITS}.")))
        }
    }

    /// A top-up amount checked: 1..=[`MAX_CREDITS`].
    pub fn check_top_up(amount: i64) -> Result<i64, LimitProblem> {
        if (1..=MAX_CREDITS).contains(&amount) {
            Ok(amount)
        } else {
            Err(problem("amount", format!("A top-up is 1 to {MAX_CREDITS} credits.")))
        }
    }

    /// For people (mail, audit).
    pub fn describe(credits: Option<&KeyCredits>) -> String {
        let Some(credits) = credits else { return "unlimited credits".into() };
        let refill = match credits.refill {
            None => String::new(),
            Some(CreditRefill { amount, interval: RefillInterval::Daily, .. }) => {
                format!(", refilled to {amount} daily")
            }
            Some(CreditRefill { amount, day, .. }) => {
                format!(", refilled to {amount} monthly on day {}", day.unwrap_or(1))
            }
        };
        format!("{} credits{refill}", credits.remaining)
    }
}

/// The stored form of a refill (JSON).
pub fn refill_to_stored(refill: Option<&CreditRefill>) -> Option<String> {
    refill.map(|r| serde_json::to_string(r).unwrap_or_default())
}

/// Reads a stored refill; unreadable is none.
pub fn refill_from_stored(stored: Option<&str>) -> Option<CreditRefill> {
    stored.and_then(|s| serde_json::from_str(s).ok())
}

/// How long until `at`, in whole seconds rounded up (at least 1): what
/// `Retry-After` and a reset say.
pub fn seconds_until(at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    let left = at - now;
    (left + Duration::milliseconds(999)).num_seconds().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn limits_are_checked_whole() {
        let ok = RateLimits::parse(&[("burst".into(), 10, 1), ("daily_2".into(), 1_000_000_000, 86_400)]).unwrap();
        assert_eq!(ok.as_slice()[1].limit, 1_000_000_000);
        assert_eq!(RateLimits::from_stored(ok.to_stored().as_deref()), ok);
        assert_eq!(RateLimits::parse(&[]).unwrap().to_stored(), None);
        let bad = |given: &[(String, i64, i64)]| RateLimits::parse(given).unwrap_err();
        let fields = |p: Vec<(usize, LimitProblem)>| p.into_iter().map(|(i, p)| (i, p.field)).collect::<Vec<_>>();
        assert_eq!(fields(bad(&[("a".into(), 0, 1)])), [(0, "limit")]);
        assert_eq!(fields(bad(&[("a".into(), 1_000_000_001, 1)])), [(0, "limit")]);
        assert_eq!(fields(bad(&[("a".into(), 1, 0)])), [(0, "periodSeconds")]);
        assert_eq!(fields(bad(&[("a".into(), 1, 86_401)])), [(0, "periodSeconds")]);
        assert_eq!(fields(bad(&[("A".into(), 1, 1)])), [(0, "name")]);
        assert_eq!(fields(bad(&[("".into(), 1, 1)])), [(0, "name")]);
        assert_eq!(fields(bad(&[("a".repeat(33), 1, 1)])), [(0, "name")]);
        assert_eq!(fields(bad(&[("a".into(), 1, 1), ("a".into(), 2, 2)])), [(1, "name")]);
        let six: Vec<_> = (0..6).map(|n| (format!("l{n}"), 1, 1)).collect();
        assert_eq!(fields(bad(&six)), [(0, "")]);
    }

    #[test]
    fn windows_are_aligned_to_the_period() {
        let limit = RateLimit { name: "m".into(), limit: 10, period_seconds: 60 };
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 59).unwrap();
        assert_eq!(limit.window(now).start, now.timestamp() - 59);
        assert_eq!(limit.window(now).resets_at, Utc.with_ymd_and_hms(2026, 3, 1, 10, 1, 0).unwrap());
        assert_eq!(limit.lease_size(), 1);
        assert_eq!(RateLimit { limit: 1000, ..limit }.lease_size(), 25);
    }

    #[test]
    fn monthly_refills_fall_on_the_last_day_of_shorter_months() {
        let refill = CreditRefill::parse(100, RefillInterval::Monthly, Some(31)).unwrap();
        assert_eq!(refill.latest_at_or_before(at(2026, 3, 1, 5)), at(2026, 2, 28, 0));
        assert_eq!(refill.latest_at_or_before(at(2026, 3, 31, 0)), at(2026, 3, 31, 0));
        assert_eq!(refill.latest_at_or_before(at(2026, 1, 15, 0)), at(2025, 12, 31, 0));
        let leap = CreditRefill::parse(100, RefillInterval::Monthly, Some(30)).unwrap();
        assert_eq!(leap.latest_at_or_before(at(2028, 3, 1, 0)), at(2028, 2, 29, 0));
        let daily = CreditRefill::parse(5, RefillInterval::Daily, None).unwrap();
        assert_eq!(daily.latest_at_or_before(at(2026, 3, 1, 23)), at(2026, 3, 1, 0));
        for day in [0, 32, -1] {
            assert_eq!(CreditRefill::parse(1, RefillInterval::Monthly, Some(day)).unwrap_err()[0].field, "refill.day");
        }
        assert_eq!(CreditRefill::parse(1, RefillInterval::Daily, Some(3)).unwrap_err()[0].field, "refill.day");
        assert_eq!(CreditRefill::parse(0, RefillInterval::Daily, None).unwrap_err()[0].field, "refill.amount");
        assert_eq!(CreditRefill::parse(100, RefillInterval::Monthly, None).unwrap().day, Some(1));
        assert_eq!(refill.next_after(at(2026, 1, 31, 0)), at(2026, 2, 28, 0));
        assert_eq!(refill.next_after(at(2026, 1, 30, 23)), at(2026, 1, 31, 0));
        assert_eq!(daily.next_after(at(2026, 3, 1, 0)), at(2026, 3, 2, 0));
    }

    #[test]
    fn a_due_refill_sets_the_credits_once_per_period() {
        let refill = CreditRefill::parse(100, RefillInterval::Daily, None).unwrap();
        let credits = KeyCredits { remaining: 3, ..KeyCredits::set(100, Some(refill), at(2026, 3, 1, 10), 0) };
        assert_eq!(credits.due_refill(at(2026, 3, 1, 23)), None);
        let next = credits.as_of(at(2026, 3, 2, 1));
        assert_eq!((next.remaining, next.since, next.generation), (100, at(2026, 3, 2, 0), 1));
        assert_eq!(next.last_refilled_at, Some(at(2026, 3, 2, 0)));
        assert_eq!(next.due_refill(at(2026, 3, 2, 23)), None);
    }

    #[test]
    fn low_and_empty_are_told_once_per_period() {
        let mut credits = KeyCredits::set(100, None, at(2026, 3, 1, 0), 0);
        assert!(!credits.low_notice_due());
        credits.remaining = 9;
        assert!(credits.low_notice_due());
        credits.low_mailed_at = Some(at(2026, 3, 1, 1));
        assert!(!credits.low_notice_due());
        credits.remaining = 0;
        assert!(credits.empty_notice_due() && !credits.low_notice_due());
        assert_eq!(credits.lease_size(1), 0, "nothing left to lease");
        credits.remaining = 1_000_000;
        assert_eq!(credits.lease_size(1), 1_000);
        credits.remaining = 100;
        assert_eq!((credits.lease_size(1), credits.lease_size(30)), (5, 30));
        assert_eq!(Cost::new(1_001), None);
        assert_eq!(Cost::new(-1), None);
        assert_eq!(Cost::new(0).map(Cost::get), Some(0));
        assert_eq!(Cost::default().get(), 1);
    }
}
