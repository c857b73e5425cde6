//! Argon2id hashing of API-key secrets (OWASP parameters: m=19456 KiB, t=2, p=1).
//!
//! These functions are CPU-bound (tens of milliseconds): async callers must run
//! them on a blocking pool. The 19 MiB of argon2 working memory comes from a
//! small pool of reused buffers rather than a fresh allocation per call, so
//! the process's memory stays flat under a steady stream of hashes.

use std::sync::Mutex;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use rand::TryRng;
use rand::rngs::SysRng;

use crate::secret::{ApiKeySecret, ParsedKey};

/// Memory cost in KiB.
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

/// Hashes a secret into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`)
/// with a fresh 16-byte salt from the operating system.
pub fn hash_secret(secret: &ApiKeySecret) -> Result<String, HashingFailed> {
    let mut salt = [0u8; SALT_LEN];
    SysRng.try_fill_bytes(&mut salt).map_err(|_| HashingFailed("randomness unavailable".into()))?;
    let mut out = [0u8; HASH_LEN];
    compute(&argon(M_COST_KIB, T_COST, P_COST, HASH_LEN)?, M_COST_KIB, secret.expose().as_bytes(), &salt, &mut out)?;
    Ok(format!("$argon2id$v=19$m={M_COST_KIB},t={T_COST},p={P_COST}${}${}", B64.encode(salt), B64.encode(out)))
}

/// A stored argon2id PHC string, taken apart.
struct StoredHash {
    m: u32,
    t: u32,
    p: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn parse_phc(phc: &str) -> Option<StoredHash> {
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
    // Refuse absurd parameters from a corrupted row rather than allocating.
    let (m, t, p) = (m?, t?, p?);
    if m > 1 << 21 || t > 64 || p > 16 || hash.len() < 16 || hash.len() > 64 {
        return None;
    }
    Some(StoredHash { m, t, p, salt: B64.decode(salt).ok()?, hash })
}

/// Whether `presented` matches the stored PHC hash. A malformed stored hash
/// verifies nothing. The comparison is constant-time.
pub fn verify_secret(presented: &ParsedKey<'_>, stored_phc: &str) -> bool {
    let Some(stored) = parse_phc(stored_phc) else { return false };
    let Ok(argon) = argon(stored.m, stored.t, stored.p, stored.hash.len()) else { return false };
    let mut out = vec![0u8; stored.hash.len()];
    if compute(&argon, stored.m, presented.expose().as_bytes(), &stored.salt, &mut out).is_err() {
        return false;
    }
    out.iter().zip(&stored.hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hash_is_argon2id_with_owasp_parameters_and_verifies() {
        let secret = ApiKeySecret::generate().unwrap();
        let phc = hash_secret(&secret).unwrap();
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
        let ours = hash_secret(&secret).unwrap();
        let reference =
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(M_COST_KIB, T_COST, P_COST, None).unwrap());
        assert!(PasswordVerifier::<str>::verify_password(&reference, secret.expose().as_bytes(), &ours).is_ok());
        let theirs =
            reference.hash_password_with_salt(secret.expose().as_bytes(), b"0123456789abcdef").unwrap().to_string();
        assert!(verify_secret(&ParsedKey::parse(secret.expose()).unwrap(), &theirs));
    }

    #[test]
    fn salts_differ() {
        let secret = ApiKeySecret::generate().unwrap();
        assert_ne!(hash_secret(&secret).unwrap(), hash_secret(&secret).unwrap());
    }
}
