//! The API-key secret: its format, generation, parsing and checksum.
//!
//! Format: `lk_` + 12-character public lookup id + 34-character random secret +
//! 6-character checksum, all base62 (`[A-Za-z0-9]`), 55 characters in all.
//!
//! * The lookup id (~71 bits) is stored in clear and indexed, so verifying a key
//!   costs one indexed lookup and one argon2 verification.
//! * The lookup id and secret together carry 46 base62 characters (~273 bits)
//!   drawn uniformly from the operating system's random generator.
//! * The checksum is CRC32 of everything before it, in base62, so that a
//!   mistyped or truncated key is refused without touching the database.

use std::fmt;

use rand::TryRng;
use rand::rngs::SysRng;
use zeroize::Zeroize;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "lk_";
/// Length of the public lookup id.
pub const LOOKUP_ID_LEN: usize = 12;
/// Length of the random secret part.
pub const SECRET_PART_LEN: usize = 34;
/// Length of the base62 CRC32 checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Total length of a key.
pub const KEY_LEN: usize = KEY_PREFIX.len() + LOOKUP_ID_LEN + SECRET_PART_LEN + CHECKSUM_LEN;
/// Number of trailing characters shown in the key table.
pub const LAST_FOUR_LEN: usize = 4;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The operating system's random generator failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the operating system's random generator failed")]
pub struct RandomnessUnavailable;

/// A freshly generated API-key secret. Shown to the admin once, then dropped.
///
/// `Debug` is redacted and there is no `Display`: the only way to read the
/// secret is [`ApiKeySecret::expose`], so it cannot slip into a log by accident.
/// The memory is zeroed on drop.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// Generates a new secret from the operating system's random generator.
    pub fn generate() -> Result<Self, RandomnessUnavailable> {
        let mut body = String::with_capacity(KEY_LEN);
        body.push_str(KEY_PREFIX);
        fill_base62(&mut body, LOOKUP_ID_LEN + SECRET_PART_LEN)?;
        let checksum = checksum_of(body.as_bytes());
        body.push_str(&checksum);
        Ok(ApiKeySecret(body))
    }

    /// The secret itself. Call only to hand it to the admin or to hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The public lookup id embedded in the secret.
    pub fn lookup_id(&self) -> LookupId {
        LookupId(self.0[KEY_PREFIX.len()..KEY_PREFIX.len() + LOOKUP_ID_LEN].to_owned())
    }

    /// The last four characters, which the key table shows.
    pub fn last_four(&self) -> String {
        self.0[KEY_LEN - LAST_FOUR_LEN..].to_owned()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

impl Drop for ApiKeySecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The public part of a key, stored in clear and indexed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LookupId(String);

impl LookupId {
    /// The lookup id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a stored lookup id.
    pub fn from_stored(s: String) -> Self {
        LookupId(s)
    }
}

/// Why a presented key was refused before any database work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    /// Not exactly [`KEY_LEN`] characters.
    #[error("an API key is {KEY_LEN} characters long")]
    WrongLength,
    /// Does not start with `lk_`.
    #[error("an API key starts with \"lk_\"")]
    WrongPrefix,
    /// Contains something other than `[A-Za-z0-9]` after the prefix.
    #[error("an API key contains only letters and digits after its prefix")]
    BadCharacter,
    /// The checksum does not match: a typo or a truncated copy.
    #[error("the API key's checksum does not match")]
    BadChecksum,
}

/// A presented key that has the right shape and checksum.
#[derive(Clone, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    full: &'a str,
}

impl fmt::Debug for ParsedKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedKey").field("lookup_id", &self.lookup_id_str()).finish_non_exhaustive()
    }
}

impl<'a> ParsedKey<'a> {
    /// Checks shape and checksum; never touches storage and never panics.
    pub fn parse(presented: &'a str) -> Result<Self, MalformedKey> {
        if presented.len() != KEY_LEN {
            return Err(MalformedKey::WrongLength);
        }
        let rest = presented.strip_prefix(KEY_PREFIX).ok_or(MalformedKey::WrongPrefix)?;
        if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(MalformedKey::BadCharacter);
        }
        let split = KEY_LEN - CHECKSUM_LEN;
        let (body, checksum) = presented.split_at(split);
        if checksum_of(body.as_bytes()) != checksum {
            return Err(MalformedKey::BadChecksum);
        }
        Ok(ParsedKey { full: presented })
    }

    fn lookup_id_str(&self) -> &'a str {
        self.full.get(KEY_PREFIX.len()..KEY_PREFIX.len() + LOOKUP_ID_LEN).unwrap_or_default()
    }

    /// The public lookup id.
    pub fn lookup_id(&self) -> LookupId {
        LookupId(self.lookup_id_str().to_owned())
    }

    /// The whole presented key, for argon2 verification only.
    pub fn expose(&self) -> &'a str {
        self.full
    }
}

fn fill_base62(out: &mut String, count: usize) -> Result<(), RandomnessUnavailable> {
    let mut pool = [0u8; 64];
    let mut produced = 0;
    while produced < count {
        SysRng.try_fill_bytes(&mut pool).map_err(|_| RandomnessUnavailable)?;
        for &byte in &pool {
            // 248 = 4 * 62: rejecting larger bytes keeps every character equally likely.
            if byte < 248 && produced < count {
                out.push(char::from(BASE62[usize::from(byte % 62)]));
                produced += 1;
            }
        }
    }
    pool.zeroize();
    Ok(())
}

/// `body` (`lk_` + lookup id + secret part) with its checksum appended: a
/// well-formed key. Used to build test and benchmark inputs such as a wrong
/// secret for a real lookup id.
pub fn with_checksum(body: &str) -> String {
    format!("{body}{}", checksum_of(body.as_bytes()))
}

/// CRC32 of `body` as exactly [`CHECKSUM_LEN`] base62 digits (62^6 > 2^32).
fn checksum_of(body: &[u8]) -> String {
    let mut value = u64::from(crc32fast::hash(body));
    let mut digits = [b'0'; CHECKSUM_LEN];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    digits.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = ApiKeySecret::generate().unwrap();
        let s = key.expose();
        assert_eq!(s.len(), KEY_LEN);
        const { assert!(KEY_LEN >= 40) };
        assert!(s.starts_with("lk_"));
        assert!(s[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(key.last_four(), &s[s.len() - 4..]);
        assert_eq!(key.lookup_id().as_str(), &s[3..15]);
        let parsed = ParsedKey::parse(s).unwrap();
        assert_eq!(parsed.lookup_id(), key.lookup_id());
    }

    #[test]
    fn random_part_carries_at_least_192_bits() {
        let bits = ((LOOKUP_ID_LEN + SECRET_PART_LEN) as f64) * 62f64.log2();
        assert!(bits >= 192.0, "{bits}");
        let secret_bits = (SECRET_PART_LEN as f64) * 62f64.log2();
        assert!(secret_bits >= 192.0, "{secret_bits}");
    }

    #[test]
    fn keys_are_distinct_and_characters_spread() {
        let mut seen = HashSet::new();
        let mut chars = HashSet::new();
        for _ in 0..500 {
            let k = ApiKeySecret::generate().unwrap();
            chars.extend(k.expose()[3..49].chars());
            assert!(seen.insert(k.expose().to_owned()));
        }
        assert_eq!(chars.len(), 62, "every base62 character shows up");
    }

    #[test]
    fn debug_is_redacted() {
        let k = ApiKeySecret::generate().unwrap();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(k.expose()));
        assert!(!dbg.contains(&k.expose()[3..20]));
        let parsed = ParsedKey::parse(k.expose()).unwrap();
        assert!(!format!("{parsed:?}").contains(&k.expose()[15..]));
    }

    #[test]
    fn parse_refuses_every_malformation() {
        let k = ApiKeySecret::generate().unwrap();
        let s = k.expose();
        assert_eq!(ParsedKey::parse(""), Err(MalformedKey::WrongLength));
        assert_eq!(ParsedKey::parse(&s[..54]), Err(MalformedKey::WrongLength));
        assert_eq!(ParsedKey::parse(&format!("{s}x")), Err(MalformedKey::WrongLength));
        assert_eq!(ParsedKey::parse(&format!("sk_{}", &s[3..])), Err(MalformedKey::WrongPrefix));
        assert_eq!(ParsedKey::parse(&format!("{}-{}", &s[..20], &s[21..])), Err(MalformedKey::BadCharacter));
        // multi-byte characters never cause a panic on a char boundary
        assert!(ParsedKey::parse(&"é".repeat(27)).is_err());
        assert!(ParsedKey::parse(&format!("lk_{}", "é".repeat(26))).is_err());
        // a single changed character is caught by the checksum
        let mut typo = s.to_owned().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(ParsedKey::parse(&typo), Err(MalformedKey::BadChecksum));
        // swapped neighbours too
        let mut swapped = s.to_owned().into_bytes();
        if swapped[30] != swapped[31] {
            swapped.swap(30, 31);
            assert_eq!(ParsedKey::parse(&String::from_utf8(swapped).unwrap()), Err(MalformedKey::BadChecksum));
        }
    }

    #[test]
    fn with_checksum_makes_well_formed_keys() {
        let k = ApiKeySecret::generate().unwrap();
        assert_eq!(with_checksum(&k.expose()[..49]), k.expose());
        let forged = with_checksum(&format!("{}{}", &k.expose()[..15], "x".repeat(34)));
        assert!(ParsedKey::parse(&forged).is_ok());
        assert_eq!(ParsedKey::parse(&forged).unwrap().lookup_id(), k.lookup_id());
    }

    #[test]
    fn checksum_is_fixed_width_base62() {
        for input in [&b""[..], b"lk_", b"anything at all"] {
            let c = checksum_of(input);
            assert_eq!(c.len(), CHECKSUM_LEN);
            assert!(c.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_eq!(checksum_of(b""), "000000", "crc32 of nothing is 0");
    }
}
