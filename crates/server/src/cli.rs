//! The `latchkey` command line. Operator commands print JSON on stdout; logs go
//! to stderr.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use latchkey_app::operator::{Refusal, UserChange};
use latchkey_app::{App, VerifierConfig};
use latchkey_domain::admin_token::{
    AdminClaims, AdminTokenKey, DEFAULT_ISSUER_AND_AUDIENCE, DEFAULT_MAX_LIFETIME_SECS,
};
use latchkey_domain::{Clock, Cloud, EventDelivery, NoticeId, Role, SystemClock, TenantId, UserId};
use latchkey_store::{Store, StoreOptions};
use serde_json::json;

use crate::config::{
    DEFAULT_BIND, DEFAULT_DATABASE_URL, ServeConfig, parse_auth_params, parse_bind, parse_console_url,
    parse_jwt_secret, parse_provider_url, prepare_database_url,
};

/// Latchkey: API keys for the employee and customer clouds of every tenant.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about)]
pub struct Cli {
    /// Where the data is.
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The database, as every command names it.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH?mode=rwc (embedded default) or postgres://USER@HOST/DB.
    #[arg(long, env = "LATCHKEY_DATABASE_URL", global = true, default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,
    /// A direct PostgreSQL connection for what needs a session of its own
    /// (the revocation listener, the migrations' lock), when
    /// LATCHKEY_DATABASE_URL goes through a transaction pooler (PgBouncer
    /// `pool_mode = transaction`). Default: LATCHKEY_DATABASE_URL.
    #[arg(long, env = "LATCHKEY_DATABASE_LISTEN_URL", global = true)]
    pub database_listen_url: Option<String>,
}

impl DatabaseArgs {
    /// The store's options for a command (the serving settings are `serve`'s).
    fn store_options(&self) -> anyhow::Result<StoreOptions> {
        let session_url = self.database_listen_url.as_deref().map(prepare_database_url).transpose()?;
        Ok(StoreOptions { session_url, ..StoreOptions::default() })
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations, then serve HTTP (GraphQL, GraphiQL, key verification).
    Serve(Box<ServeArgs>),
    /// Apply pending migrations.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Print a signed admin token (JWT) for a user.
    Token(TokenArgs),
    /// Start on a fresh embedded database with demo data; prints a URL and a token.
    Demo(crate::demo::DemoArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Print the OpenAPI 3.1 description of the REST API (JSON).
    Openapi,
    /// Inspect and re-send owner notices.
    #[command(subcommand)]
    Outbox(OutboxCommand),
    /// Look at keys across tenants.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Look at webhook deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

/// `webhooks` subcommands.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// A tenant's webhook deliveries, newest first, with their attempts, as JSON.
    Deliveries {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// Only deliveries in this state: pending, succeeded or failed.
        #[arg(long)]
        status: Option<latchkey_domain::webhook_events::DeliveryStatus>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Enabled keys that expire within N days (expired ones included), soonest first, as JSON.
    Expiring {
        /// How many days ahead (0 to 366).
        #[arg(long, value_parser = clap::value_parser!(u16).range(0..=366))]
        within_days: u16,
    },
    /// Import keys from another system (JSON Lines), kept in their original format; prints a JSON report.
    Import {
        /// The tenant the keys belong to.
        #[arg(long)]
        tenant: String,
        /// The file: one {"ownerEmail", "description", "createdAt", "secret" | "hash", "prefix"?, "lastFour"?, "expiresAt"?} per line.
        file: std::path::PathBuf,
        /// Check every line and report, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// Write nothing unless every line is accepted.
        #[arg(long)]
        atomic: bool,
    },
    /// The credential report of a tenant: every key with its owner, status,
    /// restrictions, dates, last use and its last 30 days of verifications.
    Report {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// `csv` (RFC 4180, a header line) or `json`.
        #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
        format: ReportFormat,
    },
}

/// How `keys report` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Comma-separated values with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// `outbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// List notices, oldest first, as JSON.
    List {
        /// Only notices in this state: pending, sent or failed.
        #[arg(long)]
        status: Option<EventDelivery>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// Queue a notice for delivery again (any state).
    Retry {
        /// The notice id.
        id: String,
    },
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address.
    #[arg(long, env = "LATCHKEY_BIND", default_value = DEFAULT_BIND)]
    pub bind: String,
    #[command(flatten)]
    pub token_key: TokenKeyArgs,
    #[command(flatten)]
    pub oidc: OidcArgs,
    /// Base URL of the admin console (links in owner mail). Default: this server.
    #[arg(long, env = "LATCHKEY_CONSOLE_URL")]
    pub console_url: Option<String>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "LATCHKEY_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Largest database pool (PostgreSQL).
    #[arg(long, env = "LATCHKEY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// How long a request waits for a database connection, in milliseconds.
    #[arg(long, env = "LATCHKEY_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,
    /// How long opening a database connection may take, in milliseconds.
    #[arg(long, env = "LATCHKEY_DB_CONNECT_TIMEOUT_MS", default_value_t = 3000)]
    pub db_connect_timeout_ms: u64,
    /// A PostgreSQL hot standby for reads: cold verification lookups, the key
    /// table, the audit trail and usage (never what a write reads, nor a key
    /// whose revocation the standby has not replayed).
    #[arg(long, env = "LATCHKEY_DATABASE_READ_URL")]
    pub database_read_url: Option<String>,
    /// A read standby lagging more than this many seconds is bypassed.
    #[arg(long, env = "LATCHKEY_READ_MAX_LAG_SECS", default_value_t = 5)]
    pub read_max_lag_secs: u64,
    /// Longest SQL statement (PostgreSQL statement_timeout), in milliseconds; 0 for none.
    #[arg(long, env = "LATCHKEY_DB_STATEMENT_TIMEOUT_MS", default_value_t = 10000)]
    pub db_statement_timeout_ms: u64,
    #[command(flatten)]
    pub mail: MailArgs,
    /// How long a verified key is trusted from memory, in seconds. Revocation
    /// is pushed to every replica; this only bounds how long one may accept a
    /// revoked key if a revocation notice were lost unnoticed.
    #[arg(long, env = "LATCHKEY_KEY_CACHE_TTL_SECS", default_value_t = latchkey_app::verify::DEFAULT_CACHE_TTL.as_secs())]
    pub key_cache_ttl_secs: u64,
    /// Most keys cached.
    #[arg(long, env = "LATCHKEY_KEY_CACHE_CAPACITY", default_value_t = 100_000)]
    pub key_cache_capacity: usize,
    /// How often usage counts and last use are written to the database, in
    /// seconds (after `kill -9`, at most this much is lost).
    #[arg(long, env = "LATCHKEY_USAGE_FLUSH_SECS")]
    pub usage_flush_secs: Option<u64>,
    /// The former name of `--usage-flush-secs`, still honoured.
    #[arg(long, env = "LATCHKEY_LAST_USED_FLUSH_SECS", hide = true)]
    pub last_used_flush_secs: Option<u64>,
    /// Proxies whose X-Forwarded-For names the client (addresses or CIDRs,
    /// comma-separated); none by default, so the peer address is the client.
    #[arg(long, env = "LATCHKEY_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Origins whose pages may call the API from a browser (exact, comma-separated; never *).
    #[arg(long, env = "LATCHKEY_CORS_ORIGINS", default_value = "")]
    pub cors_origins: String,
    /// Where to serve Prometheus metrics (`GET /metrics`), apart from the API,
    /// e.g. 127.0.0.1:9464; empty (the default) for nowhere.
    #[arg(long, env = "LATCHKEY_METRICS_BIND", default_value = "")]
    pub metrics_bind: String,
    /// Where GitHub publishes the keys that sign its secret-scanning requests.
    #[arg(long, env = "LATCHKEY_GITHUB_KEYS_URL", default_value = crate::github::DEFAULT_KEYS_URL)]
    pub github_keys_url: String,
    /// Hosts webhooks may reach despite the rule against internal addresses
    /// (exact host names or CIDRs, comma-separated); `http` URLs are accepted
    /// only for these.
    #[arg(long, env = "LATCHKEY_WEBHOOK_ALLOW_HOSTS", default_value = "")]
    pub webhook_allow_hosts: String,
    /// A tenant (its id) whose keys allowed `verify:stream` read every
    /// tenant's verification stream: for a gateway serving every tenant.
    /// Empty (the default) for none.
    #[arg(long, env = "LATCHKEY_STREAM_OPERATOR_TENANT", default_value = "")]
    pub stream_operator_tenant: String,
    /// How long a webhook receiver has to answer, in seconds.
    #[arg(long, env = "LATCHKEY_WEBHOOK_TIMEOUT_SECS", default_value_t = latchkey_domain::webhook_events::ATTEMPT_TIMEOUT.as_secs())]
    pub webhook_timeout_secs: u64,
    /// How long a replica holds the webhook deliveries it claimed, in seconds
    /// (more than the timeout); a replica that dies leaves them to the others after this.
    #[arg(long, env = "LATCHKEY_WEBHOOK_LEASE_SECS", default_value_t = 60)]
    pub webhook_lease_secs: u64,
    /// How often each replica looks for due webhook deliveries, in milliseconds.
    #[arg(long, env = "LATCHKEY_WEBHOOK_POLL_MS", default_value_t = 500)]
    pub webhook_poll_ms: u64,
    /// How often each replica looks for due expiry notices, in seconds.
    #[arg(long, env = "LATCHKEY_EXPIRY_SCAN_SECS", default_value_t = 60)]
    pub expiry_scan_secs: u64,
    /// How long a client may take to send a request body, in seconds (then 408
    /// and the connection is closed).
    #[arg(long, env = "LATCHKEY_BODY_READ_TIMEOUT_SECS", default_value_t = crate::config::HttpLimits::default().body_read_timeout.as_secs())]
    pub body_read_timeout_secs: u64,
    /// How long an idle keep-alive connection stays open, in seconds.
    #[arg(long, env = "LATCHKEY_IDLE_TIMEOUT_SECS", default_value_t = crate::config::HttpLimits::default().idle_timeout.as_secs())]
    pub idle_timeout_secs: u64,
    /// Largest GraphQL response body, in bytes; a larger answer is replaced by a
    /// RESPONSE_TOO_LARGE error.
    #[arg(long, env = "LATCHKEY_MAX_RESPONSE_BYTES", default_value_t = crate::config::HttpLimits::default().max_response_bytes)]
    pub max_response_bytes: usize,
}

/// How admin tokens are signed and checked: `serve` and `token` must agree.
#[derive(Debug, Args)]
pub struct TokenKeyArgs {
    /// Secret that signs admin tokens (at least 32 bytes).
    #[arg(long, env = "LATCHKEY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Longest lifetime (exp - iat) of an admin token servers accept, in seconds.
    #[arg(long, env = "LATCHKEY_TOKEN_MAX_TTL_SECS", default_value_t = DEFAULT_MAX_LIFETIME_SECS)]
    pub token_max_ttl_secs: i64,
    /// The `iss` claim admin tokens carry; tokens with another are refused.
    #[arg(long, env = "LATCHKEY_JWT_ISSUER", default_value = DEFAULT_ISSUER_AND_AUDIENCE)]
    pub jwt_issuer: String,
    /// The `aud` claim admin tokens carry; tokens for another audience are refused.
    #[arg(long, env = "LATCHKEY_JWT_AUDIENCE", default_value = DEFAULT_ISSUER_AND_AUDIENCE)]
    pub jwt_audience: String,
}

impl TokenKeyArgs {
    /// The signing key these options describe.
    pub fn key(&self) -> anyhow::Result<AdminTokenKey> {
        if self.token_max_ttl_secs < 1 {
            bail!("LATCHKEY_TOKEN_MAX_TTL_SECS must be positive");
        }
        let issuer = self.jwt_issuer.trim();
        let audience = self.jwt_audience.trim();
        if issuer.is_empty() || audience.is_empty() {
            bail!("LATCHKEY_JWT_ISSUER and LATCHKEY_JWT_AUDIENCE must not be empty");
        }
        Ok(parse_jwt_secret(self.jwt_secret.as_deref())?
            .with_max_lifetime(self.token_max_ttl_secs)
            .with_issuer_and_audience(issuer, audience))
    }
}

/// Sign-in through the company's identity provider (OpenID Connect).
#[derive(Debug, Args)]
pub struct OidcArgs {
    /// The provider's issuer URL (its /.well-known/openid-configuration names
    /// the key set); unset: no OIDC sign-in.
    #[arg(long, env = "LATCHKEY_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// The `aud` access tokens must carry for Latchkey.
    #[arg(long, env = "LATCHKEY_OIDC_AUDIENCE")]
    pub oidc_audience: Option<String>,
    /// The claim naming the tenant (its id, or the external id set with
    /// `latchkey tenant update --external-id`).
    #[arg(long, env = "LATCHKEY_OIDC_TENANT_CLAIM", default_value = latchkey_domain::oidc::DEFAULT_TENANT_CLAIM)]
    pub oidc_tenant_claim: String,
    /// The claim matched against a user's SCIM externalId (Entra ID: `oid`).
    #[arg(long, env = "LATCHKEY_OIDC_SUBJECT_CLAIM", default_value = latchkey_domain::oidc::DEFAULT_SUBJECT_CLAIM)]
    pub oidc_subject_claim: String,
    /// The API keys page's client id at the provider (a public client using
    /// PKCE); unset: the page offers no organisation sign-in.
    #[arg(long, env = "LATCHKEY_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// The scopes the page asks for.
    #[arg(long, env = "LATCHKEY_OIDC_SCOPE", default_value = "openid profile email")]
    pub oidc_scope: String,
    /// Extra parameters of the page's authorization request, `name=value&…`
    /// (Auth0: `audience=…`; a resource indicator: `resource=…`).
    #[arg(long, env = "LATCHKEY_OIDC_AUTH_PARAMS", default_value = "")]
    pub oidc_auth_params: String,
}

impl OidcArgs {
    /// The OIDC configuration these options describe; none without an issuer.
    pub fn config(&self, max_lifetime_secs: i64) -> anyhow::Result<Option<crate::oidc::OidcConfig>> {
        let Some(issuer) = self.oidc_issuer.as_deref().filter(|i| !i.trim().is_empty()) else {
            if self.oidc_client_id.is_some() || self.oidc_audience.is_some() {
                bail!("LATCHKEY_OIDC_ISSUER is required when LATCHKEY_OIDC_AUDIENCE or LATCHKEY_OIDC_CLIENT_ID is set");
            }
            return Ok(None);
        };
        let issuer = parse_provider_url("LATCHKEY_OIDC_ISSUER", issuer)?;
        let Some(audience) = self.oidc_audience.as_deref().map(str::trim).filter(|a| !a.is_empty()) else {
            bail!(
                "LATCHKEY_OIDC_AUDIENCE is required with LATCHKEY_OIDC_ISSUER: the `aud` Latchkey's access tokens carry"
            );
        };
        let (tenant_claim, subject_claim) = (self.oidc_tenant_claim.trim(), self.oidc_subject_claim.trim());
        if tenant_claim.is_empty() || subject_claim.is_empty() {
            bail!("LATCHKEY_OIDC_TENANT_CLAIM and LATCHKEY_OIDC_SUBJECT_CLAIM must not be empty");
        }
        let rules = latchkey_domain::oidc::OidcRules {
            issuer,
            audience: audience.to_owned(),
            tenant_claim: tenant_claim.to_owned(),
            subject_claim: subject_claim.to_owned(),
            max_lifetime_secs,
        };
        let page = match self.oidc_client_id.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            Some(client_id) => Some(crate::oidc::PageSignIn {
                client_id: client_id.to_owned(),
                scope: self.oidc_scope.trim().to_owned(),
                extra_params: parse_auth_params(&self.oidc_auth_params)?,
            }),
            None => None,
        };
        Ok(Some(crate::oidc::OidcConfig { settings: latchkey_app::oidc::OidcSettings::new(rules), page }))
    }
}

/// Owner mail options.
#[derive(Debug, Args)]
pub struct MailArgs {
    /// SMTP server: smtp://host:port (plain), smtp://host:587?tls=required, smtps://user:pass@host:465.
    /// Unset: mail is written as .eml files to --mail-dir.
    #[arg(long, env = "LATCHKEY_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of owner mail.
    #[arg(long, env = "LATCHKEY_MAIL_FROM", default_value = latchkey_notify::mail::DEFAULT_FROM)]
    pub mail_from: String,
    /// Folder for .eml files when no SMTP server is set.
    #[arg(long, env = "LATCHKEY_MAIL_DIR", default_value = crate::config::DEFAULT_MAIL_DIR)]
    pub mail_dir: std::path::PathBuf,
    /// Longest wait between delivery attempts, in seconds.
    #[arg(long, env = "LATCHKEY_MAIL_RETRY_MAX_SECS", default_value_t = 60)]
    pub mail_retry_max_secs: u64,
    /// Attempts before a notice is marked failed.
    #[arg(long, env = "LATCHKEY_MAIL_MAX_ATTEMPTS", default_value_t = 12)]
    pub mail_max_attempts: i32,
    /// Longest time one SMTP delivery may take, in seconds.
    #[arg(long, env = "LATCHKEY_SMTP_TIMEOUT_SECS", default_value_t = 20)]
    pub smtp_timeout_secs: u64,
    /// How long a dispatcher's claim on a notice lasts, in seconds; a crashed
    /// replica's claimed notices are sent by another after this. Must exceed the SMTP timeout.
    #[arg(long, env = "LATCHKEY_MAIL_LEASE_SECS", default_value_t = 60)]
    pub mail_lease_secs: u64,
}

impl MailArgs {
    fn options(&self) -> anyhow::Result<(crate::config::MailOptions, latchkey_notify::DispatcherConfig)> {
        if self.mail_retry_max_secs == 0 {
            bail!("LATCHKEY_MAIL_RETRY_MAX_SECS must be positive");
        }
        if self.mail_max_attempts < 1 {
            bail!("LATCHKEY_MAIL_MAX_ATTEMPTS must be at least 1");
        }
        if self.smtp_timeout_secs == 0 || self.mail_lease_secs <= self.smtp_timeout_secs {
            bail!("LATCHKEY_MAIL_LEASE_SECS must exceed LATCHKEY_SMTP_TIMEOUT_SECS, which must be positive");
        }
        let smtp_url = self.smtp_url.clone().filter(|u| !u.trim().is_empty());
        let mail = crate::config::MailOptions {
            smtp_url,
            from: self.mail_from.clone(),
            directory: self.mail_dir.clone(),
            smtp_timeout: Duration::from_secs(self.smtp_timeout_secs),
        };
        let dispatcher = latchkey_notify::DispatcherConfig {
            retry_cap: Duration::from_secs(self.mail_retry_max_secs),
            max_attempts: self.mail_max_attempts,
            lease: Duration::from_secs(self.mail_lease_secs),
            send_timeout: Duration::from_secs(self.smtp_timeout_secs),
            ..Default::default()
        };
        Ok((mail, dispatcher))
    }
}

/// `tenant` subcommands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        /// Its name.
        #[arg(long)]
        name: String,
    },
    /// Change a tenant.
    Update {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// How the identity provider names the tenant in the OIDC tenant claim
        /// (e.g. Entra ID's directory id); an empty value clears it.
        #[arg(long)]
        external_id: String,
    },
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Email address (unique within the tenant).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Role: internal-admin, academy-admin or integration-user.
        #[arg(long)]
        role: Role,
    },
    /// Deactivate a user: it can no longer sign in, and the keys it owns are
    /// suspended (OWNER_INACTIVE) until transferred or it is reactivated.
    Deactivate {
        /// The user id.
        #[arg(long)]
        user: String,
    },
    /// Reactivate a user: the keys it still owns work again.
    Activate {
        /// The user id.
        #[arg(long)]
        user: String,
    },
    /// Change a user's role. A role that cannot own keys (academy-admin)
    /// suspends the keys it owns, as a deactivation does.
    Update {
        /// The user id.
        #[arg(long)]
        user: String,
        /// The new role: internal-admin, academy-admin or integration-user.
        #[arg(long)]
        role: Role,
    },
    /// List a tenant's users with their state and key counts.
    List {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
    },
}

/// `token` options.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id.
    #[arg(long)]
    pub user: String,
    /// The cloud the token acts in: employee or customer.
    #[arg(long, default_value = "employee")]
    pub cloud: Cloud,
    /// Lifetime in seconds (at most LATCHKEY_TOKEN_MAX_TTL_SECS).
    #[arg(long, default_value_t = 3600)]
    pub ttl_secs: u32,
    /// The servers' token settings.
    #[command(flatten)]
    pub token_key: TokenKeyArgs,
}

async fn open_store(database: &DatabaseArgs) -> anyhow::Result<Store> {
    let url = prepare_database_url(&database.database_url)?;
    let store = Store::connect(&url, &database.store_options()?).await.context("cannot open the database")?;
    Ok(store)
}

async fn migrated_store(database: &DatabaseArgs) -> anyhow::Result<Store> {
    let store = open_store(database).await?;
    store.migrate().await.context("cannot apply migrations")?;
    Ok(store)
}

/// How often usage is written when not told: often enough that a chart is
/// current within seconds, rarely enough that a flush per replica costs the
/// database nothing noticeable.
const DEFAULT_USAGE_FLUSH_SECS: u64 = 15;

fn print_json(out: &mut dyn Write, value: &serde_json::Value) -> anyhow::Result<()> {
    writeln!(out, "{value}")?;
    Ok(())
}

/// The application over the migrated database at `url`, for operator
/// commands ([`App::operator`]).
async fn operator_app(database: &DatabaseArgs) -> anyhow::Result<App> {
    let store = migrated_store(database).await?;
    let outbox = std::sync::Arc::new(tokio::sync::Notify::new());
    let app = App::new(store, std::sync::Arc::new(SystemClock), None, &VerifierConfig::default(), outbox)?;
    Ok(app)
}

/// A refusal of an operator command, as the command's error.
fn refused<T>(outcome: Result<T, Refusal>) -> anyhow::Result<T> {
    outcome.map_err(|refusal| anyhow::anyhow!(refusal))
}

/// `user deactivate|activate`: prints the user and the keys it owns. On
/// PostgreSQL every serving replica forgets those keys at once; a server on
/// a SQLite file (one process, no notifications) does so within its key
/// cache TTL; `setUserActive` through the server's GraphQL acts at once.
async fn set_user_active(database: &DatabaseArgs, user: &str, active: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let id: UserId = user.parse().map_err(|_| anyhow::anyhow!("--user must be a user id (UUID)"))?;
    let app = operator_app(database).await?;
    let UserChange { user, keys, changed } = refused(app.operator().set_user_active(id, active).await?)?;
    let keys = if changed { keys } else { Vec::new() };
    let keys_field = if active { "keysRestored" } else { "keysSuspended" };
    print_json(
        out,
        &json!({ "id": user.id, "tenantId": user.tenant_id, "active": user.active, "changed": changed, keys_field: keys }),
    )
}

/// Builds the `serve` configuration from flags and environment.
pub fn serve_config(database: &DatabaseArgs, args: &ServeArgs) -> anyhow::Result<ServeConfig> {
    let bind = parse_bind(&args.bind)?;
    let oidc = args.oidc.config(args.token_key.token_max_ttl_secs)?;
    let jwt_secret = args.token_key.jwt_secret.as_deref().filter(|s| !s.is_empty());
    let token_key = match (jwt_secret, &oidc) {
        // Only OIDC: no shared secret to leak.
        (None, Some(_)) => None,
        (None, None) => bail!(
            "LATCHKEY_JWT_SECRET is required unless admins sign in through an identity provider \
             (LATCHKEY_OIDC_ISSUER): set it to a random string of at least 32 bytes (e.g. `openssl rand -base64 48`)"
        ),
        (Some(_), _) => Some(args.token_key.key()?),
    };
    if args.body_read_timeout_secs == 0 || args.idle_timeout_secs == 0 || args.max_response_bytes == 0 {
        bail!(
            "LATCHKEY_BODY_READ_TIMEOUT_SECS, LATCHKEY_IDLE_TIMEOUT_SECS and LATCHKEY_MAX_RESPONSE_BYTES must be positive"
        );
    }
    let console_url = match &args.console_url {
        Some(u) => parse_console_url(u)?,
        None => format!("http://{bind}"),
    };
    let (mail, dispatcher) = args.mail.options()?;
    let defaults = ServeConfig::new(prepare_database_url(&database.database_url)?, bind, token_key);
    Ok(ServeConfig {
        oidc,
        console_url,
        store: StoreOptions {
            max_connections: args.db_max_connections.max(1),
            acquire_timeout: Duration::from_millis(args.db_acquire_timeout_ms.max(1)),
            connect_timeout: Duration::from_millis(args.db_connect_timeout_ms.max(1)),
            statement_timeout: (args.db_statement_timeout_ms > 0)
                .then(|| Duration::from_millis(args.db_statement_timeout_ms)),
            read_url: args.database_read_url.as_deref().map(prepare_database_url).transpose()?,
            read_max_lag: Duration::from_secs(args.read_max_lag_secs.max(1)),
            ..database.store_options()?
        },
        workers: args.workers,
        mail,
        dispatcher,
        verifier: latchkey_app::VerifierConfig {
            cache_ttl: Duration::from_secs(args.key_cache_ttl_secs.max(1)),
            cache_capacity: args.key_cache_capacity.max(1),
            ..Default::default()
        },
        usage_flush_interval: Duration::from_secs(
            args.usage_flush_secs.or(args.last_used_flush_secs).unwrap_or(DEFAULT_USAGE_FLUSH_SECS).max(1),
        ),
        expiry_scan_interval: Duration::from_secs(args.expiry_scan_secs.max(1)),
        trusted_proxies: crate::config::parse_trusted_proxies(&args.trusted_proxies)?,
        github_keys_url: args.github_keys_url.trim().to_owned(),
        cors_origins: crate::config::parse_cors_origins(&args.cors_origins)?,
        metrics_bind: crate::config::parse_metrics_bind(&args.metrics_bind)?,
        stream_operator_tenant: crate::config::parse_tenant_id(&args.stream_operator_tenant)
            .map_err(|reason| anyhow::anyhow!("LATCHKEY_STREAM_OPERATOR_TENANT is invalid: {reason}"))?,
        webhooks: webhook_options(args)?,
        http: crate::config::HttpLimits {
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
            idle_timeout: Duration::from_secs(args.idle_timeout_secs),
            max_response_bytes: args.max_response_bytes,
        },
        ..defaults
    })
}

fn webhook_options(args: &ServeArgs) -> anyhow::Result<crate::config::WebhookOptions> {
    let allowed = latchkey_domain::webhooks::AllowedHosts::parse(&args.webhook_allow_hosts)
        .map_err(|reason| anyhow::anyhow!("LATCHKEY_WEBHOOK_ALLOW_HOSTS is invalid: {reason}"))?;
    if args.webhook_timeout_secs == 0 || args.webhook_lease_secs <= args.webhook_timeout_secs {
        bail!("LATCHKEY_WEBHOOK_TIMEOUT_SECS must be positive and LATCHKEY_WEBHOOK_LEASE_SECS longer than it");
    }
    Ok(crate::config::WebhookOptions {
        allowed,
        dispatcher: latchkey_app::webhook_dispatch::WebhookDispatcherConfig {
            poll_interval: Duration::from_millis(args.webhook_poll_ms.max(10)),
            lease: Duration::from_secs(args.webhook_lease_secs),
            attempt_timeout: Duration::from_secs(args.webhook_timeout_secs),
            ..Default::default()
        },
    })
}

fn delivery_json(
    d: &latchkey_domain::webhook_events::WebhookDelivery,
    attempts: &[latchkey_domain::webhook_events::WebhookAttempt],
) -> serde_json::Value {
    json!({
        "id": d.id,
        "messageId": d.message_id(),
        "endpointId": d.endpoint_id,
        "eventId": d.event_id,
        "eventType": d.event_type.as_str(),
        "status": d.status.as_str(),
        "createdAt": d.created_at,
        "nextAttemptAt": (d.status == latchkey_domain::webhook_events::DeliveryStatus::Pending).then_some(d.next_attempt_at),
        "finishedAt": d.finished_at,
        "attempts": attempts.iter().map(|a| json!({
            "attemptedAt": a.attempted_at,
            "httpStatus": a.http_status,
            "durationMs": a.duration_ms,
            "responseBody": a.response_body,
            "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

fn notice_json(n: &latchkey_store::StoredEvent) -> serde_json::Value {
    let e = &n.event;
    json!({
        "id": e.id,
        "status": n.delivery.as_str(),
        "event": e.kind.as_str(),
        "tenantId": e.tenant_id,
        "keyId": e.key_id,
        "keyDescription": e.key_description,
        "keyLastFour": e.key_last_four,
        "recipient": e.owner_email,
        "actorId": e.actor_id,
        "occurredAt": e.occurred_at,
        "attempts": n.attempts,
        "nextAttemptAt": n.next_attempt_at,
        "lastError": n.last_error,
        "sentAt": n.sent_at,
    })
}

/// Runs a parsed command, writing results to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    let now = SystemClock.now();
    match cli.command {
        Command::Serve(args) => {
            let config = serve_config(&cli.database, &args)?;
            let notifier = config.notifier()?;
            if config.mail.smtp_url.is_none() {
                tracing::warn!(
                    folder = %config.mail.directory.display(),
                    "LATCHKEY_SMTP_URL is not set: owner mail is NOT leaving this machine; it is written as .eml files"
                );
            }
            let server = crate::wiring::start(config, notifier).await?;
            server.wait().await?;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            migrated_store(&cli.database).await?;
            print_json(out, &json!({ "migrated": true }))?;
        }
        Command::Tenant(TenantCommand::Update { tenant, external_id }) => {
            let tenant: TenantId =
                tenant.parse().map_err(|_| anyhow::anyhow!("--tenant must be a tenant id (UUID)"))?;
            let app = operator_app(&cli.database).await?;
            let updated = refused(app.operator().set_tenant_external_id(tenant, &external_id).await?)?;
            let external_id = Some(external_id.trim()).filter(|id| !id.is_empty());
            print_json(out, &json!({ "id": updated.id, "name": updated.name, "externalId": external_id }))?;
        }
        Command::Tenant(TenantCommand::Create { name }) => {
            let app = operator_app(&cli.database).await?;
            let tenant = refused(app.operator().create_tenant(&name).await?)?;
            print_json(out, &json!({ "id": tenant.id, "name": tenant.name }))?;
        }
        Command::User(UserCommand::Create { tenant, email, name, role }) => {
            let tenant: TenantId =
                tenant.parse().map_err(|_| anyhow::anyhow!("--tenant must be a tenant id (UUID)"))?;
            let app = operator_app(&cli.database).await?;
            let user = refused(app.operator().create_user(tenant, &email, &name, role).await?)?;
            print_json(
                out,
                &json!({ "id": user.id, "tenantId": user.tenant_id, "email": user.email, "name": user.name, "role": user.role.as_str() }),
            )?;
        }
        Command::User(UserCommand::Update { user, role }) => {
            let id: UserId = user.parse().map_err(|_| anyhow::anyhow!("--user must be a user id (UUID)"))?;
            let app = operator_app(&cli.database).await?;
            let UserChange { user, keys, .. } = refused(app.operator().set_user_role(id, role).await?)?;
            let works = latchkey_domain::policy::owner_may_use_keys(&user);
            print_json(
                out,
                &json!({ "id": user.id, "tenantId": user.tenant_id, "role": user.role.as_str(), "active": user.active,
                         "keys": keys, "keysWork": works }),
            )?;
        }
        Command::User(UserCommand::List { tenant }) => {
            let tenant: TenantId =
                tenant.parse().map_err(|_| anyhow::anyhow!("--tenant must be a tenant id (UUID)"))?;
            let app = operator_app(&cli.database).await?;
            let users = refused(app.operator().users(tenant).await?)?;
            let rows = users.iter().map(|(u, keys)| {
                json!({ "id": u.id, "email": u.email, "name": u.name, "role": u.role.as_str(),
                        "active": u.active, "keyCount": keys })
            });
            print_json(out, &serde_json::Value::Array(rows.collect()))?;
        }
        Command::User(UserCommand::Deactivate { user }) => set_user_active(&cli.database, &user, false, out).await?,
        Command::User(UserCommand::Activate { user }) => set_user_active(&cli.database, &user, true, out).await?,
        Command::Token(args) => {
            let key = args.token_key.key()?;
            let user: UserId = args.user.parse().map_err(|_| anyhow::anyhow!("--user must be a user id (UUID)"))?;
            if args.ttl_secs == 0 {
                bail!("--ttl-secs must be positive");
            }
            if i64::from(args.ttl_secs) > args.token_key.token_max_ttl_secs {
                bail!(
                    "--ttl-secs must be at most {} (LATCHKEY_TOKEN_MAX_TTL_SECS): servers refuse longer-lived tokens",
                    args.token_key.token_max_ttl_secs
                );
            }
            let app = operator_app(&cli.database).await?;
            let Some(user) = app.operator().user(user).await? else {
                bail!("no user with id {user}");
            };
            let claims = AdminClaims {
                sub: user.id,
                tid: user.tenant_id,
                cloud: args.cloud,
                exp: now.timestamp() + i64::from(args.ttl_secs),
                iat: now.timestamp(),
            };
            writeln!(out, "{}", key.sign(&claims))?;
        }
        Command::Demo(args) => crate::demo::run(&args, out).await?,
        Command::Schema => {
            write!(out, "{}", latchkey_graphql::export_sdl())?;
        }
        Command::Openapi => {
            write!(out, "{}", crate::openapi::document())?;
        }
        Command::Outbox(OutboxCommand::List { status, limit }) => {
            let app = operator_app(&cli.database).await?;
            let notices = app.operator().notices(status, limit).await?;
            print_json(out, &serde_json::Value::Array(notices.iter().map(notice_json).collect()))?;
        }
        Command::Keys(KeysCommand::Expiring { within_days }) => {
            let app = operator_app(&cli.database).await?;
            let rows = app.operator().keys_expiring_within(within_days).await?.into_iter().map(|(k, owner)| {
                let status = owner.map_or("owner missing", |owner| k.status(&owner, now).as_str());
                json!({
                    "id": k.id,
                    "tenantId": k.tenant_id,
                    "ownerId": k.owner_id,
                    "description": k.description,
                    "lastFour": k.last_four,
                    "expiresAt": k.expires_at,
                    "status": status,
                })
            });
            print_json(out, &serde_json::Value::Array(rows.collect()))?;
        }
        Command::Keys(KeysCommand::Import { tenant, file, dry_run, atomic }) => {
            let tenant: TenantId =
                tenant.parse().map_err(|_| anyhow::anyhow!("--tenant must be a tenant id (UUID)"))?;
            let input = std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
            let app = operator_app(&cli.database).await?;
            let input = std::io::BufReader::new(input);
            let report = refused(app.operator().import_keys(tenant, input, dry_run, atomic).await?)?;
            print_json(out, &report)?;
        }
        Command::Keys(KeysCommand::Report { tenant, format }) => {
            let tenant: TenantId =
                tenant.parse().map_err(|_| anyhow::anyhow!("--tenant must be a tenant id (UUID)"))?;
            let app = operator_app(&cli.database).await?;
            let rows = refused(app.operator().credential_report(tenant).await?)?;
            match format {
                ReportFormat::Csv => write!(out, "{}", latchkey_app::usage::report_csv(&rows))?,
                ReportFormat::Json => print_json(out, &serde_json::to_value(&rows)?)?,
            }
        }
        Command::Webhooks(WebhooksCommand::Deliveries { tenant, status, limit }) => {
            let tenant: TenantId =
                tenant.parse().map_err(|_| anyhow::anyhow!("--tenant must be a tenant id (UUID)"))?;
            let app = operator_app(&cli.database).await?;
            let page = refused(app.operator().webhook_deliveries(tenant, status, limit).await?)?;
            let rows = page.deliveries.iter().map(|(d, attempts)| delivery_json(d, attempts)).collect();
            print_json(out, &serde_json::Value::Array(rows))?;
        }
        Command::Outbox(OutboxCommand::Retry { id }) => {
            let id: NoticeId = id.parse().map_err(|_| anyhow::anyhow!("the notice id must be a UUID"))?;
            let app = operator_app(&cli.database).await?;
            let Some(notice) = app.operator().retry_notice(id).await? else {
                bail!("no notice with id {id}");
            };
            print_json(out, &notice_json(&notice))?;
        }
    }
    Ok(())
}
