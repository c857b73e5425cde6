//! What every HTTP handler shares: the schema, the application, the limits
//! and the outside parties the handlers talk to.

use std::sync::Arc;

use latchkey_app::App;
use latchkey_graphql::LatchkeySchema;

use crate::config::HttpLimits;

/// What every HTTP handler shares.
#[derive(Clone)]
pub struct ServerContext {
    /// The executable schema (over `app`).
    pub schema: LatchkeySchema,
    /// Every use case.
    pub app: App,
    /// Connection and request limits.
    pub limits: HttpLimits,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<latchkey_domain::restrictions::Network>>,
    /// GitHub's secret-scanning keys.
    pub github: Arc<crate::github::GithubKeys>,
    /// The identity provider, when admins sign in through one.
    pub oidc_provider: Option<Arc<crate::oidc::Provider>>,
    /// The API keys page's "Sign in with your organisation".
    pub page_sign_in: Option<crate::oidc::PageSignIn>,
}

impl std::fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerContext").field("app", &self.app).finish_non_exhaustive()
    }
}
