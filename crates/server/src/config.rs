//! Configuration from the environment (flags mirror it).

use std::net::SocketAddr;
use std::time::Duration;

use std::path::PathBuf;
use std::sync::Arc;

use latchkey_app::VerifierConfig;
use latchkey_domain::admin_token::{AdminTokenKey, MIN_SECRET_LEN};
use latchkey_notify::mail::{MailConfigError, MailNotifier, MailSettings, MailTransport};
use latchkey_notify::{DispatcherConfig, Notifier};
use latchkey_store::StoreOptions;

/// Default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Default embedded database, relative to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/latchkey.db?mode=rwc";

/// A configuration value is missing or malformed. The message says which.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required value is absent.
    #[error("{0} is required: {1}")]
    Missing(&'static str, &'static str),
    /// A value cannot be used.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable or flag.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where the database is.
    pub database_url: String,
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Signs and verifies shared-secret admin tokens; none when admins sign
    /// in only through the identity provider.
    pub token_key: Option<AdminTokenKey>,
    /// Sign-in through the company's identity provider.
    pub oidc: Option<crate::oidc::OidcConfig>,
    /// Base URL of the admin console, for links in mail.
    pub console_url: String,
    /// Pool settings.
    pub store: StoreOptions,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Whether SIGINT/SIGTERM stop the server (off for in-process tests).
    pub handle_signals: bool,
    /// Owner mail.
    pub mail: MailOptions,
    /// Outbox dispatch: polling, leases, retries.
    pub dispatcher: DispatcherConfig,
    /// Key verification: cache and abuse limits.
    pub verifier: VerifierConfig,
    /// How often recorded key use is written to `last_used_at`.
    pub usage_flush_interval: Duration,
    /// How often due expiry notices are looked for.
    pub expiry_scan_interval: Duration,
    /// What one connection and one request may take.
    pub http: HttpLimits,
    /// Proxies (addresses or CIDRs) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<latchkey_domain::restrictions::Network>,
    /// Where GitHub publishes its secret-scanning keys.
    pub github_keys_url: String,
    /// The shortest time between two fetches of those keys.
    pub github_keys_min_refresh: Duration,
    /// Origins (scheme://host[:port]) whose pages may call the API from a browser.
    pub cors_origins: Vec<String>,
    /// Where `/metrics` is served, apart from the API; none for nowhere.
    pub metrics_bind: Option<SocketAddr>,
    /// Webhook delivery.
    pub webhooks: WebhookOptions,
    /// The tenant whose `verify:stream` keys read every tenant's stream.
    pub stream_operator_tenant: Option<latchkey_domain::TenantId>,
}

/// How webhooks leave.
#[derive(Clone, Debug, Default)]
pub struct WebhookOptions {
    /// `LATCHKEY_WEBHOOK_ALLOW_HOSTS`.
    pub allowed: latchkey_domain::webhooks::AllowedHosts,
    /// Polling, leases and the attempt timeout.
    pub dispatcher: latchkey_app::webhook_dispatch::WebhookDispatcherConfig,
}

/// What one connection and one request may take, so that slow or greedy
/// clients cannot hold the server.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// How long a client may take to send a request body (then 408, and the
    /// connection is closed). Headers must arrive within 5 s (actix's default).
    pub body_read_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub idle_timeout: Duration,
    /// Largest GraphQL response body; a larger answer is replaced by a
    /// `RESPONSE_TOO_LARGE` error.
    pub max_response_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 20,
        }
    }
}

/// Default folder for mail when no SMTP server is configured.
pub const DEFAULT_MAIL_DIR: &str = "data/mail";

/// How owner mail leaves.
#[derive(Clone, Debug)]
pub struct MailOptions {
    /// `LATCHKEY_SMTP_URL`; `None` writes `.eml` files to `directory`.
    pub smtp_url: Option<String>,
    /// `LATCHKEY_MAIL_FROM`.
    pub from: String,
    /// `LATCHKEY_MAIL_DIR`.
    pub directory: PathBuf,
    /// How long one SMTP exchange may take.
    pub smtp_timeout: Duration,
}

impl Default for MailOptions {
    fn default() -> Self {
        MailOptions {
            smtp_url: None,
            from: latchkey_notify::mail::DEFAULT_FROM.into(),
            directory: PathBuf::from(DEFAULT_MAIL_DIR),
            smtp_timeout: Duration::from_secs(20),
        }
    }
}

impl ServeConfig {
    /// The configuration of a server on `database_url` listening on `bind`,
    /// checking admin tokens with `token_key`, with every other setting at
    /// its default (the defaults the command line documents).
    pub fn new(database_url: String, bind: SocketAddr, token_key: Option<AdminTokenKey>) -> Self {
        ServeConfig {
            database_url,
            bind,
            token_key,
            oidc: None,
            console_url: format!("http://{bind}"),
            store: StoreOptions::default(),
            workers: 0,
            shutdown_timeout: Duration::from_secs(10),
            handle_signals: true,
            mail: MailOptions::default(),
            dispatcher: DispatcherConfig::default(),
            verifier: VerifierConfig::default(),
            usage_flush_interval: Duration::from_secs(15),
            expiry_scan_interval: Duration::from_secs(60),
            http: HttpLimits::default(),
            trusted_proxies: Vec::new(),
            github_keys_url: crate::github::DEFAULT_KEYS_URL.into(),
            github_keys_min_refresh: crate::github::DEFAULT_MIN_REFRESH,
            cors_origins: Vec::new(),
            metrics_bind: None,
            stream_operator_tenant: None,
            webhooks: WebhookOptions::default(),
        }
    }

    /// The notifier this configuration asks for: SMTP when a URL is set,
    /// otherwise `.eml` files in the mail folder.
    pub fn notifier(&self) -> Result<Arc<dyn Notifier>, MailConfigError> {
        let settings = MailSettings::new(&self.mail.from, &self.console_url)?;
        let transport = match &self.mail.smtp_url {
            Some(url) => MailTransport::smtp(url, self.mail.smtp_timeout)?,
            None => MailTransport::directory(&self.mail.directory)?,
        };
        Ok(Arc::new(MailNotifier::new(transport, settings)))
    }
}

/// Parses a listen address.
pub fn parse_bind(raw: &str) -> Result<SocketAddr, ConfigError> {
    parse_listen_address("LATCHKEY_BIND", raw)
}

/// Parses `LATCHKEY_METRICS_BIND`: empty for no metrics listener.
pub fn parse_metrics_bind(raw: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let raw = raw.trim();
    (!raw.is_empty()).then(|| parse_listen_address("LATCHKEY_METRICS_BIND", raw)).transpose()
}

/// Parses `LATCHKEY_STREAM_OPERATOR_TENANT`: a tenant id, or empty for none.
pub fn parse_tenant_id(raw: &str) -> Result<Option<latchkey_domain::TenantId>, String> {
    let raw = raw.trim();
    (!raw.is_empty())
        .then(|| {
            raw.parse::<uuid::Uuid>().map(latchkey_domain::TenantId).map_err(|_| format!("{raw:?} is not a tenant id"))
        })
        .transpose()
}

fn parse_listen_address(name: &'static str, raw: &str) -> Result<SocketAddr, ConfigError> {
    raw.trim()
        .parse()
        .map_err(|e| ConfigError::Invalid { name, reason: format!("{e} (expected host:port, e.g. {DEFAULT_BIND})") })
}

/// Checks the JWT secret.
pub fn parse_jwt_secret(raw: Option<&str>) -> Result<AdminTokenKey, ConfigError> {
    let raw = raw.filter(|s| !s.is_empty()).ok_or(ConfigError::Missing(
        "LATCHKEY_JWT_SECRET",
        "set it to a random string of at least 32 bytes (e.g. `openssl rand -base64 48`)",
    ))?;
    AdminTokenKey::new(raw.as_bytes()).map_err(|_| ConfigError::Invalid {
        name: "LATCHKEY_JWT_SECRET",
        reason: format!("it must be at least {MIN_SECRET_LEN} bytes long"),
    })
}

/// Checks an issuer URL or endpoint: `https`, or `http` on a loopback
/// address only (a provider on this machine, as in tests).
pub fn parse_provider_url(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    let invalid = |reason: &str| ConfigError::Invalid { name, reason: reason.into() };
    let url = reqwest::Url::parse(raw)
        .map_err(|e| invalid(&format!("{e}; expected e.g. https://login.example.com/tenant")))?;
    if !crate::oidc::is_secure_provider_url(&url) {
        return Err(invalid("it must be an https URL (http only for a loopback address)"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("it must have no query, fragment or credentials"));
    }
    Ok(raw.to_owned())
}

/// Parses `LATCHKEY_OIDC_AUTH_PARAMS`: `name=value` pairs separated by `&`
/// (values may be percent-encoded), sent with the page's authorization request.
pub fn parse_auth_params(raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    const FLOW_PARAMS: [&str; 8] = [
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ];
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::new();
    for (name, value) in reqwest::Url::parse(&format!("http://x/?{raw}"))
        .map_err(|e| ConfigError::Invalid { name: "LATCHKEY_OIDC_AUTH_PARAMS", reason: e.to_string() })?
        .query_pairs()
    {
        if name.is_empty() || FLOW_PARAMS.contains(&name.as_ref()) {
            return Err(ConfigError::Invalid {
                name: "LATCHKEY_OIDC_AUTH_PARAMS",
                reason: format!("{name:?} cannot be set here (the page sets the flow's own parameters)"),
            });
        }
        params.push((name.into_owned(), value.into_owned()));
    }
    Ok(params)
}

/// Refuses PostgreSQL URLs the driver cannot use as meant, without
/// repeating the URL (it may hold a password): several hosts
/// (`host1:5432,host2:5432`) and libpq's `target_session_attrs`, which sqlx
/// ignores — accepting either would promise a failover that never happens.
fn check_postgres_url(url: &str) -> Result<(), ConfigError> {
    let failover = "several hosts and target_session_attrs are not supported by Latchkey's PostgreSQL driver; \
                    point it at a proxy or DNS name that leads to the primary (docs/operations.md, \"Failover\")";
    let invalid = |reason: String| ConfigError::Invalid { name: "LATCHKEY_DATABASE_URL", reason };
    let parsed = url::Url::parse(url).map_err(|e| {
        let host = url.split_once("://").map_or("", |(_, rest)| rest).split(['/', '?']).next().unwrap_or_default();
        if host.contains(',') { invalid(failover.into()) } else { invalid(format!("not a valid URL: {e}")) }
    })?;
    if parsed.query_pairs().any(|(name, value)| name == "target_session_attrs" && value != "any") {
        return Err(invalid(failover.into()));
    }
    Ok(())
}

/// Checks a database URL and, for SQLite files, creates their folder.
pub fn prepare_database_url(raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim();
    if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(ConfigError::Invalid {
                name: "LATCHKEY_DATABASE_URL",
                reason: "the SQLite path is empty".into(),
            });
        }
        let dir = std::path::Path::new(path).parent().filter(|d| !d.as_os_str().is_empty());
        if let (false, Some(dir)) = (path == ":memory:", dir) {
            std::fs::create_dir_all(dir).map_err(|e| ConfigError::Invalid {
                name: "LATCHKEY_DATABASE_URL",
                reason: format!("cannot create {}: {e}", dir.display()),
            })?;
        }
        return Ok(url.to_owned());
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        check_postgres_url(url)?;
        return Ok(url.to_owned());
    }
    Err(ConfigError::Invalid {
        name: "LATCHKEY_DATABASE_URL",
        reason: "expected sqlite://PATH?mode=rwc or postgres://USER@HOST/DB".into(),
    })
}

/// Parses `LATCHKEY_TRUSTED_PROXIES`: addresses or CIDR blocks, separated by
/// commas or spaces.
pub fn parse_trusted_proxies(raw: &str) -> Result<Vec<latchkey_domain::restrictions::Network>, ConfigError> {
    raw.split([',', ' '])
        .filter(|s| !s.trim().is_empty())
        .map(|entry| {
            entry.trim().parse().map_err(|()| ConfigError::Invalid {
                name: "LATCHKEY_TRUSTED_PROXIES",
                reason: format!("{entry:?} is not an IP address or CIDR block"),
            })
        })
        .collect()
}

/// Parses `LATCHKEY_CORS_ORIGINS`: exact origins (`https://admin.example.com`),
/// comma-separated; `*` and anything with a path are refused.
pub fn parse_cors_origins(raw: &str) -> Result<Vec<String>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|origin| {
            let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains(['/', '*', ' ', '?', '#']) => Ok(origin.to_owned()),
                _ => Err(ConfigError::Invalid {
                    name: "LATCHKEY_CORS_ORIGINS",
                    reason: format!("{origin:?} is not an exact origin like https://admin.example.com (never *)"),
                }),
            }
        })
        .collect()
}

/// Checks the console URL (used in links mailed to owners).
pub fn parse_console_url(raw: &str) -> Result<String, ConfigError> {
    let url = raw.trim().trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(char::is_whitespace) {
        return Err(ConfigError::Invalid {
            name: "LATCHKEY_CONSOLE_URL",
            reason: "expected an absolute http(s) URL, e.g. https://admin.example.com".into(),
        });
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_values_with_clear_messages() {
        assert!(parse_bind("nope").unwrap_err().to_string().contains("LATCHKEY_BIND"));
        assert!(parse_jwt_secret(None).unwrap_err().to_string().contains("LATCHKEY_JWT_SECRET is required"));
        assert!(parse_jwt_secret(Some("short")).unwrap_err().to_string().contains("at least 32 bytes"));
        assert!(parse_jwt_secret(Some(&"x".repeat(32))).is_ok());
        assert!(prepare_database_url("mysql://x").is_err());
        for failover in [
            "postgres://app:s3cret@db1:5432,db2:5432/latchkey",
            "postgres://app@db/latchkey?target_session_attrs=read-write",
        ] {
            let e = prepare_database_url(failover).unwrap_err().to_string();
            assert!(e.contains("docs/operations.md") && !e.contains("s3cret"), "{e}");
        }
        assert!(prepare_database_url("postgres://app@db:5432/latchkey?sslmode=require").is_ok());
        assert!(prepare_database_url("sqlite://").is_err());
        assert!(parse_console_url("ftp://x").is_err());
        assert_eq!(parse_console_url("https://a.example/").unwrap(), "https://a.example");
        assert_eq!(parse_trusted_proxies("10.0.0.0/8, 192.0.2.1").unwrap().len(), 2);
        assert!(parse_trusted_proxies("").unwrap().is_empty());
        assert_eq!(parse_cors_origins("https://a.example, http://127.0.0.1:3000").unwrap().len(), 2);
        for bad in ["*", "https://*.example", "https://a.example/path", "a.example", "https://"] {
            assert!(parse_cors_origins(bad).is_err(), "{bad}");
        }
        assert!(parse_provider_url("LATCHKEY_OIDC_ISSUER", "https://login.example.com/t/v2.0").is_ok());
        assert!(parse_provider_url("LATCHKEY_OIDC_ISSUER", "http://127.0.0.1:8081").is_ok());
        for bad in
            ["http://idp.example", "ftp://x", "idp.example", "https://u:p@idp.example", "https://idp.example/?a=b"]
        {
            let e = parse_provider_url("LATCHKEY_OIDC_ISSUER", bad).unwrap_err().to_string();
            assert!(e.contains("LATCHKEY_OIDC_ISSUER"), "{bad}: {e}");
        }
        assert_eq!(
            parse_auth_params("audience=https%3A%2F%2Flatchkey.example&prompt=login").unwrap(),
            [("audience".to_owned(), "https://latchkey.example".to_owned()), ("prompt".to_owned(), "login".to_owned())]
        );
        assert!(parse_auth_params("").unwrap().is_empty());
        assert!(parse_auth_params("redirect_uri=https://evil.example").is_err());
        assert!(parse_trusted_proxies("10.0.0.0/33").unwrap_err().to_string().contains("LATCHKEY_TRUSTED_PROXIES"));
    }
}
