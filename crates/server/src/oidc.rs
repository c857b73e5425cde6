//! Sign-in through the company's identity provider, the HTTP half: the
//! provider's discovery document and key set fetched over HTTP (the app's
//! [`KeySetSource`]), which the API keys page's sign-in (`console`) reads too.
//! The token rules live in `latchkey_domain::oidc`, the key cache and the
//! user mapping in `latchkey_app::oidc`.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use latchkey_app::oidc::{KeySetFuture, KeySetSource, OidcSettings};
use latchkey_domain::oidc::KeySet;
use serde::Deserialize;

/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// After a failed fetch of the discovery document, how long the page's
/// requests are answered without asking the provider again.
const DISCOVERY_RETRY_AFTER: Duration = Duration::from_secs(10);

/// OIDC sign-in as configured.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// How tokens are checked.
    pub settings: OidcSettings,
    /// The API keys page's sign-in button; none without `LATCHKEY_OIDC_CLIENT_ID`.
    pub page: Option<PageSignIn>,
}

/// What the API keys page sends to the provider's authorization endpoint.
#[derive(Clone, Debug)]
pub struct PageSignIn {
    /// `LATCHKEY_OIDC_CLIENT_ID`: the page, registered at the provider as a public client.
    pub client_id: String,
    /// `LATCHKEY_OIDC_SCOPE`.
    pub scope: String,
    /// `LATCHKEY_OIDC_AUTH_PARAMS`: extra authorization parameters, such as
    /// Auth0's `audience` or a resource indicator.
    pub extra_params: Vec<(String, String)>,
}

/// The parts of the provider's discovery document Latchkey uses.
#[derive(Clone, Debug, Deserialize)]
pub struct Discovery {
    /// The provider's issuer.
    pub issuer: String,
    jwks_uri: String,
    /// Where the page sends the browser to sign in.
    pub authorization_endpoint: Option<String>,
    /// Where the page exchanges the code for tokens.
    pub token_endpoint: Option<String>,
}

/// The provider at `LATCHKEY_OIDC_ISSUER`, read over HTTP.
#[derive(Debug)]
pub struct Provider {
    issuer: String,
    client: reqwest::Client,
    discovery: RwLock<Option<Discovery>>,
    /// When the page last found the provider unreachable.
    discovery_failed: Mutex<Option<Instant>>,
}

impl Provider {
    /// The provider whose issuer URL is `issuer`; nothing is fetched yet.
    pub fn new(issuer: &str) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Provider {
            issuer: issuer.to_owned(),
            client,
            discovery: RwLock::new(None),
            discovery_failed: Mutex::new(None),
        })
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self.client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url} answered more than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Fetches the discovery document, which must name this issuer exactly
    /// (OpenID Connect Discovery §4.3), and keeps it.
    async fn discover(&self) -> Result<Discovery, String> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let discovery: Discovery = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| format!("{url} is not a discovery document: {e}"))?;
        if discovery.issuer != self.issuer {
            return Err(format!("{url} names the issuer {:?}, not {:?}", discovery.issuer, self.issuer));
        }
        let endpoints =
            [Some(&discovery.jwks_uri), discovery.authorization_endpoint.as_ref(), discovery.token_endpoint.as_ref()];
        for endpoint in endpoints.into_iter().flatten() {
            if !reqwest::Url::parse(endpoint).is_ok_and(|u| is_secure_provider_url(&u)) {
                return Err(format!("{url} names an endpoint that is not an https URL: {endpoint:?}"));
            }
        }
        if let Ok(mut kept) = self.discovery.write() {
            *kept = Some(discovery.clone());
        }
        Ok(discovery)
    }

    /// The discovery document, fetched if it was not yet (but not again
    /// within [`DISCOVERY_RETRY_AFTER`] of a failure: page loads do not make
    /// Latchkey hammer a provider that is down).
    pub(crate) async fn discovery(&self) -> Result<Discovery, String> {
        if let Some(discovery) = self.discovery.read().ok().and_then(|d| d.clone()) {
            return Ok(discovery);
        }
        let failed_recently = |at: &Option<Instant>| at.is_some_and(|at| at.elapsed() < DISCOVERY_RETRY_AFTER);
        if self.discovery_failed.lock().is_ok_and(|at| failed_recently(&at)) {
            return Err("the provider was unreachable moments ago".into());
        }
        let discovered = self.discover().await;
        if discovered.is_err()
            && let Ok(mut at) = self.discovery_failed.lock()
        {
            *at = Some(Instant::now());
        }
        discovered
    }

    /// The origin of the provider's token endpoint, which the page posts to
    /// (none while the provider cannot be reached).
    pub async fn token_endpoint_origin(&self) -> Option<String> {
        let discovery = self.discovery().await.ok()?;
        let url = reqwest::Url::parse(discovery.token_endpoint.as_deref()?).ok()?;
        Some(url.origin().ascii_serialization())
    }
}

impl KeySetSource for Provider {
    /// The discovery document again (the key set may have moved), then the key set.
    fn fetch(&self) -> KeySetFuture<'_> {
        Box::pin(async move {
            let discovery = self.discover().await?;
            let body = self.get(&discovery.jwks_uri).await?;
            KeySet::parse(&body).map_err(|e| format!("{}: {e}", discovery.jwks_uri))
        })
    }
}

/// Whether an identity provider's URL may be used: `https`, or `http` to a
/// loopback address (a provider on this machine, as in tests).
pub fn is_secure_provider_url(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}
