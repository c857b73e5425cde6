//! Latchkey's application layer: the one home of every use case.
//!
//! Front ends (GraphQL, the REST handlers, the CLI's serving commands) hold an
//! [`App`] and nothing below it: they authenticate a request into an
//! [`Authentication`], and get a [`KeyAdmin`] (the key use cases) only from
//! [`App::key_admin`], after the permission check, so no front end can reach
//! a key operation without it. Integrations' keys are checked by the
//! [`verify::KeyVerifier`]. Errors are one [`AppError`] with stable codes.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::todo)]

pub mod auth;
mod change;
pub mod error;
mod import;
mod key_policy;
pub mod keys;
pub mod leaks;
pub mod limits;
pub mod metrics;
pub mod oidc;
pub mod operator;
mod owners;
pub mod scim;
pub mod self_rotation;
pub mod usage;
pub mod verification_stream;
pub mod verify;
pub mod webhook_dispatch;
pub mod webhooks;

use std::net::IpAddr;
use std::sync::Arc;

use latchkey_domain::admin_token::AdminTokenKey;
use latchkey_domain::{AuditChange, AuditEntry, Clock, ExpiryNotice, NoticeKind, Tenant, User};
use latchkey_store::{RevocationListener, Store};

use crate::change::Change;
use latchkey_domain::webhook_events::fields;
use latchkey_domain::webhooks::WebhookEventType;
use serde_json::Map;
use tokio::sync::Notify;

pub use auth::{Authentication, Principal};
pub use error::{AppError, AppResult, RequestId};
pub use keys::{
    AuditQuery, AuditView, DeleteKey, EditDescription, ExpirePreviousSecret, FieldViolation, GenerateKey, KeyAdmin,
    KeyTableQuery, KeyView, KeyWithSecret, Outcome, Page, RestrictionsInput, RotateKey, SetDisabled, SetExpiry,
    SetUserActive, TransferKey, TransferKeys, UpdateRestrictions, UserDirectoryQuery,
};
use latchkey_domain::restrictions::{PermissionSet, owner_permissions};
pub use latchkey_domain::restrictions::{Refusal, RequestContext};
pub use latchkey_store::{KeyCursor, KeyOrderField};
pub use verify::{KeyVerifier, VerifierConfig, VerifyOutcome};

/// How long a previous secret whose overlap ended is still recognised (to
/// answer `EXPIRED` rather than `INVALID`); it never works again meanwhile.
pub const ENDED_SECRET_KEPT: chrono::Duration = chrono::Duration::days(1);

/// Every use case, over one store, clock and verifier. Cheap to clone.
#[derive(Clone, Debug)]
pub struct App {
    store: Store,
    clock: Arc<dyn Clock>,
    token_key: Option<AdminTokenKey>,
    oidc: Option<Arc<oidc::OidcVerifier>>,
    verifier: Arc<KeyVerifier>,
    outbox: Arc<Notify>,
    leak_reports: Arc<leaks::ReportLimiter>,
    metrics: Arc<metrics::Metrics>,
    webhooks: Arc<webhooks::WebhookSetup>,
    signals: Arc<verification_stream::SignalHub>,
    /// The tenant whose `verify:stream` keys read every tenant's stream.
    operator_tenant: Option<latchkey_domain::TenantId>,
}

/// What a caller sees of itself.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// The caller's tenant.
    pub tenant: Tenant,
    /// The signed-in user; none for an API key.
    pub user: Option<User>,
    /// The API key used, as an integration may see it; none for a signed-in user.
    pub api_key: Option<KeyView>,
    /// The clouds the caller may act in.
    pub clouds: Vec<latchkey_domain::Cloud>,
    /// What an API key may do (its own permissions, bounded by its owner's);
    /// none for a signed-in user, or a key that may do everything.
    pub permissions: Option<Vec<&'static str>>,
}

/// Whether the service can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// The database answers and its schema is current.
    Ready,
    /// Migrations are pending.
    MigrationsPending,
    /// The database does not answer.
    DatabaseUnreachable,
}

impl App {
    /// The application over `store` (call within a tokio runtime: verification
    /// spawns its credential loader), telling time with `clock`, checking
    /// shared-secret admin tokens with `token_key` (none: only OIDC tokens,
    /// see `App::with_oidc`). `outbox` is woken after every change that
    /// wrote an owner notice, so the dispatcher sends it at once.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        token_key: Option<AdminTokenKey>,
        verifier: &VerifierConfig,
        outbox: Arc<Notify>,
    ) -> AppResult<Self> {
        let metrics = Arc::new(metrics::Metrics::new()?);
        let verifier =
            Arc::new(KeyVerifier::new(store.clone(), clock.clone(), verifier, metrics.clone(), outbox.clone())?);
        let sender = latchkey_notify::webhooks::HttpWebhookSender::new(
            Default::default(),
            latchkey_domain::webhook_events::ATTEMPT_TIMEOUT,
        )
        .map_err(|e| AppError::internal(&format_args!("the webhook HTTP client cannot start: {e}")))?;
        let webhooks = Arc::new(webhooks::WebhookSetup {
            sender: Arc::new(sender),
            allowed: Default::default(),
            wake: Arc::default(),
        });
        let signals = Arc::new(verification_stream::SignalHub::new(clock.now()));
        Ok(App {
            signals,
            store,
            clock,
            token_key,
            oidc: None,
            verifier,
            outbox,
            leak_reports: Arc::default(),
            metrics,
            webhooks,
            operator_tenant: None,
        })
    }

    /// Lets keys of `tenant` allowed `verify:stream` read every tenant's
    /// verification stream (`LATCHKEY_STREAM_OPERATOR_TENANT`: for a
    /// gateway serving every tenant).
    pub fn with_operator_tenant(mut self, tenant: latchkey_domain::TenantId) -> Self {
        self.operator_tenant = Some(tenant);
        self
    }

    /// Sends webhooks with `sender`, letting through the hosts `allowed`
    /// (`LATCHKEY_WEBHOOK_ALLOW_HOSTS`) despite the address rule.
    pub fn with_webhooks(
        mut self,
        sender: Arc<dyn latchkey_notify::webhooks::WebhookSender>,
        allowed: latchkey_domain::webhooks::AllowedHosts,
    ) -> Self {
        self.webhooks = Arc::new(webhooks::WebhookSetup { sender, allowed, wake: Arc::clone(&self.webhooks.wake) });
        self
    }

    /// The current time, from the application's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// The service's metrics (see [`metrics`]).
    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.metrics
    }

    /// The metrics in the Prometheus text format, with the outbox, pools and
    /// cache read now.
    pub async fn render_metrics(&self) -> AppResult<String> {
        let outbox = self.store.outbox_stats().await?;
        let oldest_pending_age =
            outbox.oldest_pending.and_then(|oldest| (self.clock.now() - oldest).to_std().ok()).unwrap_or_default();
        self.metrics.render(&metrics::ScrapeState {
            cache_entries: self.verifier.cached_keys(),
            outbox,
            oldest_pending_age,
            pool: self.store.pool_status(),
            standby: self.store.standby_status(),
        })
    }

    /// The verification engine.
    pub fn verifier(&self) -> &Arc<KeyVerifier> {
        &self.verifier
    }

    /// Applies what the revocation follower reported (a change committed on
    /// any replica, this one included) to the verification cache, then to
    /// the verification streams.
    pub fn apply_revocation(&self, signal: latchkey_store::RevocationSignal) {
        self.verifier.apply(signal);
        let signal = match signal {
            latchkey_store::RevocationSignal::Key(signal) => Some(signal),
            latchkey_store::RevocationSignal::Resync => None,
        };
        self.signals.publish(signal, self.clock.now());
    }

    /// Authenticates the value of an `Authorization` header from `client`.
    /// Bad credentials give [`Authentication::Refused`]; only failures of our
    /// own are errors.
    pub async fn authenticate(&self, authorization: Option<&str>, client: Option<IpAddr>) -> AppResult<Authentication> {
        self.authenticate_request(authorization, client, None).await
    }

    /// [`App::authenticate`], telling the client's `User-Agent` (kept as an
    /// API key's last use).
    pub async fn authenticate_request(
        &self,
        authorization: Option<&str>,
        client: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> AppResult<Authentication> {
        let Some(header) = authorization else {
            return Ok(Authentication::Anonymous);
        };
        let Some(token) = auth::bearer_token(header) else {
            return Ok(Authentication::Refused("The Authorization header must be `Bearer <token>`.".into()));
        };
        if token.starts_with(latchkey_domain::secret::KEY_PREFIX)
            || !latchkey_domain::admin_token::looks_like_jws(token)
        {
            return self.authenticate_key(token, client, user_agent).await;
        }
        if let Some(oidc) = &self.oidc {
            // RS256, PS256 and ES256 are the provider's; anything else may be ours.
            if let Ok(signed) = latchkey_domain::oidc::SignedToken::parse(token) {
                return self.authenticate_oidc(oidc, &signed).await;
            }
        }
        let Some(token_key) = &self.token_key else {
            return Ok(Authentication::Refused(
                "The token is not valid: this server accepts only tokens of its identity provider.".into(),
            ));
        };
        let claims = match token_key.verify(token, self.clock.now()) {
            Ok(c) => c,
            Err(e) => return Ok(Authentication::Refused(auth::token_refusal(e))),
        };
        let Some(tenant) = self.store.tenant(claims.tid).await? else {
            return Ok(Authentication::Refused("The token's tenant does not exist.".into()));
        };
        let Some(user) = self.store.user(claims.tid, claims.sub).await? else {
            return Ok(Authentication::Refused("The token's user does not exist in its tenant.".into()));
        };
        if !user.active {
            return Ok(Authentication::Refused("The token's user is deactivated.".into()));
        }
        Ok(Authentication::Authenticated(Principal::Admin { user, tenant, cloud: claims.cloud }))
    }

    async fn authenticate_key(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> AppResult<Authentication> {
        let refused = || Ok(Authentication::Refused("The API key is not valid.".into()));
        // Latchkey's own API needs no permission; the address and cloud rules apply.
        let request =
            RequestContext { ip: client, user_agent: user_agent.map(str::to_owned), ..RequestContext::default() };
        let verified = match self.verifier.verify(presented, client, &request).await? {
            VerifyOutcome::Valid(v, _) => v,
            refused => {
                return Ok(match self.key_refusal(refused) {
                    AppError::Unauthenticated(reason) => Authentication::Refused(reason),
                    over_limit => Authentication::OverLimit(over_limit),
                });
            }
        };
        let (Some(key), Some(tenant)) =
            (self.store.key(verified.tenant_id, verified.key_id).await?, self.store.tenant(verified.tenant_id).await?)
        else {
            return refused();
        };
        let Some(key) = self.key_views(vec![key]).await?.pop() else { return refused() };
        Ok(Authentication::Authenticated(Principal::Integration { key: Box::new(key), tenant }))
    }

    /// The error for a key that did not verify as `outcome` says, when it
    /// authenticates a call to Latchkey itself: `UNAUTHENTICATED` with what
    /// its holder can do about it, or the limit it is over.
    pub(crate) fn key_refusal(&self, outcome: VerifyOutcome) -> AppError {
        let refused = |reason: &str| AppError::Unauthenticated(reason.to_owned());
        match outcome {
            VerifyOutcome::RateLimitExceeded(reading) => AppError::RateLimitExceeded {
                message: format!("The API key is over its rate limit {:?}; retry later.", &*reading.name),
                retry_after_secs: latchkey_domain::limits::seconds_until(reading.resets_at, self.clock.now()),
            },
            VerifyOutcome::UsageExceeded { .. } => {
                AppError::UsageExceeded("The API key has no credits left; an admin can add credits.".into())
            }
            VerifyOutcome::RateLimited => refused("Too many failed attempts with this key; retry later."),
            VerifyOutcome::Disabled => refused("The API key is disabled; an admin can enable it again."),
            VerifyOutcome::Expired => {
                refused("The API key has expired; ask an admin to rotate it or change its expiry.")
            }
            VerifyOutcome::Compromised => {
                refused("The API key was reported leaked and revoked; an admin must rotate it.")
            }
            VerifyOutcome::OwnerInactive => {
                refused("The API key is suspended: its owner was deactivated; an admin can transfer it.")
            }
            VerifyOutcome::NotAllowed(Refusal::IpNotAllowed) => {
                refused("The API key may not be used from this address.")
            }
            VerifyOutcome::NotAllowed(_) => refused("The API key may not be used for this request."),
            VerifyOutcome::Valid(..) | VerifyOutcome::Malformed | VerifyOutcome::Invalid => {
                refused("The API key is not valid.")
            }
        }
    }

    /// The key use cases, for an internal admin acting in the employee cloud;
    /// `UNAUTHENTICATED` or `FORBIDDEN` for anyone else.
    pub fn key_admin<'a>(&'a self, auth: &'a Authentication) -> AppResult<KeyAdmin<'a>> {
        Ok(KeyAdmin { app: self, actor: auth.key_manager()? })
    }

    /// Who is calling and where.
    pub fn viewer(&self, auth: &Authentication) -> AppResult<Viewer> {
        let principal = auth.principal()?;
        let (user, api_key) = match principal {
            Principal::Admin { user, .. } => (Some(user.clone()), None),
            Principal::Integration { key, .. } => (None, Some((**key).clone().redacted_for_integration())),
        };
        let permissions = match principal {
            Principal::Admin { .. } => None,
            Principal::Integration { key, .. } => {
                let owner_may = owner_permissions(key.owner.role);
                let effective = key.key.restrictions.effective_permissions(owner_may);
                (effective != PermissionSet::all()).then(|| effective.names())
            }
        };
        Ok(Viewer { tenant: principal.tenant().clone(), user, api_key, clouds: principal.clouds(), permissions })
    }

    /// Queues the expiry notices (7 days and 1 day before, and at expiry)
    /// that are due now, at most `limit`, and wakes the dispatcher. Every
    /// replica may run this at once: each notice is queued once. Returns how
    /// many were queued.
    ///
    /// Previous secrets whose overlap ended more than
    /// [`ENDED_SECRET_KEPT`] ago are forgotten in the same pass: until then
    /// presenting one answers `EXPIRED` (telling its holder to switch),
    /// afterwards `INVALID`.
    pub async fn queue_expiry_notices(&self, limit: u64) -> AppResult<usize> {
        let now = latchkey_store::storable(self.clock.now());
        let cleared = self.store.clear_previous_secrets_ended_before(now - ENDED_SECRET_KEPT).await?;
        if cleared > 0 {
            tracing::info!(cleared, "previous secrets past their overlap forgotten");
        }
        let mut queued = 0;
        for (key, stage) in self.store.keys_due_for_expiry_notice(now, limit).await? {
            let Some(expires_at) = key.expires_at else { continue };
            let Some(notice) = ExpiryNotice::due(expires_at, now) else { continue };
            if stage >= notice.stage() {
                continue;
            }
            let mut change = Change::begin(self).await?;
            if !change.claim_expiry_notice(key.id, notice.stage(), expires_at).await? {
                // Another replica queued it, or the key changed meanwhile.
                continue;
            }
            let actor = latchkey_domain::lifecycle::system_actor(key.tenant_id);
            let kind = if notice == ExpiryNotice::Expired { NoticeKind::Expired } else { NoticeKind::Expiring };
            change.mail_owner(kind, &key, &actor, now).await?;
            let (event, warning) = match notice {
                ExpiryNotice::Expired => (WebhookEventType::KeyExpired, Map::new()),
                ExpiryNotice::OneDayBefore => (WebhookEventType::KeyExpiring, fields([("warning", "1d".into())])),
                ExpiryNotice::SevenDaysBefore => (WebhookEventType::KeyExpiring, fields([("warning", "7d".into())])),
            };
            change.publish_key_event(event, &key, &actor, now, warning).await?;
            if notice == ExpiryNotice::Expired {
                change.audit(&AuditEntry::new(AuditChange::Expired, &key, &actor, expires_at)).await?;
            }
            change.commit().await?;
            queued += 1;
        }
        Ok(queued)
    }

    /// Verifies a key presented to a gateway, by `client`, for `request`.
    pub async fn verify_key(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        request: &RequestContext,
    ) -> AppResult<VerifyOutcome> {
        self.verifier.verify(presented, client, request).await
    }

    /// The read standby's state; none without one.
    pub fn standby_status(&self) -> Option<latchkey_store::StandbyStatus> {
        self.store.standby_status()
    }

    /// Whether the database answers and is migrated.
    pub async fn readiness(&self) -> Readiness {
        let check = async {
            self.store.ping().await?;
            self.store.migrations_current().await
        };
        match check.await {
            Ok(true) => Readiness::Ready,
            Ok(false) => Readiness::MigrationsPending,
            Err(e) => {
                tracing::warn!(error = %e, "not ready");
                Readiness::DatabaseUnreachable
            }
        }
    }

    /// A listener for other replicas' revocations (PostgreSQL); apply what it
    /// reports with [`KeyVerifier::apply`].
    pub fn revocation_listener(&self) -> Option<RevocationListener> {
        self.store.revocation_listener()
    }
}
