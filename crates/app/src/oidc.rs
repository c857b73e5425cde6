//! Sign-in with the company's identity provider: OpenID Connect access tokens.
//!
//! The token rules are the domain's ([`latchkey_domain::oidc`]); this module
//! keeps the provider's key set and finds who a valid token names. The key
//! set is fetched through a [`KeySetSource`] (HTTP in the server) when first
//! needed, again when a token names a `kid` it does not hold (the provider
//! rotated its keys) or when it is an hour old, never more than once per
//! [`OidcSettings::min_refresh`] — so a flood of tokens with random `kid`s
//! costs the provider one request per interval — and a failed fetch keeps
//! the last good set.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Duration, Utc};
use latchkey_domain::admin_token::TokenError;
use latchkey_domain::oidc::{KeySet, OidcIdentity, OidcRules, SignedToken};
use latchkey_domain::{Clock, Cloud};

use crate::auth::{Authentication, Principal};
use crate::metrics::Metrics;
use crate::{App, AppResult};

/// What fetching a key set gives: the set, or why not (for the log).
pub type KeySetFuture<'a> = Pin<Box<dyn Future<Output = Result<KeySet, String>> + Send + 'a>>;

/// Where the provider's current key set comes from.
pub trait KeySetSource: Send + Sync + fmt::Debug {
    /// Fetches the key set the provider publishes now.
    fn fetch(&self) -> KeySetFuture<'_>;
}

/// How OIDC tokens are checked and their key set refreshed.
#[derive(Clone, Debug)]
pub struct OidcSettings {
    /// Issuer, audience, claims and longest lifetime.
    pub rules: OidcRules,
    /// The shortest time between two fetches of the key set.
    pub min_refresh: Duration,
    /// Age after which the key set is fetched again on its next use.
    pub max_age: Duration,
}

impl OidcSettings {
    /// The default refresh timing: at most one fetch per 30 s, a fresh set every hour.
    pub fn new(rules: OidcRules) -> Self {
        OidcSettings { rules, min_refresh: Duration::seconds(30), max_age: Duration::hours(1) }
    }
}

#[derive(Debug, Default)]
struct Fetches {
    /// When a fetch was last tried, successful or not.
    attempted: Option<DateTime<Utc>>,
    /// When the current set was fetched.
    fetched: Option<DateTime<Utc>>,
}

/// Checks OIDC access tokens against the provider's cached key set.
#[derive(Debug)]
pub struct OidcVerifier {
    settings: OidcSettings,
    source: Arc<dyn KeySetSource>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    keys: RwLock<Arc<KeySet>>,
    fetches: tokio::sync::Mutex<Fetches>,
}

impl OidcVerifier {
    /// A verifier with no keys yet: the first token fetches them.
    fn new(
        settings: OidcSettings,
        source: Arc<dyn KeySetSource>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        OidcVerifier {
            settings,
            source,
            clock,
            metrics,
            keys: RwLock::new(Arc::default()),
            fetches: tokio::sync::Mutex::new(Fetches::default()),
        }
    }

    fn keys(&self) -> Arc<KeySet> {
        self.keys.read().map(|k| k.clone()).unwrap_or_default()
    }

    /// Checks `token`'s signature and claims, fetching the key set first if
    /// it does not know the token's key (and may fetch now).
    pub async fn verify(&self, token: &SignedToken<'_>) -> Result<OidcIdentity, TokenError> {
        if !self.keys().knows(token.kid()) {
            self.refresh(|keys| keys.knows(token.kid()), true).await;
        } else {
            // An old set is refreshed by whoever comes first; nobody waits for it.
            self.refresh(|_| false, false).await;
        }
        token.verify(&self.keys(), &self.settings.rules, self.clock.now())
    }

    /// Fetches the key set unless `satisfied` by the current one, unless it
    /// was tried within `min_refresh`, and — when not `needed` — unless the
    /// set is younger than `max_age` or another task is already fetching.
    async fn refresh(&self, satisfied: impl Fn(&KeySet) -> bool, needed: bool) {
        let mut fetches = if needed {
            self.fetches.lock().await
        } else {
            match self.fetches.try_lock() {
                Ok(fetches) => fetches,
                Err(_) => return,
            }
        };
        let now = self.clock.now();
        if !needed && fetches.fetched.is_some_and(|at| now - at < self.settings.max_age) {
            return;
        }
        // Another task may have fetched while this one waited.
        if satisfied(&self.keys()) || fetches.attempted.is_some_and(|at| now - at < self.settings.min_refresh) {
            return;
        }
        fetches.attempted = Some(now);
        let fetched = self.source.fetch().await;
        self.metrics.oidc_key_fetch(fetched.is_ok());
        match fetched {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "fetched the identity provider's signing keys");
                if let Ok(mut current) = self.keys.write() {
                    *current = Arc::new(keys);
                }
                fetches.fetched = Some(now);
            }
            Err(error) => tracing::warn!(
                %error,
                kept = self.keys().len(),
                "the identity provider's signing keys could not be fetched; keeping the last good ones"
            ),
        }
    }
}

impl App {
    /// The same application, also accepting access tokens of the company's
    /// identity provider, whose key set comes from `source`.
    pub fn with_oidc(mut self, settings: OidcSettings, source: Arc<dyn KeySetSource>) -> Self {
        let verifier = OidcVerifier::new(settings, source, self.clock.clone(), self.metrics.clone());
        self.oidc = Some(Arc::new(verifier));
        self
    }

    /// The admin an OIDC access token names: its tenant by id or external
    /// id, its user by subject (the SCIM `externalId`) or else by verified
    /// email, its role from the database. Admins signed in this way act in
    /// the employee cloud, the one where keys are managed.
    pub(crate) async fn authenticate_oidc(
        &self,
        oidc: &OidcVerifier,
        token: &SignedToken<'_>,
    ) -> AppResult<Authentication> {
        let refused = |reason: &str| Ok(Authentication::Refused(reason.into()));
        let identity = match oidc.verify(token).await {
            Ok(identity) => identity,
            Err(e) => return Ok(Authentication::Refused(crate::auth::token_refusal(e))),
        };
        let Some(tenant) = self.store.tenant_by_id_or_external_id(&identity.tenant).await? else {
            return refused("The token's tenant is not known to Latchkey.");
        };
        let user = match self.store.user_by_external_id(tenant.id, &identity.subject).await? {
            Some(user) => Some(user),
            None => match identity.verified_email() {
                Some(email) => self.store.user_by_email(tenant.id, email).await?,
                None => None,
            },
        };
        let Some(user) = user else {
            return if identity.email.is_some() && identity.verified_email().is_none() {
                refused(
                    "No user of the token's tenant has its subject as external id, and its email is not verified, so it cannot name a user.",
                )
            } else {
                refused("No user of the token's tenant has its subject as external id or its verified email.")
            };
        };
        if !user.active {
            return refused("The token's user is deactivated.");
        }
        Ok(Authentication::Authenticated(Principal::Admin { user, tenant, cloud: Cloud::Employee }))
    }
}
