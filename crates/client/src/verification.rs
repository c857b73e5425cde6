//! What a verification answers: the wire form of `/v1/keys/verify`, read
//! into types.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::context::Cloud;

/// The verdict on a key for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// A working key allowed for the request.
    Valid(Arc<VerifiedKey>),
    /// Refused, and why.
    Refused(Refusal),
}

impl Verification {
    /// The key, when valid.
    pub fn key(&self) -> Option<&Arc<VerifiedKey>> {
        match self {
            Verification::Valid(key) => Some(key),
            Verification::Refused(_) => None,
        }
    }
}

/// A working key, as `/v1/keys/verify` describes it. A handler behind
/// [`VerifyLayer`](crate::VerifyLayer) finds an `Arc<VerifiedKey>` in the
/// request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedKey {
    /// The key.
    pub key_id: Uuid,
    /// Its tenant.
    pub tenant_id: Uuid,
    /// Its owner (a user id of the tenant).
    pub owner_id: Uuid,
    /// The clouds it works in.
    pub clouds: Vec<Cloud>,
    /// What it may do; `None` when unrestricted.
    pub permissions: Option<Vec<String>>,
    /// The networks it may be used from; empty for any address.
    pub allowed_ips: Vec<String>,
    /// When this secret stops working; `None` for never.
    pub valid_until: Option<DateTime<Utc>>,
    /// For a key with credits: what is left after this request.
    pub credits: Option<u64>,
    /// For a key with rate limits: what is left of each after this request.
    pub limits: Vec<LimitState>,
}

impl VerifiedKey {
    /// Whether the key spends rate limits or credits: such a key is never
    /// answered from the cache (Latchkey counts every request).
    pub fn is_limited(&self) -> bool {
        self.credits.is_some() || !self.limits.is_empty()
    }
}

/// A rate limit's state after a request.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LimitState {
    /// Its name.
    pub name: String,
    /// Units per window.
    pub limit: u64,
    /// What is left of the window (0 when refused).
    pub remaining: u64,
    /// When the window ends.
    pub reset_at: DateTime<Utc>,
}

/// Why a key was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal {
    /// The refusal code.
    pub code: RefusalCode,
    /// For `INSUFFICIENT_PERMISSIONS`: what was asked and not granted, in
    /// catalogue order.
    pub missing: Vec<String>,
    /// For `RATE_LIMIT_EXCEEDED`: the limit that refused.
    pub limit: Option<LimitState>,
    /// For `USAGE_EXCEEDED`: the credits left.
    pub remaining: Option<u64>,
}

impl Refusal {
    pub(crate) fn code(code: RefusalCode) -> Self {
        Refusal { code, missing: Vec::new(), limit: None, remaining: None }
    }
}

macro_rules! refusal_codes {
    ($($(#[$doc:meta])* $variant:ident = $wire:literal => $status:literal,)*) => {
        /// Every refusal code of `/v1/keys/verify`, and the HTTP status
        /// `/v1/auth` (and [`VerifyLayer`](crate::VerifyLayer)) answers it with.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum RefusalCode {
            $($(#[$doc])* $variant,)*
            /// A code this version of the client does not know (answered 401).
            Other(String),
        }

        impl RefusalCode {
            /// The wire code.
            pub fn as_str(&self) -> &str {
                match self {
                    $(RefusalCode::$variant => $wire,)*
                    RefusalCode::Other(code) => code,
                }
            }

            /// Reads a wire code.
            pub fn parse(code: &str) -> RefusalCode {
                match code {
                    $($wire => RefusalCode::$variant,)*
                    other => RefusalCode::Other(other.to_owned()),
                }
            }

            /// The HTTP status of the refusal: 401, 403 or 429.
            pub fn status(&self) -> u16 {
                match self {
                    $(RefusalCode::$variant => $status,)*
                    RefusalCode::Other(_) => 401,
                }
            }
        }
    };
}

refusal_codes! {
    /// No key was sent (the layer's own code, as `/v1/auth`'s).
    MissingKey = "MISSING_KEY" => 401,
    /// Not the shape of a key.
    Malformed = "MALFORMED" => 401,
    /// Not a live key.
    Invalid = "INVALID" => 401,
    /// A disabled key.
    Disabled = "DISABLED" => 401,
    /// An expired key, or a previous secret past its overlap.
    Expired = "EXPIRED" => 401,
    /// A key reported leaked and revoked.
    Compromised = "COMPROMISED" => 401,
    /// A key whose owner was deactivated.
    OwnerInactive = "OWNER_INACTIVE" => 401,
    /// Not allowed in the request's cloud.
    CloudNotAllowed = "CLOUD_NOT_ALLOWED" => 403,
    /// Not allowed from the request's address.
    IpNotAllowed = "IP_NOT_ALLOWED" => 403,
    /// Lacks a permission the request needs.
    InsufficientPermissions = "INSUFFICIENT_PERMISSIONS" => 403,
    /// The presenter failed too often recently.
    RateLimited = "RATE_LIMITED" => 429,
    /// Over one of its rate limits.
    RateLimitExceeded = "RATE_LIMIT_EXCEEDED" => 429,
    /// Out of credits.
    UsageExceeded = "USAGE_EXCEEDED" => 429,
}

/// The JSON of a `/v1/keys/verify` answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answer {
    valid: bool,
    code: Option<String>,
    key_id: Option<Uuid>,
    tenant_id: Option<Uuid>,
    owner_id: Option<Uuid>,
    #[serde(default)]
    clouds: Vec<String>,
    permissions: Option<Vec<String>>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    valid_until: Option<DateTime<Utc>>,
    credits: Option<Credits>,
    #[serde(default)]
    limits: Vec<LimitState>,
    #[serde(default)]
    missing: Vec<String>,
    limit: Option<LimitState>,
    remaining: Option<u64>,
}

#[derive(Deserialize)]
struct Credits {
    remaining: u64,
}

impl Answer {
    /// The verdict; `None` for an answer that is not one.
    pub(crate) fn into_verification(self) -> Option<Verification> {
        if !self.valid {
            let code = RefusalCode::parse(self.code.as_deref()?);
            return Some(Verification::Refused(Refusal {
                code,
                missing: self.missing,
                limit: self.limit,
                remaining: self.remaining,
            }));
        }
        Some(Verification::Valid(Arc::new(VerifiedKey {
            key_id: self.key_id?,
            tenant_id: self.tenant_id?,
            owner_id: self.owner_id?,
            clouds: self.clouds.iter().filter_map(|c| Cloud::parse(c)).collect(),
            permissions: self.permissions,
            allowed_ips: self.allowed_ips,
            valid_until: self.valid_until,
            credits: self.credits.map(|c| c.remaining),
            limits: self.limits,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_answer_reads_whole() {
        let json = r#"{"valid":true,"keyId":"0190d3c0-0000-7000-8000-000000000001",
            "tenantId":"0190d3c0-0000-7000-8000-000000000002","ownerId":"0190d3c0-0000-7000-8000-000000000003",
            "clouds":["EMPLOYEE","CUSTOMER"],"permissions":["users:read"],"allowedIps":["10.0.0.0/8"],
            "validUntil":"2030-01-01T00:00:00Z","credits":{"remaining":4}}"#;
        let answer: Answer = serde_json::from_str(json).expect("an answer");
        let Some(Verification::Valid(key)) = answer.into_verification() else { panic!("valid") };
        assert_eq!(key.clouds, [Cloud::Employee, Cloud::Customer]);
        assert_eq!(key.permissions.as_deref(), Some(&["users:read".to_owned()][..]));
        assert_eq!(key.allowed_ips, ["10.0.0.0/8"]);
        assert_eq!(key.credits, Some(4));
        assert!(key.is_limited());
    }

    #[test]
    fn a_refusal_reads_its_code_and_details() {
        let json = r#"{"valid":false,"code":"INSUFFICIENT_PERMISSIONS","missing":["users:write"]}"#;
        let answer: Answer = serde_json::from_str(json).expect("an answer");
        let Some(Verification::Refused(refusal)) = answer.into_verification() else { panic!("refused") };
        assert_eq!((refusal.code.status(), refusal.missing), (403, vec!["users:write".to_owned()]));
        assert_eq!(RefusalCode::parse("SOMETHING_NEW").status(), 401);
        assert_eq!(RefusalCode::parse("USAGE_EXCEEDED"), RefusalCode::UsageExceeded);
    }
}
