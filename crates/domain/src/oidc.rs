//! Access tokens from the company's identity provider (OpenID Connect).
//!
//! The pure half of OIDC sign-in: reading the provider's key set (JWKS),
//! choosing the key a token names, checking its signature and its claims.
//! Only `RS256`, `PS256` and `ES256` are accepted: an `HS*` or `none` token,
//! or one whose `alg` does not fit the key it names, is refused before any
//! signature is computed, so a public key can never serve as an HMAC secret.
//! Fetching and caching the key set is the application's.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::admin_token::{Audience, Compact, LEEWAY_SECS, TokenError, split_compact};

/// The smallest RSA key accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA key accepted, in bits.
pub const MAX_RSA_BITS: usize = 8192;
/// The most keys read from one key set (the rest are ignored).
pub const MAX_KEYS: usize = 32;
/// The claim that names the tenant unless configured otherwise (Entra ID's).
pub const DEFAULT_TENANT_CLAIM: &str = "tid";
/// The claim that names the user unless configured otherwise.
pub const DEFAULT_SUBJECT_CLAIM: &str = "sub";

/// A signature algorithm accepted on this path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256 (salt of 32 bytes).
    Ps256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl Algorithm {
    /// The algorithm named `alg` in a JOSE header, if it is accepted.
    pub fn parse(alg: &str) -> Option<Algorithm> {
        match alg {
            "RS256" => Some(Algorithm::Rs256),
            "PS256" => Some(Algorithm::Ps256),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }

    /// Its JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Ps256 => "PS256",
            Algorithm::Es256 => "ES256",
        }
    }
}

/// A public key, checked by *ring* (signatures are verified in constant time
/// by audited code; keys of the wrong size are refused there too).
#[derive(Clone)]
enum PublicKey {
    /// Modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed P-256 point (`04 ‖ x ‖ y`).
    P256(Vec<u8>),
}

impl PublicKey {
    fn fits(&self, alg: Algorithm) -> bool {
        matches!(
            (self, alg),
            (PublicKey::Rsa { .. }, Algorithm::Rs256 | Algorithm::Ps256) | (PublicKey::P256(_), Algorithm::Es256)
        )
    }

    /// Whether `signature` signs `input` under this key with `alg` (which fits it).
    fn verifies(&self, alg: Algorithm, input: &[u8], signature: &[u8]) -> bool {
        match (self, alg) {
            (PublicKey::Rsa { n, e }, Algorithm::Rs256) => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, input, signature).is_ok()
            }
            (PublicKey::Rsa { n, e }, Algorithm::Ps256) => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PSS_2048_8192_SHA256, input, signature).is_ok()
            }
            // JWS carries ECDSA signatures as r ‖ s, 64 bytes: ring's FIXED form.
            (PublicKey::P256(point), Algorithm::Es256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(input, signature).is_ok()
            }
            _ => false,
        }
    }
}

/// The length in bits of a big-endian unsigned number.
fn bit_length(number: &[u8]) -> usize {
    let significant = number.iter().position(|&b| b != 0).map_or(&[][..], |first| &number[first..]);
    significant.first().map_or(0, |&top| (significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize))
}

/// One usable signing key of a key set.
#[derive(Clone)]
struct Jwk {
    kid: Option<String>,
    /// The `alg` the key set pins for this key, if any.
    alg: Option<Algorithm>,
    key: PublicKey,
}

/// The signing keys an identity provider publishes, as far as they are
/// usable here: RSA keys of [`MIN_RSA_BITS`] to [`MAX_RSA_BITS`] and P-256 keys meant
/// for signatures. Others (encryption keys, other curves, HMAC secrets) are
/// skipped.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: Vec<Jwk>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|k| k.kid.as_deref().unwrap_or("(no kid)"))).finish()
    }
}

/// A key set could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// Not a JSON object with a `keys` array.
    #[error("the key set is not a JWKS document")]
    Malformed,
    /// No key in it can verify an accepted algorithm.
    #[error("the key set has no usable RS256, PS256 or ES256 signing key")]
    NoUsableKeys,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl RawJwk {
    fn usable(self) -> Option<Jwk> {
        if self.usage.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let alg = match self.alg.as_deref() {
            None => None,
            Some(name) => Some(Algorithm::parse(name)?),
        };
        let bytes = |part: &Option<String>| part.as_deref().and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
        let key = match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => {
                let (n, e) = (bytes(&self.n)?, bytes(&self.e)?);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bit_length(&n)) || !(2..=33).contains(&bit_length(&e)) {
                    return None;
                }
                PublicKey::Rsa { n, e }
            }
            ("EC", Some("P-256")) => {
                let (x, y) = (bytes(&self.x)?, bytes(&self.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                PublicKey::P256([&[0x04][..], &x, &y].concat())
            }
            _ => return None,
        };
        if alg.is_some_and(|alg| !key.fits(alg)) {
            return None;
        }
        Some(Jwk { kid: self.kid, alg, key })
    }
}

impl KeySet {
    /// Reads a JWKS document, keeping its usable signing keys (at most [`MAX_KEYS`]).
    pub fn parse(json: &[u8]) -> Result<KeySet, KeySetError> {
        let raw: RawKeySet = serde_json::from_slice(json).map_err(|_| KeySetError::Malformed)?;
        let keys: Vec<Jwk> = raw
            .keys
            .into_iter()
            .filter_map(|k| serde_json::from_value::<RawJwk>(k).ok()?.usable())
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(KeySetError::NoUsableKeys);
        }
        Ok(KeySet { keys })
    }

    /// How many usable keys it holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a token naming `kid` (or none) finds a key here: when it does
    /// not, the provider may have rotated its keys.
    pub fn knows(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => !self.keys.is_empty(),
        }
    }
}

/// What a token is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcRules {
    /// The exact `iss`.
    pub issuer: String,
    /// The `aud` this service expects.
    pub audience: String,
    /// The claim that names the tenant.
    pub tenant_claim: String,
    /// The claim matched against a user's SCIM `externalId`: `sub`, or
    /// Entra ID's `oid` (its `sub` differs for each application).
    pub subject_claim: String,
    /// The longest `exp - iat` accepted, as for the shared-secret tokens.
    pub max_lifetime_secs: i64,
}

/// Who a valid token says is calling. The user and tenant are still to be
/// found in Latchkey's database; the token says nothing of the role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcIdentity {
    /// The subject claim's value: matched against a user's SCIM `externalId`.
    pub subject: String,
    /// `email`, if present.
    pub email: Option<String>,
    /// Whether `email_verified` is true.
    pub email_verified: bool,
    /// The tenant claim's value: a tenant id or a tenant's external id.
    pub tenant: String,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

impl OidcIdentity {
    /// The address a user may be found by: only one the provider verified.
    pub fn verified_email(&self) -> Option<&str> {
        self.email.as_deref().filter(|_| self.email_verified)
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

/// A compact JWS whose header names an accepted algorithm, not yet verified.
pub struct SignedToken<'a> {
    alg: Algorithm,
    kid: Option<String>,
    jws: Compact<'a, Header>,
}

impl fmt::Debug for SignedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedToken").field("alg", &self.alg).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl<'a> SignedToken<'a> {
    /// Splits `token` and reads its header; refuses any algorithm but RS256, PS256 and ES256.
    pub fn parse(token: &'a str) -> Result<SignedToken<'a>, TokenError> {
        let jws: Compact<'a, Header> = split_compact(token)?;
        let alg = Algorithm::parse(&jws.header.alg).ok_or(TokenError::Algorithm)?;
        Ok(SignedToken { alg, kid: jws.header.kid.clone(), jws })
    }

    /// The key id the header names.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Checks the signature with the key `keys` hold for this token, then the
    /// claims under `rules` at `now`.
    pub fn verify(&self, keys: &KeySet, rules: &OidcRules, now: DateTime<Utc>) -> Result<OidcIdentity, TokenError> {
        self.check_signature(keys)?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&self.jws.payload()?).map_err(|_| TokenError::Malformed)?;
        check_claims(&claims, rules, now.timestamp())
    }

    fn check_signature(&self, keys: &KeySet) -> Result<(), TokenError> {
        let named: Vec<&Jwk> = match &self.kid {
            Some(kid) => keys.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect(),
            None => keys.keys.iter().collect(),
        };
        if named.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        let fitting: Vec<&Jwk> =
            named.into_iter().filter(|k| k.key.fits(self.alg) && k.alg.is_none_or(|a| a == self.alg)).collect();
        if fitting.is_empty() {
            return Err(TokenError::Algorithm);
        }
        let input = self.jws.signing_input.as_bytes();
        if fitting.iter().any(|k| k.key.verifies(self.alg, input, &self.jws.signature)) {
            Ok(())
        } else {
            Err(TokenError::Signature)
        }
    }
}

/// A NumericDate claim, in whole seconds (RFC 7519 allows fractions).
fn seconds(claims: &Map<String, Value>, name: &str) -> Option<i64> {
    // `as` saturates: an absurd date lands at an end of i64, never wraps.
    claims.get(name)?.as_f64().map(|s| s.floor() as i64)
}

fn check_claims(claims: &Map<String, Value>, rules: &OidcRules, now: i64) -> Result<OidcIdentity, TokenError> {
    if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str()) {
        return Err(TokenError::Issuer);
    }
    let audience = claims.get("aud").cloned().and_then(|aud| serde_json::from_value::<Audience>(aud).ok());
    if !audience.is_some_and(|aud| aud.names(&rules.audience)) {
        return Err(TokenError::Audience);
    }
    let exp = seconds(claims, "exp").ok_or(TokenError::MissingClaim("exp"))?;
    let iat = seconds(claims, "iat").ok_or(TokenError::MissingClaim("iat"))?;
    if exp.saturating_add(LEEWAY_SECS) <= now {
        return Err(TokenError::Expired);
    }
    let not_before = seconds(claims, "nbf").map_or(iat, |nbf| nbf.max(iat));
    if not_before.saturating_sub(LEEWAY_SECS) > now {
        return Err(TokenError::NotYetValid);
    }
    if exp.saturating_sub(iat) > rules.max_lifetime_secs {
        return Err(TokenError::LifetimeTooLong);
    }
    let text = |name: &str| match claims.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let subject = text(&rules.subject_claim).ok_or(TokenError::MissingClaim("naming the user"))?;
    let tenant = text(&rules.tenant_claim).ok_or(TokenError::MissingClaim("naming the tenant"))?;
    let email = claims.get("email").and_then(Value::as_str).map(str::to_owned);
    // Some providers (Cognito, older Okta orgs) send the flag as a string.
    let email_verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
        || claims.get("email_verified").and_then(Value::as_str) == Some("true");
    Ok(OidcIdentity { subject, email, email_verified, tenant, expires_at: exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use p256::ecdsa::signature::Signer;
    use rsa::RsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    use serde_json::json;
    use sha2::Sha256;

    const NOW: i64 = 1_800_000_000;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(NOW, 0).unwrap()
    }

    fn rules() -> OidcRules {
        OidcRules {
            issuer: "https://idp.example".into(),
            audience: "latchkey".into(),
            tenant_claim: DEFAULT_TENANT_CLAIM.into(),
            subject_claim: DEFAULT_SUBJECT_CLAIM.into(),
            max_lifetime_secs: 24 * 3600,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://idp.example", "aud": ["latchkey", "other"], "sub": "00u1",
            "tid": "acme", "email": "ada@acme.example", "email_verified": true,
            "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 3600,
        })
    }

    struct Keys {
        rsa: RsaPrivateKey,
        ec: p256::ecdsa::SigningKey,
    }

    fn keys() -> &'static Keys {
        static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            let mut rng = rsa::rand_core::OsRng;
            Keys { rsa: RsaPrivateKey::new(&mut rng, 2048).unwrap(), ec: p256::ecdsa::SigningKey::random(&mut rng) }
        })
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwks() -> Vec<u8> {
        let rsa = keys().rsa.to_public_key();
        let point = keys().ec.verifying_key().to_encoded_point(false);
        serde_json::to_vec(&json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(&rsa.n().to_bytes_be()), "e": b64(&rsa.e().to_bytes_be())},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())},
            {"kty": "oct", "kid": "h1", "k": b64(b"secret")},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&rsa.n().to_bytes_be()), "e": b64(&rsa.e().to_bytes_be())},
        ]}))
        .unwrap()
    }

    fn sign(alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let header = match kid {
            Some(kid) => json!({"alg": alg, "kid": kid, "typ": "at+jwt"}),
            None => json!({"alg": alg}),
        };
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let mut rng = rsa::rand_core::OsRng;
        let signature: Vec<u8> = match alg {
            "RS256" => {
                use rsa::signature::SignatureEncoding;
                rsa::pkcs1v15::SigningKey::<Sha256>::new(keys().rsa.clone()).sign(input.as_bytes()).to_vec()
            }
            "PS256" => {
                use rsa::signature::{RandomizedSigner, SignatureEncoding};
                rsa::pss::SigningKey::<Sha256>::new(keys().rsa.clone())
                    .sign_with_rng(&mut rng, input.as_bytes())
                    .to_vec()
            }
            "ES256" => {
                let s: p256::ecdsa::Signature = keys().ec.sign(input.as_bytes());
                s.to_bytes().to_vec()
            }
            _ => Vec::new(),
        };
        format!("{input}.{}", b64(&signature))
    }

    fn verify(token: &str) -> Result<OidcIdentity, TokenError> {
        let keys = KeySet::parse(&jwks()).unwrap();
        SignedToken::parse(token)?.verify(&keys, &rules(), now())
    }

    #[test]
    fn reads_usable_signing_keys_only() {
        let keys = KeySet::parse(&jwks()).unwrap();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys.knows(Some("r1")) && keys.knows(Some("e1")) && !keys.knows(Some("h1")));
        assert!(!keys.knows(Some("enc")));
        assert_eq!(KeySet::parse(b"[]").unwrap_err(), KeySetError::Malformed);
        assert_eq!(KeySet::parse(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#).unwrap_err(), KeySetError::NoUsableKeys);
        let small = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap().to_public_key();
        let weak =
            json!({"keys": [{"kty": "RSA", "n": b64(&small.n().to_bytes_be()), "e": b64(&small.e().to_bytes_be())}]});
        assert_eq!(KeySet::parse(weak.to_string().as_bytes()).unwrap_err(), KeySetError::NoUsableKeys);
    }

    #[test]
    fn accepts_each_algorithm() {
        for (alg, kid) in [("RS256", "r1"), ("PS256", "r1"), ("ES256", "e1")] {
            let identity = verify(&sign(alg, Some(kid), &claims())).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(identity.subject, "00u1");
            assert_eq!(identity.tenant, "acme");
            assert_eq!(identity.verified_email(), Some("ada@acme.example"));
            assert_eq!(identity.expires_at, NOW + 3600);
        }
        // Without a kid, every key of the algorithm's type is tried.
        assert!(verify(&sign("ES256", None, &claims())).is_ok());
    }

    #[test]
    fn refuses_other_algorithms_and_keys_that_do_not_fit() {
        let token = sign("RS256", Some("r1"), &claims());
        let payload = token.split('.').nth(1).unwrap();
        // alg confusion: an HS256 token signed with the RSA public key as the secret.
        let public_der = b64(&keys().rsa.to_public_key().n().to_bytes_be());
        use hmac::Mac;
        let input = format!("{}.{payload}", b64(br#"{"alg":"HS256","kid":"r1"}"#));
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(public_der.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        let confused = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_eq!(verify(&confused).unwrap_err(), TokenError::Algorithm);
        let none = format!("{}.{payload}.", b64(br#"{"alg":"none"}"#));
        assert_eq!(verify(&none).unwrap_err(), TokenError::Algorithm);
        // ES256 naming the RSA key, RS256 naming the EC key.
        assert_eq!(verify(&sign("ES256", Some("r1"), &claims())).unwrap_err(), TokenError::Algorithm);
        assert_eq!(verify(&sign("RS256", Some("e1"), &claims())).unwrap_err(), TokenError::Algorithm);
        assert_eq!(verify(&sign("RS256", Some("nope"), &claims())).unwrap_err(), TokenError::UnknownKey);
    }

    #[test]
    fn refuses_tampered_and_malformed_tokens() {
        let token = sign("ES256", Some("e1"), &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut other = claims();
        other["sub"] = json!("someone-else");
        let forged = format!("{}.{}.{}", parts[0], b64(other.to_string().as_bytes()), parts[2]);
        assert_eq!(verify(&forged).unwrap_err(), TokenError::Signature);
        for junk in ["", "a.b", "a.b.c.d", "é.é.é", "e30.e30.e30"] {
            assert!(matches!(verify(junk), Err(TokenError::Malformed | TokenError::Algorithm)), "{junk}");
        }
    }

    #[test]
    fn checks_issuer_audience_and_times() {
        let with = |change: &dyn Fn(&mut Value)| {
            let mut c = claims();
            change(&mut c);
            verify(&sign("RS256", Some("r1"), &c))
        };
        assert_eq!(with(&|c| c["iss"] = json!("https://evil.example")), Err(TokenError::Issuer));
        assert_eq!(with(&|c| c["aud"] = json!("billing")), Err(TokenError::Audience));
        assert_eq!(with(&|c| c["exp"] = json!(NOW - 31)), Err(TokenError::Expired));
        assert!(with(&|c| c["exp"] = json!(NOW - 29)).is_ok(), "within the leeway");
        assert_eq!(with(&|c| c["nbf"] = json!(NOW + 60)), Err(TokenError::NotYetValid));
        assert_eq!(with(&|c| c["iat"] = json!(NOW + 60)), Err(TokenError::NotYetValid));
        assert_eq!(with(&|c| c["exp"] = json!(NOW + 2 * 24 * 3600)), Err(TokenError::LifetimeTooLong));
        assert_eq!(with(&|c| c["exp"] = json!(i64::MAX as f64 * 4.0)), Err(TokenError::LifetimeTooLong));
        assert_eq!(with(&|c| c["exp"] = json!("soon")), Err(TokenError::MissingClaim("exp")));
        assert_eq!(with(&|c| c["sub"] = json!("")), Err(TokenError::MissingClaim("naming the user")));
        let by_oid = OidcRules { subject_claim: "oid".into(), ..rules() };
        let mut with_oid = claims();
        with_oid["oid"] = json!("b5a1");
        let token = sign("RS256", Some("r1"), &with_oid);
        let identity = SignedToken::parse(&token).unwrap().verify(&KeySet::parse(&jwks()).unwrap(), &by_oid, now());
        assert_eq!(identity.unwrap().subject, "b5a1");
        assert_eq!(with(&|c| c["tid"] = json!(null)), Err(TokenError::MissingClaim("naming the tenant")));
        let unverified = with(&|c| c["email_verified"] = json!(false)).unwrap();
        assert_eq!(unverified.verified_email(), None);
        assert_eq!(with(&|c| c["email_verified"] = json!("true")).unwrap().verified_email(), Some("ada@acme.example"));
    }
}
