//! Usage of keys as GraphQL shows it: series of buckets and last uses.

use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use latchkey_domain::usage;

use crate::cloud::GqlCloud;

/// The width of a usage bucket.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "latchkey_domain::usage::Granularity")]
pub enum UsageGranularity {
    /// One UTC hour; a range covers at most 31 days, within the last 35.
    Hour,
    /// One UTC day; a range covers at most 400 days, within the last 400.
    Day,
}

/// A count past `Int`'s range is shown as its largest value.
fn int(count: u64) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// Verifications of one outcome.
#[derive(SimpleObject, Clone, Debug)]
pub struct UsageCount {
    /// `VALID`, `VALID_PREVIOUS_SECRET` (the secret a rotation replaced, during
    /// its overlap), or the refusal: `DISABLED`, `EXPIRED`, `COMPROMISED`,
    /// `OWNER_INACTIVE`, `FORBIDDEN` (cloud, address or permissions),
    /// `RATE_LIMITED` (a presenter of failing keys), `RATE_LIMIT_EXCEEDED`
    /// (over one of the key's or its owner's rate limits), `USAGE_EXCEEDED`
    /// (not enough credits).
    pub outcome: String,
    /// How many.
    pub count: i32,
}

/// One hour or day of a series.
#[derive(SimpleObject, Clone, Debug)]
pub struct UsageBucket {
    /// Its start (UTC, aligned to its width).
    pub start: DateTime<Utc>,
    /// Successful verifications (the previous secret's included).
    pub valid: i32,
    /// Refused verifications that named the key.
    pub refused: i32,
    /// Every outcome counted in it.
    pub by_outcome: Vec<UsageCount>,
}

/// Verifications over a range, bucket by bucket (empty buckets included).
#[derive(SimpleObject, Clone, Debug)]
pub struct UsageSeries {
    /// Successful verifications in the range.
    pub valid: i32,
    /// Refused verifications in the range.
    pub refused: i32,
    /// Contiguous buckets from `from` (inclusive) to `to` (exclusive).
    pub buckets: Vec<UsageBucket>,
}

impl From<usage::UsageSeries> for UsageSeries {
    fn from(series: usage::UsageSeries) -> Self {
        UsageSeries {
            valid: int(series.valid),
            refused: int(series.refused),
            buckets: series
                .buckets
                .into_iter()
                .map(|b| UsageBucket {
                    start: b.start,
                    valid: int(b.valid),
                    refused: int(b.refused),
                    by_outcome: b
                        .by_outcome
                        .into_iter()
                        .map(|(outcome, count)| UsageCount { outcome, count: int(count) })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// The latest successful verification of a key (to the second: the first
/// of the latest second it was used in).
#[derive(SimpleObject, Clone, Debug)]
pub struct KeyLastUse {
    /// When.
    pub at: DateTime<Utc>,
    /// The cloud the request was for; null when it did not say.
    pub cloud: Option<GqlCloud>,
    /// The client's address (by the trusted-proxy rule, or as the gateway
    /// reported it); null when unknown.
    pub client_address: Option<String>,
    /// The client's `User-Agent`, at most 200 characters; null when none was sent.
    pub user_agent: Option<String>,
}

impl From<&usage::LastUse> for KeyLastUse {
    fn from(last: &usage::LastUse) -> Self {
        KeyLastUse {
            at: last.at,
            cloud: last.cloud.map(GqlCloud::from),
            client_address: last.client_address.map(|a| a.to_string()),
            user_agent: last.user_agent.clone(),
        }
    }
}
