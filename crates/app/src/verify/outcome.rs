//! What a verification answers, and the wire codes of its refusals.

use latchkey_domain::restrictions::Refusal;

use crate::verify::budgets::{Allowance, LimitReading};
use crate::verify::cache::VerifiedKey;

/// The outcome of a verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// A live key, and what this request left of its limits and credits.
    Valid(VerifiedKey, Allowance),
    /// Wrong shape or checksum, or not a key of any system (decided without the database).
    Malformed,
    /// Not a live key: unknown, rotated away, deleted, or a wrong secret.
    Invalid,
    /// The right secret of a disabled key.
    Disabled,
    /// The right secret of an expired key, or a previous secret whose
    /// overlap has ended.
    Expired,
    /// The right secret of a key reported leaked and revoked (until rotated).
    Compromised,
    /// The right secret of a suspended key: its owner was deactivated (or
    /// may no longer own keys) and it was not transferred.
    OwnerInactive,
    /// A working key that may not serve this request (cloud, address or
    /// permissions; see [`Restrictions::decide`](latchkey_domain::restrictions::Restrictions::decide)).
    NotAllowed(Refusal),
    /// This presenter failed too often recently (or a legacy key's check
    /// budget is spent).
    RateLimited,
    /// A working key over one of its own or its owner's rate limits (the
    /// first that refused); nothing was spent.
    RateLimitExceeded(LimitReading),
    /// A working key without enough credits for the request; nothing was spent.
    UsageExceeded {
        /// Credits left.
        remaining: u64,
        /// When they are refilled next; none without a refill.
        refills_at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Every wire code of a refused verification (what [`VerifyOutcome::code`]
/// gives), for documents and metrics that list them.
pub const REFUSAL_CODES: [&str; 12] = [
    "MALFORMED",
    "INVALID",
    "DISABLED",
    "EXPIRED",
    "COMPROMISED",
    "OWNER_INACTIVE",
    "CLOUD_NOT_ALLOWED",
    "IP_NOT_ALLOWED",
    "INSUFFICIENT_PERMISSIONS",
    "RATE_LIMITED",
    "RATE_LIMIT_EXCEEDED",
    "USAGE_EXCEEDED",
];

impl VerifyOutcome {
    /// The wire code of a refusal.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            VerifyOutcome::Valid(..) => None,
            VerifyOutcome::Malformed => Some("MALFORMED"),
            VerifyOutcome::Invalid => Some("INVALID"),
            VerifyOutcome::Disabled => Some("DISABLED"),
            VerifyOutcome::Expired => Some("EXPIRED"),
            VerifyOutcome::Compromised => Some("COMPROMISED"),
            VerifyOutcome::OwnerInactive => Some("OWNER_INACTIVE"),
            VerifyOutcome::NotAllowed(refusal) => Some(refusal.code()),
            VerifyOutcome::RateLimited => Some("RATE_LIMITED"),
            VerifyOutcome::RateLimitExceeded(_) => Some("RATE_LIMIT_EXCEEDED"),
            VerifyOutcome::UsageExceeded { .. } => Some("USAGE_EXCEEDED"),
        }
    }
}

#[cfg(test)]
mod code_tests {
    use super::*;

    #[test]
    fn refusal_codes_lists_every_refusal_exactly_once() {
        let refusals = [
            VerifyOutcome::Malformed,
            VerifyOutcome::Invalid,
            VerifyOutcome::Disabled,
            VerifyOutcome::Expired,
            VerifyOutcome::Compromised,
            VerifyOutcome::OwnerInactive,
            VerifyOutcome::NotAllowed(Refusal::CloudNotAllowed),
            VerifyOutcome::NotAllowed(Refusal::IpNotAllowed),
            VerifyOutcome::NotAllowed(Refusal::InsufficientPermissions { missing: vec![] }),
            VerifyOutcome::RateLimited,
            VerifyOutcome::RateLimitExceeded(LimitReading {
                name: "burst".into(),
                limit: 1,
                period_seconds: 1,
                remaining: 0,
                resets_at: chrono::DateTime::UNIX_EPOCH,
            }),
            VerifyOutcome::UsageExceeded { remaining: 0, refills_at: None },
        ];
        let codes: Vec<&str> = refusals.iter().filter_map(VerifyOutcome::code).collect();
        assert_eq!(codes, REFUSAL_CODES);
    }
}
