//! Usage of keys: what a verification counts as, the buckets usage is kept
//! in, and the ranges admins may ask for.
//!
//! Every verification attributable to a key counts once, in the UTC hour it
//! happened, under one [`UsageOutcome`]. Counts are kept by hour for
//! [`HOURLY_RETENTION_DAYS`] and by day for [`DAILY_RETENTION_DAYS`] (both
//! are written as counts arrive, so "rolling up" an hour is dropping it once
//! its day holds it).

use std::net::IpAddr;

use chrono::{DateTime, Duration, DurationRound, Utc};

use crate::Cloud;

/// How long hourly counts are kept and can be asked for.
pub const HOURLY_RETENTION_DAYS: i64 = 35;
/// How long daily counts are kept and can be asked for.
pub const DAILY_RETENTION_DAYS: i64 = 400;
/// The longest range of one `HOUR` series.
pub const MAX_HOURLY_RANGE_DAYS: i64 = 31;
/// The longest range of one `DAY` series.
pub const MAX_DAILY_RANGE_DAYS: i64 = 400;
/// The window of `usage30d` and of the key table's `USAGE_30D` order: the
/// last 30 UTC days, today included.
pub const RECENT_USAGE_DAYS: i64 = 30;
/// The most characters of a user agent kept.
pub const MAX_USER_AGENT_CHARS: usize = 200;
/// How long the receipt of a usage report is kept: a report retried within
/// this long after it was first received is counted once.
pub const USAGE_RECEIPT_RETENTION_HOURS: i64 = 24;
/// The most characters of an `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// A client's `Idempotency-Key` for a usage report: 1 to
/// [`MAX_IDEMPOTENCY_KEY_CHARS`] visible ASCII characters (a UUID, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key, or what is wrong with `raw`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_IDEMPOTENCY_KEY_CHARS || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "`Idempotency-Key` must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters (a UUID, say)."
            ));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::string_enum! {
    /// What one verification of a key counted as.
    pub enum UsageOutcome {
        /// The key's current secret verified.
        Valid = "VALID",
        /// The secret a rotation replaced verified, during its overlap.
        ValidPreviousSecret = "VALID_PREVIOUS_SECRET",
        /// The right secret of a disabled key.
        Disabled = "DISABLED",
        /// The right secret of an expired key, or a previous secret past its overlap.
        Expired = "EXPIRED",
        /// The right secret of a key reported leaked.
        Compromised = "COMPROMISED",
        /// The right secret of a key whose owner is inactive.
        OwnerInactive = "OWNER_INACTIVE",
        /// A working key whose restrictions (cloud, address or permissions) refused the request.
        Forbidden = "FORBIDDEN",
        /// A working key refused because its presenter was refused too often.
        RateLimited = "RATE_LIMITED",
        /// A working key over one of its (or its owner's) rate limits.
        RateLimitExceeded = "RATE_LIMIT_EXCEEDED",
        /// A working key without enough credits.
        UsageExceeded = "USAGE_EXCEEDED",
    }
}

impl UsageOutcome {
    /// Whether the verification succeeded.
    pub fn is_valid(self) -> bool {
        matches!(self, UsageOutcome::Valid | UsageOutcome::ValidPreviousSecret)
    }

    /// The outcomes that are successful verifications, as stored.
    pub const VALID_CODES: [&'static str; 2] = ["VALID", "VALID_PREVIOUS_SECRET"];
}

crate::string_enum! {
    /// The width of a usage bucket.
    pub enum Granularity {
        /// One UTC hour.
        Hour = "hour",
        /// One UTC day.
        Day = "day",
    }
}

impl Granularity {
    /// The bucket's width.
    pub fn width(self) -> Duration {
        match self {
            Granularity::Hour => Duration::hours(1),
            Granularity::Day => Duration::days(1),
        }
    }

    /// The width in seconds, as stored.
    pub fn seconds(self) -> i32 {
        match self {
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        }
    }

    /// The start of the bucket holding `at`.
    pub fn bucket_of(self, at: DateTime<Utc>) -> DateTime<Utc> {
        at.duration_trunc(self.width()).unwrap_or(at)
    }

    fn retention(self) -> Duration {
        match self {
            Granularity::Hour => Duration::days(HOURLY_RETENTION_DAYS),
            Granularity::Day => Duration::days(DAILY_RETENTION_DAYS),
        }
    }

    fn max_range(self) -> Duration {
        match self {
            Granularity::Hour => Duration::days(MAX_HOURLY_RANGE_DAYS),
            Granularity::Day => Duration::days(MAX_DAILY_RANGE_DAYS),
        }
    }

    /// The oldest bucket start still kept at `now`: rows before it may be dropped.
    pub fn kept_since(self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.bucket_of(now - self.retention())
    }
}

/// A range of buckets a series is asked for: aligned to its granularity,
/// `from` inclusive and `to` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageRange {
    /// The first bucket's start.
    pub from: DateTime<Utc>,
    /// The end of the last bucket.
    pub to: DateTime<Utc>,
    /// The buckets' width.
    pub granularity: Granularity,
}

impl UsageRange {
    /// The range of buckets from the one holding `from` up to the one holding
    /// the instant before `to`, checked against the limits at `now`; the
    /// error is a message naming the limit broken.
    pub fn new(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        if to <= from {
            return Err("`to` must be after `from`.".into());
        }
        let unit = match granularity {
            Granularity::Hour => "HOUR",
            Granularity::Day => "DAY",
        };
        if to - from > granularity.max_range() {
            let days = granularity.max_range().num_days();
            return Err(format!("A range by {unit} covers at most {days} days."));
        }
        let start = granularity.bucket_of(from);
        if start < granularity.kept_since(now) {
            let days = granularity.retention().num_days();
            return Err(format!("Usage by {unit} is kept for {days} days: `from` is before that."));
        }
        let last = granularity.bucket_of(to - Duration::microseconds(1));
        Ok(UsageRange { from: start, to: last + granularity.width(), granularity })
    }

    /// The last [`RECENT_USAGE_DAYS`] UTC days at `now`, today included.
    pub fn recent(now: DateTime<Utc>) -> Self {
        let today = Granularity::Day.bucket_of(now);
        UsageRange {
            from: today - Duration::days(RECENT_USAGE_DAYS - 1),
            to: today + Duration::days(1),
            granularity: Granularity::Day,
        }
    }

    /// The start of every bucket, in order.
    pub fn starts(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let width = self.granularity.width();
        std::iter::successors(Some(self.from), move |s| Some(*s + width)).take_while(|s| *s < self.to)
    }
}

/// A count of verifications of one outcome in one bucket, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    /// The bucket's start.
    pub start: DateTime<Utc>,
    /// The outcome's code (a [`UsageOutcome`]).
    pub outcome: String,
    /// How many.
    pub count: u64,
}

/// One bucket of a series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageBucket {
    /// Its start.
    pub start: DateTime<Utc>,
    /// Successful verifications.
    pub valid: u64,
    /// Refused verifications.
    pub refused: u64,
    /// Every outcome counted in it, by code (in code order).
    pub by_outcome: Vec<(String, u64)>,
}

/// A contiguous series of buckets, empty ones included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageSeries {
    /// Successful verifications in the whole range.
    pub valid: u64,
    /// Refused verifications in the whole range.
    pub refused: u64,
    /// One bucket per granule of the range.
    pub buckets: Vec<UsageBucket>,
}

impl UsageSeries {
    /// The series over `range` of the stored `rows` (rows outside it are ignored).
    pub fn of(range: &UsageRange, rows: &[UsageRow]) -> Self {
        let mut buckets: Vec<UsageBucket> =
            range.starts().map(|start| UsageBucket { start, valid: 0, refused: 0, by_outcome: Vec::new() }).collect();
        for row in rows {
            let Some(bucket) = buckets.iter_mut().find(|b| b.start == row.start) else { continue };
            if UsageOutcome::VALID_CODES.contains(&row.outcome.as_str()) {
                bucket.valid += row.count;
            } else {
                bucket.refused += row.count;
            }
            match bucket.by_outcome.iter_mut().find(|(code, _)| *code == row.outcome) {
                Some((_, count)) => *count += row.count,
                None => bucket.by_outcome.push((row.outcome.clone(), row.count)),
            }
        }
        for bucket in &mut buckets {
            bucket.by_outcome.sort();
        }
        UsageSeries {
            valid: buckets.iter().map(|b| b.valid).sum(),
            refused: buckets.iter().map(|b| b.refused).sum(),
            buckets,
        }
    }
}

/// The latest successful verification of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastUse {
    /// When.
    pub at: DateTime<Utc>,
    /// For which cloud, when the request said.
    pub cloud: Option<Cloud>,
    /// From which address (by the trusted-proxy rule), when known.
    pub client_address: Option<IpAddr>,
    /// The client's `User-Agent`, cleaned by [`clean_user_agent`].
    pub user_agent: Option<String>,
}

/// A user agent as kept: at most [`MAX_USER_AGENT_CHARS`] characters, control
/// characters replaced by U+FFFD; none when empty.
pub fn clean_user_agent(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .trim()
        .chars()
        .take(MAX_USER_AGENT_CHARS)
        .map(|c| if c.is_control() { char::REPLACEMENT_CHARACTER } else { c })
        .collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
    }

    #[test]
    fn ranges_align_to_buckets_and_keep_their_limits() {
        let now = at(20, 12, 0);
        let r = UsageRange::new(at(19, 10, 30), at(19, 13, 0), Granularity::Hour, now).unwrap();
        assert_eq!((r.from, r.to), (at(19, 10, 0), at(19, 13, 0)));
        assert_eq!(r.starts().count(), 3);
        let r = UsageRange::new(at(19, 10, 30), at(19, 13, 1), Granularity::Hour, now).unwrap();
        assert_eq!(r.to, at(19, 14, 0), "a partial last hour is a bucket");
        assert!(UsageRange::new(at(19, 1, 0), at(19, 1, 0), Granularity::Hour, now).unwrap_err().contains("after"));
        assert!(UsageRange::new(at(19, 2, 0), at(19, 1, 0), Granularity::Day, now).is_err());
        let long = UsageRange::new(now - Duration::days(32), now, Granularity::Hour, now).unwrap_err();
        assert!(long.contains("31 days"), "{long}");
        let old = UsageRange::new(now - Duration::days(36), now - Duration::days(30), Granularity::Hour, now);
        assert!(old.unwrap_err().contains("35 days"));
        let decade = UsageRange::new(now - Duration::days(3650), now, Granularity::Day, now).unwrap_err();
        assert!(decade.contains("400 days"), "{decade}");
        assert!(UsageRange::new(now - Duration::days(399), now, Granularity::Day, now).is_ok());
        let recent = UsageRange::recent(now);
        assert_eq!((recent.starts().count(), recent.to), (30, at(21, 0, 0)));
    }

    #[test]
    fn a_series_is_contiguous_and_splits_valid_from_refused() {
        let now = at(20, 12, 0);
        let range = UsageRange::new(at(20, 8, 0), at(20, 12, 0), Granularity::Hour, now).unwrap();
        let row = |h, outcome: &str, count| UsageRow { start: at(20, h, 0), outcome: outcome.into(), count };
        let rows = [row(9, "VALID", 5), row(9, "FORBIDDEN", 2), row(9, "VALID_PREVIOUS_SECRET", 1), row(3, "VALID", 7)];
        let series = UsageSeries::of(&range, &rows);
        assert_eq!(series.buckets.len(), 4);
        assert_eq!((series.valid, series.refused), (6, 2));
        let nine = &series.buckets[1];
        assert_eq!((nine.start, nine.valid, nine.refused), (at(20, 9, 0), 6, 2));
        assert_eq!(nine.by_outcome[0], ("FORBIDDEN".to_owned(), 2));
        assert!(series.buckets[0].by_outcome.is_empty());
    }

    #[test]
    fn user_agents_are_cut_and_cleaned() {
        let long = format!("agent\u{0}\u{7}{}", "x".repeat(20_000));
        let kept = clean_user_agent(&long).unwrap();
        assert_eq!(kept.chars().count(), MAX_USER_AGENT_CHARS);
        assert!(kept.starts_with("agent\u{fffd}\u{fffd}x"));
        assert_eq!(clean_user_agent("  "), None);
    }

    #[test]
    fn idempotency_keys_are_short_visible_ascii() {
        assert_eq!(IdempotencyKey::parse("6f1c-report").unwrap().as_str(), "6f1c-report");
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_IDEMPOTENCY_KEY_CHARS)).is_ok());
        for bad in ["", " ", "a b", "caf\u{e9}", "line\n"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_IDEMPOTENCY_KEY_CHARS + 1)).is_err());
    }

    #[test]
    fn outcomes_parse_from_their_codes() {
        for outcome in UsageOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<UsageOutcome>().ok(), Some(*outcome));
        }
        assert!(UsageOutcome::ValidPreviousSecret.is_valid() && !UsageOutcome::Forbidden.is_valid());
    }
}
