//! Rate limits and credits as GraphQL shows and takes them.

use async_graphql::{Enum, InputObject, MaybeUndefined, SimpleObject};
use chrono::{DateTime, Utc};
use latchkey_app::keys::{CreditRefillInput as AppRefill, KeyCreditsInput as AppCredits, RateLimitInput as AppLimit};
use latchkey_domain::limits::{KeyCredits, RateLimits};

/// A count past `Int`'s range is shown as its largest value.
fn int(n: impl TryInto<i32>) -> i32 {
    n.try_into().unwrap_or(i32::MAX)
}

/// A rate limit: `limit` units of cost per fixed window of `periodSeconds`,
/// aligned to the Unix epoch (a 60-second window starts on the minute).
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Unique among the limits it was set with (`[a-z0-9_-]{1,32}`).
    pub name: String,
    /// Units of cost admitted per window (1 to 1,000,000,000).
    pub limit: i32,
    /// The window, in seconds (1 to 86,400).
    pub period_seconds: i32,
}

/// The limits as GraphQL lists them.
pub fn rate_limits(limits: &RateLimits) -> Vec<RateLimit> {
    limits
        .as_slice()
        .iter()
        .map(|l| RateLimit { name: l.name.clone(), limit: int(l.limit), period_seconds: int(l.period_seconds) })
        .collect()
}

/// A rate limit to set. At most 5, names unique.
#[derive(InputObject, Clone, Debug)]
pub struct RateLimitInput {
    /// `[a-z0-9_-]{1,32}`, unique among the limits given with it.
    pub name: String,
    /// Units of cost per window: 1 to 1,000,000,000.
    pub limit: i32,
    /// The window in seconds: 1 to 86,400.
    pub period_seconds: i32,
}

impl From<RateLimitInput> for AppLimit {
    fn from(input: RateLimitInput) -> Self {
        AppLimit { name: input.name, limit: input.limit.into(), period_seconds: input.period_seconds.into() }
    }
}

/// The limits given, for a command.
pub fn limit_inputs(given: Vec<RateLimitInput>) -> Vec<AppLimit> {
    given.into_iter().map(Into::into).collect()
}

/// How often credits are refilled.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "CreditRefillInterval", remote = "latchkey_domain::limits::RefillInterval")]
pub enum GqlRefillInterval {
    /// Every day at 00:00 UTC.
    Daily,
    /// On `day` of every month at 00:00 UTC (the last day of a shorter month).
    Monthly,
}

/// A refill: the credits are set to `amount` at each refill time.
#[derive(SimpleObject, Clone, Debug)]
pub struct CreditRefill {
    /// What the credits are set to.
    pub amount: i32,
    /// Daily or monthly.
    pub interval: GqlRefillInterval,
    /// For a monthly refill, the day of the month (1 to 31); null for daily.
    pub day: Option<i32>,
}

/// A key's credits: every verification spends its cost; a key without
/// enough is refused with `USAGE_EXCEEDED`.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "KeyCredits")]
pub struct KeyCreditsView {
    /// Credits left (with several replicas: what none of them has spent).
    pub remaining: i32,
    /// The refill, if any.
    pub refill: Option<CreditRefill>,
    /// When the credits were last refilled; null before the first refill.
    pub last_refilled_at: Option<DateTime<Utc>>,
}

impl From<&KeyCredits> for KeyCreditsView {
    fn from(c: &KeyCredits) -> Self {
        KeyCreditsView {
            remaining: int(c.remaining),
            refill: c.refill.map(|r| CreditRefill {
                amount: int(r.amount),
                interval: r.interval.into(),
                day: r.day.map(int),
            }),
            last_refilled_at: c.last_refilled_at,
        }
    }
}

/// A refill to set.
#[derive(InputObject, Clone, Copy, Debug)]
pub struct CreditRefillInput {
    /// What the credits are set to at each refill: 1 to 1,000,000,000.
    pub amount: i32,
    /// Daily or monthly.
    pub interval: GqlRefillInterval,
    /// For a monthly refill, the day of the month: 1 to 31 (default 1). Not
    /// given for a daily refill.
    pub day: Option<i32>,
}

/// Credits to set.
#[derive(InputObject, Clone, Copy, Debug)]
pub struct KeyCreditsInput {
    /// Credits the key has now: 0 to 1,000,000,000.
    pub remaining: i32,
    /// Their refill; omit for none.
    pub refill: Option<CreditRefillInput>,
}

impl From<KeyCreditsInput> for AppCredits {
    fn from(input: KeyCreditsInput) -> Self {
        AppCredits {
            remaining: input.remaining.into(),
            refill: input.refill.map(|r| AppRefill {
                amount: r.amount.into(),
                interval: r.interval.into(),
                day: r.day.map(Into::into),
            }),
        }
    }
}

/// Input of `updateApiKeyLimits`.
#[derive(InputObject, Debug)]
pub struct UpdateApiKeyLimitsInput {
    /// The key.
    pub id: async_graphql::ID,
    /// Its rate limits from now on (`[]`: none); omit to keep them.
    pub rate_limits: Option<Vec<RateLimitInput>>,
    /// Its credits from now on (a new period starts); `null` for unlimited;
    /// omit to keep them.
    pub credits: MaybeUndefined<KeyCreditsInput>,
}

impl From<UpdateApiKeyLimitsInput> for latchkey_app::limits::UpdateLimits {
    fn from(input: UpdateApiKeyLimitsInput) -> Self {
        latchkey_app::limits::UpdateLimits {
            id: input.id.0,
            rate_limits: input.rate_limits.map(limit_inputs),
            credits: match input.credits {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(credits) => Some(Some(credits.into())),
            },
        }
    }
}

/// Input of `addApiKeyCredits`.
#[derive(InputObject, Debug)]
pub struct AddApiKeyCreditsInput {
    /// The key (it must have credits).
    pub id: async_graphql::ID,
    /// Credits to add: 1 to 1,000,000,000.
    pub amount: i32,
}

/// Input of `setOwnerRateLimits`.
#[derive(InputObject, Debug)]
pub struct SetOwnerRateLimitsInput {
    /// The user whose keys share the limits.
    pub owner_id: async_graphql::ID,
    /// The limits all of its keys share from now on (`[]`: none).
    pub rate_limits: Vec<RateLimitInput>,
}
