//! Admin bearer tokens: compact JWTs signed with HS256.
//!
//! Only `HS256` is accepted (no `none`, no algorithm confusion); `exp` is
//! required; the signature is compared in constant time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::{TenantId, UserId};
use crate::model::Cloud;

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// Allowed clock skew when checking `exp` and `iat`, in seconds.
pub const LEEWAY_SECS: i64 = 30;

/// The longest lifetime (`exp - iat`) a token may have unless configured otherwise: 24 hours.
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 24 * 3600;

/// The claims of an admin token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminClaims {
    /// The user id.
    pub sub: UserId,
    /// The tenant id.
    pub tid: TenantId,
    /// The cloud the admin acts in.
    pub cloud: Cloud,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
}

/// Why a token was refused. The message is safe to show to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, bad JSON, or missing claims.
    #[error("the bearer token is malformed")]
    Malformed,
    /// Algorithm other than HS256.
    #[error("the bearer token's algorithm is not accepted")]
    Algorithm,
    /// The signature does not match.
    #[error("the bearer token's signature is invalid")]
    Signature,
    /// Past `exp`.
    #[error("the bearer token has expired")]
    Expired,
    /// `iat` lies in the future.
    #[error("the bearer token is not valid yet")]
    NotYetValid,
    /// `exp - iat` is longer than the key's maximum lifetime.
    #[error("the bearer token's lifetime is longer than allowed")]
    LifetimeTooLong,
}

/// The configured signing key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the JWT secret must be at least {MIN_SECRET_LEN} bytes long")]
pub struct WeakSecret;

/// The HS256 key used to sign and verify admin tokens, with the longest
/// lifetime it accepts. `Debug` is redacted.
#[derive(Clone)]
pub struct AdminTokenKey {
    secret: Vec<u8>,
    max_lifetime_secs: i64,
}

impl fmt::Debug for AdminTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTokenKey").field("max_lifetime_secs", &self.max_lifetime_secs).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

impl AdminTokenKey {
    /// Wraps a secret of at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(WeakSecret);
        }
        Ok(AdminTokenKey { secret: secret.to_vec(), max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS })
    }

    /// The same key, accepting tokens whose lifetime is at most `secs`.
    pub fn with_max_lifetime(mut self, secs: i64) -> Self {
        self.max_lifetime_secs = secs.max(1);
        self
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable_hmac())
    }

    /// Signs `claims` into a compact JWT.
    pub fn sign(&self, claims: &AdminClaims) -> String {
        let header = Header { alg: "HS256".into(), typ: Some("JWT".into()) };
        let encode = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let header = encode(&serde_json::to_vec(&header).unwrap_or_default());
        let payload = encode(&serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = encode(&mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Verifies the signature and times of `token` at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AdminClaims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed);
        let header: Header = serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let signature = decode(signature)?;
        let signing_input_len = token.len() - signature_len(token);
        let mut mac = self.mac();
        mac.update(token.as_bytes().get(..signing_input_len).unwrap_or_default());
        mac.verify_slice(&signature).map_err(|_| TokenError::Signature)?;
        let claims: AdminClaims = serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        // Saturating: claims are attacker-chosen and may sit at the ends of i64.
        let now = now.timestamp();
        if claims.exp.saturating_add(LEEWAY_SECS) <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat.saturating_sub(LEEWAY_SECS) > now {
            return Err(TokenError::NotYetValid);
        }
        if claims.exp.saturating_sub(claims.iat) > self.max_lifetime_secs {
            return Err(TokenError::LifetimeTooLong);
        }
        Ok(claims)
    }
}

/// Length of the signature part plus its leading dot.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    // `new_from_slice` only fails for fixed-size keys; HMAC has none. Fall back
    // to an unusable random-less key rather than panicking.
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use uuid::Uuid;

    fn key() -> AdminTokenKey {
        AdminTokenKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn claims(now: DateTime<Utc>) -> AdminClaims {
        AdminClaims {
            sub: UserId(Uuid::from_u128(7)),
            tid: TenantId(Uuid::from_u128(9)),
            cloud: Cloud::Employee,
            exp: now.timestamp() + 3600,
            iat: now.timestamp(),
        }
    }

    #[test]
    fn round_trips() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let token = key().sign(&claims(now));
        assert_eq!(key().verify(&token, now).unwrap(), claims(now));
    }

    #[test]
    fn times_at_the_ends_of_i64_never_overflow() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let at = |exp: i64, iat: i64| key().verify(&key().sign(&AdminClaims { exp, iat, ..claims(now) }), now);
        assert_eq!(at(i64::MAX, now.timestamp()), Err(TokenError::LifetimeTooLong));
        assert_eq!(at(i64::MAX, i64::MIN), Err(TokenError::LifetimeTooLong));
        assert_eq!(at(i64::MIN, i64::MIN), Err(TokenError::Expired));
        assert_eq!(at(i64::MAX, i64::MAX), Err(TokenError::NotYetValid));
        let day = DEFAULT_MAX_LIFETIME_SECS;
        assert!(at(now.timestamp() + day, now.timestamp()).is_ok(), "exactly the maximum lifetime");
        assert_eq!(at(now.timestamp() + day + 1, now.timestamp()), Err(TokenError::LifetimeTooLong));
        let hour_key = key().with_max_lifetime(3600);
        let long = key().sign(&AdminClaims { exp: now.timestamp() + 7200, ..claims(now) });
        assert_eq!(hour_key.verify(&long, now), Err(TokenError::LifetimeTooLong));
    }

    #[test]
    fn refuses_weak_secret() {
        assert_eq!(AdminTokenKey::new(b"short").unwrap_err(), WeakSecret);
    }

    #[test]
    fn refuses_expired_future_tampered_and_foreign_tokens() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let token = key().sign(&claims(now));
        assert_eq!(key().verify(&token, now + chrono::Duration::hours(2)), Err(TokenError::Expired));
        assert_eq!(key().verify(&token, now - chrono::Duration::hours(1)), Err(TokenError::NotYetValid));
        let other = AdminTokenKey::new(b"another-secret-another-secret-!!").unwrap();
        assert_eq!(other.verify(&token, now), Err(TokenError::Signature));
        let mut tampered_claims = claims(now);
        tampered_claims.cloud = Cloud::Customer;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered_claims).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(key().verify(&forged, now), Err(TokenError::Signature));
        for junk in ["", "a.b", "a.b.c.d", "....", "é.é.é"] {
            assert_eq!(key().verify(junk, now), Err(TokenError::Malformed), "{junk}");
        }
        let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        let none_token = format!("{}.{}.", none_header, parts[1]);
        assert_eq!(key().verify(&none_token, now), Err(TokenError::Algorithm));
    }

    #[test]
    fn missing_exp_is_malformed() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let payload = URL_SAFE_NO_PAD.encode(
            br#"{"sub":"00000000-0000-0000-0000-000000000007","tid":"00000000-0000-0000-0000-000000000009","cloud":"employee","iat":0}"#,
        );
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let input = format!("{header}.{payload}");
        let mut mac = key().mac();
        mac.update(input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(key().verify(&format!("{input}.{sig}"), now), Err(TokenError::Malformed));
    }
}
