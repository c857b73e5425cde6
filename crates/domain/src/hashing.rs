//! Stored forms of API-key secrets, as self-describing PHC-style strings.
//!
//! * **Current scheme, `$sha256$v=1$<digest>`**: SHA-256 of the whole key,
//!   unsalted, compared in constant time. A key carries about 273 random bits
//!   (202 in its secret part alone), so no hash speed makes guessing or
//!   inverting feasible, and a salt adds nothing (no two keys share a secret;
//!   no precomputed table can cover 2^200 inputs). A copy of the database
//!   gives neither a secret nor a working key. This is what GitHub, Stripe
//!   and Unkey store for machine tokens; verifying costs about a microsecond.
//! * **Legacy scheme, argon2id** (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`):
//!   what keys made before were stored with (OWASP *password* parameters,
//!   tens of milliseconds of CPU). Still verified, and re-hashed to the current
//!   scheme on their first successful verification ([`needs_upgrade`]).
//!   Verifying one is CPU-bound: async callers run it on a blocking pool. Its
//!   19 MiB of working memory comes from a small pool of reused buffers, so
//!   memory stays flat under a stream of legacy verifications.

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use rand::TryRng;
use rand::rngs::SysRng;

use sha2::{Digest, Sha256};

use crate::secret::{ApiKeySecret, ParsedKey};

/// The prefix of the current scheme's stored form.
const SHA256_PREFIX: &str = "$sha256$v=1$";
/// The prefix of an imported SHA-512 hash.
pub const SHA512_PREFIX: &str = "$sha512$";

/// Legacy argon2id memory cost in KiB.
pub const M_COST_KIB: u32 = 19_456;
/// Iterations.
pub const T_COST: u32 = 2;
/// Parallelism.
pub const P_COST: u32 = 1;
/// Salt length in bytes.
pub const SALT_LEN: usize = 16;
/// Hash length in bytes.
pub const HASH_LEN: usize = 32;
/// Most working buffers kept for reuse.
const POOLED_BUFFERS: usize = 8;

static BUFFERS: Mutex<Vec<Vec<Block>>> = Mutex::new(Vec::new());

/// Hashing failed (randomness for the salt unavailable, or a parameter error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not hash the API key: {0}")]
pub struct HashingFailed(String);

/// How a stored hash was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashScheme {
    /// SHA-256: verified inline in about a microsecond.
    Sha256,
    /// Argon2id from before: verified on a blocking pool, then upgraded.
    LegacyArgon2id,
    /// SHA-512 of the whole key, imported from another system
    /// (`$sha512$<hex>`; djangorestframework-api-key stores these).
    ImportedSha512,
}

impl HashScheme {
    /// The scheme of a stored hash; `None` for something unrecognised (which
    /// verifies nothing).
    pub fn of(stored: &str) -> Option<Self> {
        if stored.starts_with(SHA256_PREFIX) {
            Some(HashScheme::Sha256)
        } else if stored.starts_with("$argon2id$") {
            Some(HashScheme::LegacyArgon2id)
        } else if stored.starts_with(SHA512_PREFIX) {
            Some(HashScheme::ImportedSha512)
        } else {
            None
        }
    }
}

/// Whether a stored hash should be replaced by [`hash_secret`]'s form once
/// the presented key has verified against it.
pub fn needs_upgrade(stored: &str) -> bool {
    HashScheme::of(stored) != Some(HashScheme::Sha256)
}

fn sha256_phc(key: &str) -> String {
    format!("{SHA256_PREFIX}{}", B64.encode(Sha256::digest(key.as_bytes())))
}

/// The stored form (current scheme) of any key string: a presented key
/// that just verified against an older scheme, or an imported plaintext.
pub fn sha256_stored(key: &str) -> String {
    sha256_phc(key)
}

/// The current scheme's stored form of a SHA-256 digest (an import's hex).
pub fn sha256_stored_from_digest(digest: &[u8; 32]) -> String {
    format!("{SHA256_PREFIX}{}", B64.encode(digest))
}

/// The stored form of a new secret (current scheme).
pub fn hash_secret(secret: &ApiKeySecret) -> String {
    sha256_phc(secret.expose())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Does the work of checking a presented key against a current-scheme hash
/// and throws the result away: an unknown lookup id then costs what a wrong
/// secret costs, so timing does not tell whether a leaked prefix is live.
pub fn verify_nothing(presented: &ParsedKey<'_>) {
    let reference = sha256_phc("lk_");
    let _ = std::hint::black_box(constant_time_eq(sha256_phc(presented.expose()).as_bytes(), reference.as_bytes()));
}

/// Runs `f` with `blocks` argon2 memory blocks, reusing pooled buffers.
fn with_memory<T>(blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
    let pooled = BUFFERS.lock().ok().and_then(|mut pool| pool.pop()).filter(|b| b.len() == blocks);
    let mut buffer = pooled.unwrap_or_else(|| vec![Block::default(); blocks]);
    let result = f(&mut buffer);
    if blocks == M_COST_KIB as usize
        && let Ok(mut pool) = BUFFERS.lock()
        && pool.len() < POOLED_BUFFERS
    {
        pool.push(buffer);
    }
    result
}

fn argon(m: u32, t: u32, p: u32, len: usize) -> Result<Argon2<'static>, HashingFailed> {
    let params = Params::new(m, t, p, Some(len)).map_err(|e| HashingFailed(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn compute(argon: &Argon2<'_>, m: u32, pwd: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), HashingFailed> {
    let blocks = usize::try_from(m).map_err(|e| HashingFailed(e.to_string()))?;
    with_memory(blocks, |memory| argon.hash_password_into_with_memory(pwd, salt, out, memory))
        .map_err(|e| HashingFailed(e.to_string()))
}

/// Hashes a secret the way keys were stored before the current scheme
/// (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`, fresh 16-byte salt): for
/// fixtures of old databases and for benchmarks, never for new keys.
pub fn legacy_argon2id_hash(secret: &ApiKeySecret) -> Result<String, HashingFailed> {
    argon2id_hash_of(secret.expose())
}

/// Hashes any key string with the legacy argon2id parameters (how another
/// system might have stored its keys).
pub fn argon2id_hash_of(key: &str) -> Result<String, HashingFailed> {
    let mut salt = [0u8; SALT_LEN];
    SysRng.try_fill_bytes(&mut salt).map_err(|_| HashingFailed("randomness unavailable".into()))?;
    let mut out = [0u8; HASH_LEN];
    compute(&argon(M_COST_KIB, T_COST, P_COST, HASH_LEN)?, M_COST_KIB, key.as_bytes(), &salt, &mut out)?;
    Ok(format!("$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}", B64.encode(salt), B64.encode(out)))
}

/// The most memory (KiB) an argon2id hash may ask for: 100 MiB, the
/// largest default of common systems (Django's `Argon2PasswordHasher`; RFC
/// 9106's second recommended option asks 64 MiB). Legacy checks run one per
/// core at most, so hashing holds at most that many times this.
pub const MAX_ARGON2_M_KIB: u32 = 102_400;
/// The most work (memory × passes, KiB) one argon2id check may ask for:
/// Django's default (100 MiB × 2), about 0.1 s of one core here; OWASP's
/// options all ask ≤ 47 104.
pub const MAX_ARGON2_WORK_KIB: u64 = 204_800;
/// The most lanes (Django's default; lanes run one after the other here).
pub const MAX_ARGON2_P: u32 = 8;

/// Why an argon2id PHC string is refused: not one this crate can verify, or
/// asking more than the ceilings above.
pub fn argon2id_phc_problem(phc: &str) -> Option<String> {
    match parse_phc_unbounded(phc) {
        None => Some("the argon2id hash is not a valid PHC string".into()),
        Some(stored) => ceiling_problem(&stored),
    }
}

/// What of `stored` is above the ceilings, if anything.
fn ceiling_problem(stored: &StoredHash) -> Option<String> {
    let work = u64::from(stored.m) * u64::from(stored.t);
    if stored.m > MAX_ARGON2_M_KIB {
        Some(format!(
            "the argon2id hash asks m={} KiB of memory per check; at most {MAX_ARGON2_M_KIB} KiB (100 MiB) is accepted",
            stored.m
        ))
    } else if work > MAX_ARGON2_WORK_KIB {
        Some(format!(
            "the argon2id hash asks m×t={work} KiB of work per check; at most {MAX_ARGON2_WORK_KIB} (e.g. m=102400,t=2) is accepted"
        ))
    } else if stored.p > MAX_ARGON2_P {
        Some(format!("the argon2id hash asks p={} lanes; at most {MAX_ARGON2_P} are accepted", stored.p))
    } else {
        None
    }
}

/// A stored argon2id PHC string, taken apart.
struct StoredHash {
    m: u32,
    t: u32,
    p: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// A stored hash within the ceilings; anything else verifies nothing (a row
/// written before the ceilings, or corrupted, never makes a check that costly).
fn parse_phc(phc: &str) -> Option<StoredHash> {
    parse_phc_unbounded(phc).filter(|h| ceiling_problem(h).is_none())
}

fn parse_phc_unbounded(phc: &str) -> Option<StoredHash> {
    let mut parts = phc.split('$');
    let (Some(""), Some("argon2id"), Some("v=19"), Some(params), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (mut m, mut t, mut p) = (None, None, None);
    for pair in params.split(',') {
        let (name, value) = pair.split_once('=')?;
        let value: u32 = value.parse().ok()?;
        match name {
            "m" => m = Some(value),
            "t" => t = Some(value),
            "p" => p = Some(value),
            _ => return None,
        }
    }
    let hash = B64.decode(hash).ok()?;
    let (m, t, p) = (m?, t?, p?);
    // argon2's own bounds: at least one pass and lane, 8 KiB per lane.
    if t == 0 || p == 0 || u64::from(m) < 8 * u64::from(p) || hash.len() < 16 || hash.len() > 64 {
        return None;
    }
    Some(StoredHash { m, t, p, salt: B64.decode(salt).ok()?, hash })
}

/// Whether `presented` matches the stored hash, whichever its scheme. A
/// malformed stored hash verifies nothing. The comparison is constant-time.
/// For a legacy hash this is CPU-bound for tens of milliseconds.
pub fn verify_secret(presented: &ParsedKey<'_>, stored_phc: &str) -> bool {
    verify_raw(presented.expose(), stored_phc)
}

/// As [`verify_secret`], for any key string (an imported key in its
/// original format).
pub fn verify_raw(presented: &str, stored_phc: &str) -> bool {
    match HashScheme::of(stored_phc) {
        Some(HashScheme::Sha256) => constant_time_eq(sha256_phc(presented).as_bytes(), stored_phc.as_bytes()),
        Some(HashScheme::LegacyArgon2id) => verify_argon2id(presented, stored_phc),
        Some(HashScheme::ImportedSha512) => {
            let hex = sha2::Sha512::digest(presented.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>();
            constant_time_eq(format!("{SHA512_PREFIX}{hex}").as_bytes(), stored_phc.as_bytes())
        }
        None => false,
    }
}

fn verify_argon2id(presented: &str, stored_phc: &str) -> bool {
    let Some(stored) = parse_phc(stored_phc) else { return false };
    let Ok(argon) = argon(stored.m, stored.t, stored.p, stored.hash.len()) else { return false };
    let mut out = vec![0u8; stored.hash.len()];
    if compute(&argon, stored.m, presented.as_bytes(), &stored.salt, &mut out).is_err() {
        return false;
    }
    constant_time_eq(&out, &stored.hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[test]
    fn new_hashes_are_sha256_and_verify_only_their_own_key() {
        let secret = ApiKeySecret::generate().unwrap();
        let phc = hash_secret(&secret);
        assert!(phc.starts_with("$sha256$v=1$"), "{phc}");
        assert_eq!(phc.len(), SHA256_PREFIX.len() + 43);
        assert!(!phc.contains(&secret.expose()[3..]));
        assert_eq!(HashScheme::of(&phc), Some(HashScheme::Sha256));
        assert!(!needs_upgrade(&phc));
        let parsed = ParsedKey::parse(secret.expose()).unwrap();
        assert!(verify_secret(&parsed, &phc));
        assert_eq!(sha256_stored(parsed.expose()), phc);
        let other = ApiKeySecret::generate().unwrap();
        assert!(!verify_secret(&ParsedKey::parse(other.expose()).unwrap(), &phc));
        assert!(!verify_secret(&parsed, "$sha256$v=1$"));
        assert!(!verify_secret(&parsed, &phc[..phc.len() - 1]));
        verify_nothing(&parsed);
    }

    #[test]
    fn legacy_hash_is_argon2id_with_owasp_parameters_and_verifies() {
        let secret = ApiKeySecret::generate().unwrap();
        let phc = legacy_argon2id_hash(&secret).unwrap();
        assert_eq!(HashScheme::of(&phc), Some(HashScheme::LegacyArgon2id));
        assert!(needs_upgrade(&phc));
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains(secret.expose()));
        let parsed = ParsedKey::parse(secret.expose()).unwrap();
        assert!(verify_secret(&parsed, &phc));

        let other = ApiKeySecret::generate().unwrap();
        assert!(!verify_secret(&ParsedKey::parse(other.expose()).unwrap(), &phc));
        for bad in [
            "not a phc string",
            "",
            "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=99999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(!verify_secret(&parsed, bad), "{bad}");
        }
    }

    #[test]
    fn interoperates_with_the_argon2_crate() {
        let secret = ApiKeySecret::generate().unwrap();
        let ours = legacy_argon2id_hash(&secret).unwrap();
        let reference =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap());
        assert!(PasswordVerifier::<str>::verify_password(&reference, secret.expose().as_bytes(), &ours).is_ok());
        let theirs =
            reference.hash_password_with_salt(secret.expose().as_bytes(), b"0123456789abcdef").unwrap().to_string();
        assert!(verify_secret(&ParsedKey::parse(secret.expose()).unwrap(), &theirs));
    }

    #[test]
    fn costly_parameters_are_refused_with_the_ceiling_named() {
        let with = |params: &str| {
            format!("$argon2id$v=19${params}$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGg")
        };
        for ok in ["m=19456,t=2,p=1", "m=102400,t=2,p=8", "m=65536,t=3,p=4", "m=47104,t=1,p=1"] {
            assert_eq!(argon2id_phc_problem(&with(ok)), None, "{ok}");
        }
        for (bad, says) in [
            ("m=2097152,t=64,p=16", "memory"),
            ("m=524288,t=2,p=1", "memory"),
            ("m=65536,t=4,p=1", "work"),
            ("m=19456,t=2,p=16", "lanes"),
        ] {
            let problem = argon2id_phc_problem(&with(bad)).unwrap_or_default();
            assert!(problem.contains(says), "{bad}: {problem}");
            let parsed = ParsedKey::parse("lk_000000000000000000000000000000000000000000000000000").ok();
            if let Some(parsed) = parsed {
                assert!(!verify_secret(&parsed, &with(bad)), "a row above the ceiling verifies nothing");
            }
        }
        assert!(argon2id_phc_problem("$argon2id$v=19$m=8,t=0,p=1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA").is_some());
    }

    #[test]
    fn salts_differ() {
        let secret = ApiKeySecret::generate().unwrap();
        assert_ne!(legacy_argon2id_hash(&secret).unwrap(), legacy_argon2id_hash(&secret).unwrap());
    }
}
