//! Admin bearer tokens: compact JWTs signed with HS256.
//!
//! Only `HS256` is accepted (no `none`, no algorithm confusion); `exp`, `iat`,
//! `iss` and `aud` are required, the last two must name this service (so a
//! token minted for another service that shares the secret is refused); the
//! signature is compared in constant time.

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

/// The issuer and audience a key signs and expects unless configured otherwise.
pub const DEFAULT_ISSUER_AND_AUDIENCE: &str = "latchkey";

/// The claims of an admin token that say who acts where and when. The key adds
/// (and checks) `iss` and `aud`.
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

/// Why an admin token (shared-secret or OIDC) was refused. The message is
/// safe to show to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, bad JSON, or missing claims.
    #[error("the bearer token is malformed")]
    Malformed,
    /// An algorithm this path does not accept (HS256 only for shared-secret
    /// tokens; RS256, PS256, ES256 for OIDC, fitting the key named).
    #[error("the bearer token's algorithm is not accepted")]
    Algorithm,
    /// The signature does not match.
    #[error("the bearer token's signature is invalid")]
    Signature,
    /// Past `exp`.
    #[error("the bearer token has expired")]
    Expired,
    /// `iat` (or `nbf`) lies in the future.
    #[error("the bearer token is not valid yet")]
    NotYetValid,
    /// `exp - iat` is longer than the key's maximum lifetime.
    #[error("the bearer token's lifetime is longer than allowed")]
    LifetimeTooLong,
    /// `iss` is missing or names another issuer.
    #[error("the bearer token's issuer is not accepted")]
    Issuer,
    /// `aud` is missing or does not name this service.
    #[error("the bearer token is not meant for this service")]
    Audience,
    /// No key the identity provider publishes has the token's `kid` (OIDC).
    #[error("the bearer token is signed with a key the identity provider does not publish")]
    UnknownKey,
    /// A claim the token needs (`exp`, `iat`, the user's or the tenant's) is
    /// missing or not of its type (OIDC; for shared-secret tokens this is `Malformed`).
    #[error("the bearer token lacks the claim {0}")]
    MissingClaim(&'static str),
}

/// The configured signing key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the JWT secret must be at least {MIN_SECRET_LEN} bytes long")]
pub struct WeakSecret;

/// The HS256 key used to sign and verify admin tokens, with the longest
/// lifetime it accepts and the issuer and audience it signs and expects.
/// `Debug` is redacted.
#[derive(Clone)]
pub struct AdminTokenKey {
    secret: Vec<u8>,
    max_lifetime_secs: i64,
    issuer: String,
    audience: String,
}

impl fmt::Debug for AdminTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminTokenKey")
            .field("max_lifetime_secs", &self.max_lifetime_secs)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// What is signed: the claims plus the key's issuer and audience.
#[derive(Serialize)]
struct SignedClaims<'a> {
    #[serde(flatten)]
    claims: &'a AdminClaims,
    iss: &'a str,
    aud: &'a str,
}

/// What arrives: `iss` and `aud` are checked against the key.
#[derive(Deserialize)]
struct ReceivedClaims {
    #[serde(flatten)]
    claims: AdminClaims,
    iss: Option<String>,
    aud: Option<Audience>,
}

/// RFC 7519 allows one audience or several.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub(crate) fn names(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
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
        Ok(AdminTokenKey {
            secret: secret.to_vec(),
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            issuer: DEFAULT_ISSUER_AND_AUDIENCE.into(),
            audience: DEFAULT_ISSUER_AND_AUDIENCE.into(),
        })
    }

    /// The same key, signing and expecting this `iss` and `aud`.
    pub fn with_issuer_and_audience(mut self, issuer: &str, audience: &str) -> Self {
        self.issuer = issuer.to_owned();
        self.audience = audience.to_owned();
        self
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

    /// Signs `claims`, with this key's `iss` and `aud`, into a compact JWT.
    pub fn sign(&self, claims: &AdminClaims) -> String {
        let header = Header { alg: "HS256".into(), typ: Some("JWT".into()) };
        let encode = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let header = encode(&serde_json::to_vec(&header).unwrap_or_default());
        let signed = SignedClaims { claims, iss: &self.issuer, aud: &self.audience };
        let payload = encode(&serde_json::to_vec(&signed).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = encode(&mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Verifies the signature, issuer, audience and times of `token` at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AdminClaims, TokenError> {
        let jws: Compact<'_, Header> = split_compact(token)?;
        if jws.header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let mut mac = self.mac();
        mac.update(jws.signing_input.as_bytes());
        mac.verify_slice(&jws.signature).map_err(|_| TokenError::Signature)?;
        let received: ReceivedClaims = serde_json::from_slice(&jws.payload()?).map_err(|_| TokenError::Malformed)?;
        if received.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(TokenError::Issuer);
        }
        if !received.aud.is_some_and(|aud| aud.names(&self.audience)) {
            return Err(TokenError::Audience);
        }
        let claims = received.claims;
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

/// A compact JWS (`header.payload.signature`, base64url), split, with its
/// header read as `H` and its signature decoded; the payload is decoded only
/// once the signature holds.
pub(crate) struct Compact<'a, H> {
    pub(crate) header: H,
    pub(crate) signing_input: &'a str,
    pub(crate) signature: Vec<u8>,
    payload: &'a str,
}

impl<H> Compact<'_, H> {
    /// The decoded payload.
    pub(crate) fn payload(&self) -> Result<Vec<u8>, TokenError> {
        URL_SAFE_NO_PAD.decode(self.payload).map_err(|_| TokenError::Malformed)
    }
}

/// Whether `token` has the shape of a compact JWS (three dot-separated
/// parts): what an admin token is. Anything else presented as a bearer is
/// an API key (Latchkey's `lk_…` or an imported one).
pub fn looks_like_jws(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Splits a compact JWS; anything but three base64url parts with a JSON
/// header of shape `H` is `Malformed`.
pub(crate) fn split_compact<H: serde::de::DeserializeOwned>(token: &str) -> Result<Compact<'_, H>, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed);
    let header = serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
    let signing_input = token.get(..header_and_payload_len(token)).ok_or(TokenError::Malformed)?;
    Ok(Compact { header, signing_input, signature: decode(signature)?, payload })
}

/// Where the signature's leading dot is.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
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

    /// Signs `payload` as it is, without the key adding `iss` and `aud`.
    fn sign_raw(payload: &str) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
        let mut mac = key().mac();
        mac.update(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn issuer_and_audience_are_required_and_must_name_this_service() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let body = |extra: &str| {
            format!(
                r#"{{"sub":"00000000-0000-0000-0000-000000000007","tid":"00000000-0000-0000-0000-000000000009","cloud":"employee","iat":{},"exp":{}{extra}}}"#,
                now.timestamp(),
                now.timestamp() + 60
            )
        };
        assert_eq!(key().verify(&sign_raw(&body("")), now), Err(TokenError::Issuer));
        assert_eq!(key().verify(&sign_raw(&body(r#","iss":"latchkey""#)), now), Err(TokenError::Audience));
        assert_eq!(
            key().verify(&sign_raw(&body(r#","iss":"billing","aud":"latchkey""#)), now),
            Err(TokenError::Issuer)
        );
        assert_eq!(
            key().verify(&sign_raw(&body(r#","iss":"latchkey","aud":"billing""#)), now),
            Err(TokenError::Audience)
        );
        assert!(key().verify(&sign_raw(&body(r#","iss":"latchkey","aud":["billing","latchkey"]"#)), now).is_ok());
        // A key configured for another service shares the secret but not the audience.
        let billing = key().with_issuer_and_audience("https://idp.example", "billing");
        let for_billing = billing.sign(&claims(now));
        assert_eq!(key().verify(&for_billing, now), Err(TokenError::Issuer));
        assert_eq!(billing.verify(&for_billing, now).unwrap(), claims(now));
        let other_audience = key().with_issuer_and_audience("latchkey", "billing").sign(&claims(now));
        assert_eq!(key().verify(&other_audience, now), Err(TokenError::Audience));
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
        let tampered = SignedClaims { claims: &tampered_claims, iss: "latchkey", aud: "latchkey" };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap());
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
        let token = sign_raw(
            r#"{"sub":"00000000-0000-0000-0000-000000000007","tid":"00000000-0000-0000-0000-000000000009","cloud":"employee","iat":0,"iss":"latchkey","aud":"latchkey"}"#,
        );
        assert_eq!(key().verify(&token, now), Err(TokenError::Malformed));
    }
}
