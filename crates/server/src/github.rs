//! GitHub secret scanning: GitHub sends every match of Latchkey's key pattern
//! in a public repository to `POST /v1/secret-scanning/github`, signed with
//! ECDSA P-256 over the raw body. The public keys are published at
//! `LATCHKEY_GITHUB_KEYS_URL`; they are cached, fetched again when a request
//! names an identifier not seen yet (at most every ten seconds, by default), and the
//! cached copy is kept when a fetch fails.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use tokio::sync::Mutex;

/// Where GitHub publishes its secret-scanning keys.
pub const DEFAULT_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";

/// The shortest time between two fetches of the keys, unless configured.
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct PublishedKeys {
    public_keys: Vec<PublishedKey>,
}

#[derive(Deserialize)]
struct PublishedKey {
    key_identifier: String,
    key: String,
}

/// GitHub's signing keys, cached.
#[derive(Debug)]
pub struct GithubKeys {
    url: String,
    client: reqwest::Client,
    min_refresh: Duration,
    state: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    keys: HashMap<String, VerifyingKey>,
    fetched: Option<Instant>,
}

impl GithubKeys {
    /// Keys published at `url`, fetched when first needed and at most every
    /// `min_refresh` after that.
    pub fn new(url: &str, min_refresh: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        Ok(GithubKeys { url: url.to_owned(), client, min_refresh, state: Mutex::new(Cache::default()) })
    }

    /// The key named `identifier`, fetching the published keys again if it is
    /// not cached (and they were not fetched in the last ten seconds).
    async fn key(&self, identifier: &str) -> Option<VerifyingKey> {
        let mut cache = self.state.lock().await;
        if let Some(key) = cache.keys.get(identifier) {
            return Some(*key);
        }
        if cache.fetched.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return None;
        }
        cache.fetched = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => cache.keys = keys,
            Err(e) => {
                tracing::warn!(error = %e, url = %self.url, "GitHub's secret-scanning keys could not be fetched; keeping the cached ones")
            }
        }
        cache.keys.get(identifier).copied()
    }

    async fn fetch(&self) -> Result<HashMap<String, VerifyingKey>, String> {
        let response = self.client.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let published: PublishedKeys = response.json().await.map_err(|e| e.to_string())?;
        Ok(published
            .public_keys
            .into_iter()
            .filter_map(|k| VerifyingKey::from_public_key_pem(&k.key).ok().map(|key| (k.key_identifier, key)))
            .collect())
    }

    /// Whether `body` was signed by the key named `identifier`
    /// (`signature`: base64 of a DER ECDSA signature over SHA-256 of the body).
    pub async fn verify(&self, identifier: &str, signature: &str, body: &[u8]) -> bool {
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else { return false };
        let Ok(signature) = Signature::from_der(&der) else { return false };
        let Some(key) = self.key(identifier).await else { return false };
        key.verify(body, &signature).is_ok()
    }
}

/// One match GitHub reports.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SecretMatch {
    /// The matched string.
    pub token: String,
    /// The pattern's type, echoed back.
    #[serde(rename = "type")]
    pub token_type: String,
    /// Where it was found.
    pub url: Option<String>,
    /// The kind of place (`content`, `commit`, ...).
    pub source: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn garbage_signatures_are_refused_without_a_fetch() {
        let keys = GithubKeys::new("http://127.0.0.1:9/unreachable", DEFAULT_MIN_REFRESH).unwrap();
        assert!(!keys.verify("id", "not base64!", b"[]").await);
        assert!(!keys.verify("id", "AAAA", b"[]").await);
        assert!(keys.state.lock().await.fetched.is_none(), "nothing was fetched for a malformed signature");
    }
}
