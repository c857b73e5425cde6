//! Keys from another system, kept in their original format: how an import
//! record's secret or hash is stored, and the lookups by which a presented
//! key in that format is found again with one indexed query (never a scan).
//!
//! A key is found by `prefix:<public part>` when its format has one (the
//! part before the first `.`, as djangorestframework-api-key's
//! `prefix.secret`), else by `sha256:<hex>` or `sha512:<hex>` of the whole
//! key: the digest a system that stored unsalted hashes already has.

use sha2::{Digest, Sha256, Sha512};

use crate::hashing::{HashScheme, SHA512_PREFIX, sha256_stored, sha256_stored_from_digest};

/// Shortest and longest foreign key accepted for verification.
pub const FOREIGN_KEY_LEN: std::ops::RangeInclusive<usize> = 8..=256;
/// Longest public prefix.
const MAX_PREFIX_LEN: usize = 64;

/// How an imported key is stored and found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedSecret {
    /// What it is found by (`prefix:…`, `sha256:…` or `sha512:…`).
    pub lookup: String,
    /// Its stored hash (`$sha256$v=1$…`, `$sha512$…` or `$argon2id$…`).
    pub hash: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn prefix_lookup(prefix: &str) -> Result<String, String> {
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix.bytes().all(|b| b.is_ascii_graphic() && b != b'.');
    if ok {
        Ok(format!("prefix:{prefix}"))
    } else {
        Err("the prefix must be 1 to 64 visible characters without a dot".into())
    }
}

/// Whether `raw` could be a foreign key at all (what is not is `MALFORMED`
/// without a lookup).
pub fn plausible_foreign_key(raw: &str) -> bool {
    FOREIGN_KEY_LEN.contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic())
}

/// The lookups a presented foreign key may be stored under.
pub fn lookups_of(raw: &str) -> Vec<String> {
    let mut lookups = vec![
        format!("sha256:{}", hex(&Sha256::digest(raw.as_bytes()))),
        format!("sha512:{}", hex(&Sha512::digest(raw.as_bytes()))),
    ];
    if let Some((prefix, _)) = raw.split_once('.')
        && let Ok(lookup) = prefix_lookup(prefix)
    {
        lookups.push(lookup);
    }
    lookups
}

/// A plaintext secret from an import: hashed at once (SHA-256), found by
/// its prefix when `prefix` is given (and the key starts with it), else by
/// its SHA-256.
pub fn from_plaintext(secret: &str, prefix: Option<&str>) -> Result<ImportedSecret, String> {
    if !plausible_foreign_key(secret) {
        return Err("the secret must be 8 to 256 visible ASCII characters".into());
    }
    let lookup = match prefix {
        Some(p) if secret.starts_with(&format!("{p}.")) => prefix_lookup(p)?,
        Some(_) => return Err("the secret does not start with its prefix and a dot".into()),
        None => format!("sha256:{}", hex(&Sha256::digest(secret.as_bytes()))),
    };
    Ok(ImportedSecret { lookup, hash: sha256_stored(secret) })
}

/// A hash from an import: `sha256:<hex>`, `sha512:<hex>` (or
/// djangorestframework-api-key's `sha512$$<hex>`), or an argon2id PHC string,
/// each of the whole key. An argon2id hash is salted, so it needs `prefix`.
pub fn from_hash(hash: &str, prefix: Option<&str>) -> Result<ImportedSecret, String> {
    let hex_digest = |digest: &str, len: usize| {
        (digest.len() == len && digest.bytes().all(|b| b.is_ascii_hexdigit())).then(|| digest.to_ascii_lowercase())
    };
    let (by_hash, stored) = if let Some(digest) = hash.strip_prefix("sha256:") {
        let digest = hex_digest(digest, 64).ok_or("a sha256 hash is 64 hexadecimal digits")?;
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).map_err(|_| "not hexadecimal")?;
        }
        (Some(format!("sha256:{digest}")), sha256_stored_from_digest(&bytes))
    } else if let Some(digest) = hash.strip_prefix("sha512:").or_else(|| hash.strip_prefix("sha512$$")) {
        let digest = hex_digest(digest, 128).ok_or("a sha512 hash is 128 hexadecimal digits")?;
        (Some(format!("sha512:{digest}")), format!("{SHA512_PREFIX}{digest}"))
    } else if hash.starts_with("$argon2id$") {
        if HashScheme::of(hash) != Some(HashScheme::LegacyArgon2id) {
            return Err("the argon2id hash is not a valid PHC string".into());
        }
        if let Some(problem) = crate::hashing::argon2id_phc_problem(hash) {
            return Err(problem);
        }
        (None, hash.to_owned())
    } else {
        return Err("unknown hash algorithm: give sha256:<hex>, sha512:<hex> or an argon2id PHC string".into());
    };
    let lookup = match (prefix, by_hash) {
        (Some(p), _) => prefix_lookup(p)?,
        (None, Some(by_hash)) => by_hash,
        (None, None) => return Err("an argon2id hash is salted: give the key's public prefix to find it by".into()),
    };
    Ok(ImportedSecret { lookup, hash: stored })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashing::{argon2id_hash_of, verify_raw};

    #[test]
    fn every_accepted_form_verifies_its_key_and_is_found_by_its_lookups() {
        let key = "RS87yjmw.rTeKCNTqoNcXjtmKOf1a7ANBfSCWKZ6J";
        let sha512 = hex(&Sha512::digest(key.as_bytes()));
        let sha256 = hex(&Sha256::digest(key.as_bytes()));
        let lookups = lookups_of(key);
        for (hash, prefix) in [
            (format!("sha512$${sha512}"), Some("RS87yjmw")),
            (format!("sha512:{}", sha512.to_uppercase()), None),
            (format!("sha256:{sha256}"), None),
            (argon2id_hash_of(key).unwrap(), Some("RS87yjmw")),
        ] {
            let imported = from_hash(&hash, prefix).unwrap_or_else(|e| panic!("{hash}: {e}"));
            assert!(verify_raw(key, &imported.hash), "{hash}");
            assert!(!verify_raw("RS87yjmw.wrong", &imported.hash), "{hash}");
            assert!(lookups.contains(&imported.lookup), "{}", imported.lookup);
        }
        let plain = from_plaintext("unkey_3ZbQhZ6xV9", None).unwrap();
        assert!(verify_raw("unkey_3ZbQhZ6xV9", &plain.hash));
        assert!(lookups_of("unkey_3ZbQhZ6xV9").contains(&plain.lookup));
    }

    #[test]
    fn bad_records_are_refused_with_a_reason() {
        let long_sha256 = format!("sha256:{}", "a".repeat(64));
        for (hash, prefix) in [
            ("md5:abc", None),
            ("sha256:xyz", None),
            ("sha512:00", None),
            ("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", Some("p")),
            (long_sha256.as_str(), Some("has.dot")),
        ] {
            assert!(from_hash(hash, prefix).is_err(), "{hash}");
        }
        let argon = argon2id_hash_of("a.b-secret").unwrap();
        assert!(from_hash(&argon, None).unwrap_err().contains("prefix"));
        assert!(from_plaintext("short", None).is_err());
        assert!(from_plaintext("abc.defghijk", Some("xyz")).is_err());
        assert!(!plausible_foreign_key("has space inside"));
        assert!(!plausible_foreign_key(&"x".repeat(300)));
    }
}
