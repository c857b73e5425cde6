//! Argon2id hashing of API-key secrets (OWASP parameters: m=19456 KiB, t=2, p=1).
//!
//! These functions are CPU-bound (tens of milliseconds): async callers must run
//! them on a blocking pool.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use rand::TryRng;
use rand::rngs::SysRng;

use crate::secret::{ApiKeySecret, ParsedKey};

/// Memory cost in KiB.
pub const M_COST_KIB: u32 = 19_456;
/// Iterations.
pub const T_COST: u32 = 2;
/// Parallelism.
pub const P_COST: u32 = 1;

/// Hashing failed (randomness for the salt unavailable, or a parameter error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not hash the API key: {0}")]
pub struct HashingFailed(String);

fn hasher() -> Result<Argon2<'static>, HashingFailed> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|e| HashingFailed(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a secret into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$...`)
/// with a fresh 16-byte salt from the operating system.
pub fn hash_secret(secret: &ApiKeySecret) -> Result<String, HashingFailed> {
    let mut salt = [0u8; 16];
    SysRng.try_fill_bytes(&mut salt).map_err(|_| HashingFailed("randomness unavailable".into()))?;
    let hash = hasher()?
        .hash_password_with_salt(secret.expose().as_bytes(), &salt)
        .map_err(|e| HashingFailed(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `presented` matches the stored PHC hash. A malformed stored hash
/// verifies nothing. The comparison inside argon2 is constant-time.
pub fn verify_secret(presented: &ParsedKey<'_>, stored_phc: &str) -> bool {
    match hasher() {
        Ok(argon) => {
            PasswordVerifier::<str>::verify_password(&argon, presented.expose().as_bytes(), stored_phc).is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(!verify_secret(&parsed, "not a phc string"));
        assert!(!verify_secret(&parsed, ""));
    }

    #[test]
    fn salts_differ() {
        let secret = ApiKeySecret::generate().unwrap();
        assert_ne!(hash_secret(&secret).unwrap(), hash_secret(&secret).unwrap());
    }
}
