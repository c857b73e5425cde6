//! Test support: a fresh database per test (SQLite file or PostgreSQL
//! database), the real server started on port 0, and helpers to speak
//! GraphQL over HTTP and to run the `latchkey` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_debug_implementations)]
// Tests seed rows "now" and compare with wall-clock time; the server under test reads its own clock.
#![allow(clippy::disallowed_methods)]

pub mod browser;
pub mod logs;
pub mod nginx;
pub mod oidc;
pub mod ops;
pub mod process;
pub mod proxy;
pub mod service;
pub mod smtp;
pub mod sse;
pub mod topology;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use latchkey_domain::admin_token::{AdminClaims, AdminTokenKey};
use latchkey_domain::{Cloud, Role, Tenant, User};
use latchkey_notify::RecordingNotifier;
use latchkey_server::{RunningServer, ServeConfig};
use latchkey_store::{NewUser, Store, StoreOptions};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

/// The JWT secret every test server uses.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A fresh database on the local PostgreSQL server.
    Postgres,
}

/// Where the PostgreSQL tests connect (a superuser, to create databases).
pub fn postgres_admin_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn postgres_required() -> bool {
    std::env::var("LATCHKEY_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    /// The URL to give the server.
    pub url: String,
    /// Which backend.
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// A fresh, empty database; `None` when PostgreSQL is unreachable and not
    /// required (the skip is reported loudly on stderr).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("latchkey.db").display());
                Some(TestDb { url, backend, _dir: Some(dir), pg_name: None })
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let admin = match tokio::time::timeout(Duration::from_secs(5), Database::connect(&admin_url)).await {
                    Ok(Ok(c)) => c,
                    other => {
                        let why = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".into(),
                        };
                        if postgres_required() {
                            panic!(
                                "PostgreSQL is required (LATCHKEY_REQUIRE_POSTGRES=1) but {admin_url} failed: {why}"
                            );
                        }
                        eprintln!(
                            "\n*** SKIPPED: PostgreSQL test — {admin_url} is unreachable ({why}). \
                             Set LATCHKEY_REQUIRE_POSTGRES=1 to make this a failure. ***\n"
                        );
                        return None;
                    }
                };
                let name = format!("latchkey_test_{}", uuid::Uuid::now_v7().simple());
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
                let _ = admin.close().await;
                let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin_url.clone());
                Some(TestDb { url: format!("{base}/{name}"), backend, _dir: None, pg_name: Some(name) })
            }
        }
    }

    /// A store on this database (its own pool).
    pub async fn store(&self) -> Store {
        Store::connect(&self.url, &StoreOptions::default()).await.expect("connect store")
    }

    /// Runs raw SQL on its own connection (for fault injection and for
    /// reading what is stored).
    pub async fn execute(&self, sql: &str) {
        let conn = Database::connect(&self.url).await.expect("connect");
        conn.execute_unprepared(sql).await.expect("execute");
        let _ = conn.close().await;
    }

    /// What the database holds for `table`, as text: on PostgreSQL every row
    /// cast to text; on SQLite the raw bytes of the database file and its
    /// write-ahead log (so nothing can hide in any table or page).
    /// The number a `SELECT COUNT(*) …` query answers, on either backend.
    pub async fn count(&self, query: &str) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};
        let conn = Database::connect(&self.url).await.expect("connect");
        let statement = Statement::from_string(conn.get_database_backend(), query.to_owned());
        let row = conn.query_one_raw(statement).await.expect("count").expect("a row");
        let _ = conn.close().await;
        row.try_get_by_index::<i64>(0).expect("a count")
    }

    pub async fn raw_contents(&self, table: &str) -> String {
        match self.backend {
            Backend::Postgres => {
                use sea_orm::Statement;
                let conn = Database::connect(&self.url).await.expect("connect");
                let rows = conn
                    .query_all_raw(Statement::from_string(
                        sea_orm::DbBackend::Postgres,
                        format!("SELECT CAST(t AS TEXT) AS row FROM {table} AS t"),
                    ))
                    .await
                    .expect("dump");
                let _ = conn.close().await;
                rows.iter().map(|r| r.try_get::<String>("", "row").expect("row text")).collect::<Vec<_>>().join("\n")
            }
            Backend::Sqlite => {
                let dir = self._dir.as_ref().expect("sqlite dir").path();
                let mut text = String::new();
                for file in ["latchkey.db", "latchkey.db-wal"] {
                    if let Ok(bytes) = std::fs::read(dir.join(file)) {
                        text.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                text
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        let admin_url = postgres_admin_url();
        // Drop on a thread of its own: Drop cannot await, and the test's
        // runtime may be shutting down.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                if let Ok(admin) = Database::connect(&admin_url).await {
                    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// What a test gets, made fresh on one backend: see `on_both_backends!` in
/// the e2e suite. `None` when that backend is unavailable and not required.
pub trait Fixture: Sized {
    /// Makes the fixture on `backend`.
    fn make(backend: Backend) -> impl Future<Output = Option<Self>>;
}

/// Makes `F` on `backend` and runs `test` with it; a PostgreSQL run whose
/// database is unavailable (and not required) is skipped, loudly.
pub async fn run_on<F: Fixture, T: Future<Output = ()>>(backend: Backend, test: impl FnOnce(F) -> T) {
    match F::make(backend).await {
        Some(fixture) => test(fixture).await,
        None if backend == Backend::Postgres => {}
        None => panic!("{backend:?} is always available"),
    }
}

impl Fixture for Backend {
    async fn make(backend: Backend) -> Option<Self> {
        Some(backend)
    }
}

impl Fixture for TestDb {
    async fn make(backend: Backend) -> Option<Self> {
        TestDb::new(backend).await
    }
}

impl Fixture for TestApp {
    async fn make(backend: Backend) -> Option<Self> {
        TestApp::start(backend).await
    }
}

/// A tenant with one user of every kind and tokens for them.
#[derive(Clone, Debug)]
pub struct Seeded {
    /// The tenant.
    pub tenant: Tenant,
    /// An internal admin.
    pub admin: User,
    /// Another internal admin.
    pub other_admin: User,
    /// An academy admin (customer cloud).
    pub academy_admin: User,
    /// An integration user.
    pub integration: User,
    /// `admin`'s employee-cloud token.
    pub admin_token: String,
}

/// How a test server is set up.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// Send owner mail to this SMTP server (otherwise events are recorded in memory).
    pub smtp_url: Option<String>,
    /// Write owner mail as `.eml` files here.
    pub mail_dir: Option<PathBuf>,
    /// Dispatcher timing (fast by default, for tests).
    pub dispatcher: latchkey_notify::DispatcherConfig,
    /// Key verification tuning.
    pub verifier: latchkey_app::VerifierConfig,
    /// Connection and request limits.
    pub http: latchkey_server::config::HttpLimits,
    /// The server's clock, when the test moves time (otherwise the system clock).
    pub clock: Option<Arc<latchkey_domain::clock::ManualClock>>,
    /// `LATCHKEY_TRUSTED_PROXIES`.
    pub trusted_proxies: Vec<latchkey_domain::restrictions::Network>,
    /// `LATCHKEY_GITHUB_KEYS_URL` (nothing listens there by default).
    pub github_keys_url: String,
    /// `LATCHKEY_CORS_ORIGINS`.
    pub cors_origins: Vec<String>,
    /// Serve `/metrics` on a listener of its own (port 0).
    pub metrics: bool,
    /// Sign-in through an identity provider.
    pub oidc: Option<latchkey_server::oidc::OidcConfig>,
    /// How often usage is written (short by default, for tests).
    pub usage_flush_interval: Duration,
    /// Webhook delivery: loopback allowed, quick polls, a 3 s timeout.
    pub webhooks: latchkey_server::config::WebhookOptions,
}

/// Webhook settings for tests: the loopback receivers are allowed
/// (`LATCHKEY_WEBHOOK_ALLOW_HOSTS=127.0.0.1`), polls are quick, and a
/// receiver has 3 s to answer.
pub fn test_webhooks() -> latchkey_server::config::WebhookOptions {
    latchkey_server::config::WebhookOptions {
        allowed: latchkey_domain::webhooks::AllowedHosts::parse("127.0.0.1").unwrap(),
        dispatcher: latchkey_app::webhook_dispatch::WebhookDispatcherConfig {
            poll_interval: Duration::from_millis(100),
            lease: Duration::from_secs(10),
            attempt_timeout: Duration::from_secs(3),
            ..Default::default()
        },
    }
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            smtp_url: None,
            mail_dir: None,
            dispatcher: fast_dispatcher(),
            verifier: latchkey_app::VerifierConfig::default(),
            http: Default::default(),
            clock: None,
            trusted_proxies: Vec::new(),
            github_keys_url: "http://127.0.0.1:9/github-keys".into(),
            cors_origins: Vec::new(),
            metrics: false,
            oidc: None,
            usage_flush_interval: Duration::from_millis(300),
            webhooks: test_webhooks(),
        }
    }
}

/// Dispatcher timing for tests: quick polls and short retries.
pub fn fast_dispatcher() -> latchkey_notify::DispatcherConfig {
    latchkey_notify::DispatcherConfig {
        poll_interval: Duration::from_millis(200),
        batch_size: 20,
        lease: Duration::from_secs(30),
        send_timeout: Duration::from_secs(5),
        max_attempts: 5,
        retry_base: Duration::from_millis(100),
        retry_cap: Duration::from_millis(800),
        concurrency: 4,
    }
}

/// The real server on a fresh database.
pub struct TestApp {
    /// The running server.
    pub server: Option<RunningServer>,
    /// Its database.
    pub db: TestDb,
    /// A store on the same database, for seeding and inspection.
    pub store: Store,
    /// What the outbox dispatcher delivered.
    pub notifier: RecordingNotifier,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Base URL.
    pub url: String,
    /// Signs admin tokens.
    pub token_key: AdminTokenKey,
    /// The server's clock, when the test moves time.
    pub clock: Option<Arc<latchkey_domain::clock::ManualClock>>,
    options: AppOptions,
}

impl TestApp {
    /// Starts the server on a fresh database of `backend`; `None` when that
    /// backend is unavailable and not required.
    pub async fn start(backend: Backend) -> Option<TestApp> {
        logs::install();
        let db = TestDb::new(backend).await?;
        Some(Self::start_on(db).await)
    }

    /// Starts the server on `db` with the recording notifier.
    pub async fn start_on(db: TestDb) -> TestApp {
        Self::start_with(db, AppOptions::default()).await
    }

    /// Starts the server on `db` with `options`.
    pub async fn start_with(db: TestDb, options: AppOptions) -> TestApp {
        let token_key = AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap();
        let notifier = RecordingNotifier::default();
        let server = Self::serve(&db, &options, &token_key, &notifier).await;
        let store = db.store().await;
        let url = server.url();
        let clock = options.clock.clone();
        TestApp {
            server: Some(server),
            db,
            store,
            notifier,
            http: reqwest::Client::new(),
            url,
            token_key,
            clock,
            options,
        }
    }

    /// Starts the server on `db` with a manual clock set to now (whole
    /// microseconds, as stored, so times a test derives compare equal).
    pub async fn start_clocked(db: TestDb) -> (TestApp, Arc<latchkey_domain::clock::ManualClock>) {
        use chrono::SubsecRound;
        let clock = Arc::new(latchkey_domain::clock::ManualClock::new(Utc::now().trunc_subsecs(6)));
        let app = Self::start_with(db, AppOptions { clock: Some(clock.clone()), ..AppOptions::default() }).await;
        (app, clock)
    }

    /// Another replica of this server: same database, options and clock, its
    /// own notifier.
    pub async fn replica(&self) -> (RunningServer, RecordingNotifier) {
        let notifier = RecordingNotifier::default();
        (Self::serve(&self.db, &self.options, &self.token_key, &notifier).await, notifier)
    }

    async fn serve(
        db: &TestDb,
        options: &AppOptions,
        token_key: &AdminTokenKey,
        notifier: &RecordingNotifier,
    ) -> RunningServer {
        let token_key = Some(token_key.clone());
        let config = ServeConfig {
            oidc: options.oidc.clone(),
            console_url: "http://console.test".into(),
            workers: 2,
            shutdown_timeout: Duration::from_secs(1),
            handle_signals: false,
            mail: latchkey_server::config::MailOptions {
                smtp_url: options.smtp_url.clone(),
                directory: options.mail_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("latchkey-test-mail")),
                smtp_timeout: Duration::from_secs(5),
                ..Default::default()
            },
            dispatcher: options.dispatcher.clone(),
            verifier: options.verifier.clone(),
            usage_flush_interval: options.usage_flush_interval,
            expiry_scan_interval: Duration::from_millis(100),
            trusted_proxies: options.trusted_proxies.clone(),
            github_keys_url: options.github_keys_url.clone(),
            github_keys_min_refresh: Duration::from_millis(100),
            cors_origins: options.cors_origins.clone(),
            metrics_bind: options.metrics.then(|| "127.0.0.1:0".parse().unwrap()),
            http: options.http,
            webhooks: options.webhooks.clone(),
            ..ServeConfig::new(db.url.clone(), "127.0.0.1:0".parse().unwrap(), token_key)
        };
        let chosen: Arc<dyn latchkey_notify::Notifier> = if options.smtp_url.is_some() || options.mail_dir.is_some() {
            config.notifier().expect("mail configuration")
        } else {
            Arc::new(notifier.clone())
        };
        let clock: Arc<dyn latchkey_domain::Clock> = match &options.clock {
            Some(manual) => manual.clone(),
            None => Arc::new(latchkey_domain::SystemClock),
        };
        latchkey_server::wiring::start_with_clock(config, chosen, clock).await.expect("server starts")
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }

    /// Creates a tenant with an internal admin, another internal admin, an
    /// academy admin and an integration user.
    pub async fn seed(&self, name: &str) -> Seeded {
        seed_tenant(&self.store, &self.token_key, name).await
    }

    /// The server's time.
    pub fn now(&self) -> chrono::DateTime<Utc> {
        use latchkey_domain::Clock;
        self.clock.as_ref().map_or_else(Utc::now, |c| c.now())
    }

    /// A token for `user` in `cloud`, valid for an hour of the server's time.
    pub fn token(&self, user: &User, cloud: Cloud) -> String {
        admin_token_at(&self.token_key, user, cloud, self.now())
    }

    /// POSTs a GraphQL request with an optional bearer token; returns the body.
    pub async fn gql(&self, bearer: Option<&str>, query: &str, variables: Value) -> Value {
        let mut req =
            self.http.post(format!("{}/graphql", self.url)).json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status(), 200, "GraphQL answers 200");
        resp.json().await.expect("JSON body")
    }

    /// Generates a key through GraphQL; returns (id, secret, payload).
    pub async fn generate(&self, token: &str, owner: &User, description: &str) -> (String, String, Value) {
        let body = self
            .gql(Some(token), ops::GENERATE, json!({ "input": { "ownerId": owner.id, "description": description } }))
            .await;
        let payload = body["data"]["generateApiKey"].clone();
        assert_eq!(payload["userErrors"], json!([]), "generate succeeded: {body}");
        let id = payload["apiKey"]["id"].as_str().unwrap().to_owned();
        let secret = payload["secret"].as_str().unwrap().to_owned();
        (id, secret, payload)
    }

    /// Rotates a key through GraphQL; returns the new secret.
    pub async fn rotate(&self, token: &str, id: &str) -> String {
        let body = self.gql(Some(token), ops::ROTATE, json!({ "id": id })).await;
        let payload = &body["data"]["rotateApiKey"];
        assert_eq!(payload["userErrors"], json!([]), "rotate succeeded: {body}");
        payload["secret"].as_str().unwrap().to_owned()
    }

    /// Deletes a key through GraphQL.
    pub async fn delete(&self, token: &str, id: &str) {
        let body = self.gql(Some(token), ops::DELETE, json!({ "id": id })).await;
        assert_eq!(body["data"]["deleteApiKey"]["userErrors"], json!([]), "delete succeeded: {body}");
    }

    /// Calls `POST /v1/keys/verify`.
    pub async fn verify(&self, key: &str) -> Value {
        self.verify_on(&self.url, key).await
    }

    /// Calls `POST /v1/keys/verify` on the server at `base` (another replica).
    pub async fn verify_on(&self, base: &str, key: &str) -> Value {
        let resp = self.http.post(format!("{base}/v1/keys/verify")).json(&json!({ "key": key })).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Waits until the dispatcher has delivered `count` events (or 10 s).
    pub async fn wait_for_deliveries(&self, count: usize) -> Vec<latchkey_domain::Notice> {
        for _ in 0..200 {
            let delivered = self.notifier.delivered();
            if delivered.len() >= count {
                return delivered;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.notifier.delivered()
    }
}

/// Creates, in `store`, a tenant named `name` with an internal admin, another
/// internal admin, an academy admin and an integration user, and signs the
/// admin's employee-cloud token with `token_key`.
pub async fn seed_tenant(store: &Store, token_key: &AdminTokenKey, name: &str) -> Seeded {
    let now = Utc::now();
    let tenant = store.create_tenant(name, now).await.unwrap();
    let slug = name.to_lowercase().replace(' ', "-");
    let mk = |local: &str, display: &str, role| NewUser {
        tenant_id: tenant.id,
        email: format!("{local}@{slug}.example"),
        name: format!("{display} ({name})"),
        role,
    };
    let admin = store.create_user(mk("admin", "Admin", Role::InternalAdmin), now).await.unwrap();
    let other_admin = store.create_user(mk("other", "Other Admin", Role::InternalAdmin), now).await.unwrap();
    let academy_admin = store.create_user(mk("academy", "Academy Admin", Role::AcademyAdmin), now).await.unwrap();
    let integration = store.create_user(mk("sync", "Sync Bot", Role::IntegrationUser), now).await.unwrap();
    let admin_token = admin_token(token_key, &admin, Cloud::Employee);
    Seeded { tenant, admin, other_admin, academy_admin, integration, admin_token }
}

/// Writes `new` as if `actor` generated it — the key, its `generated` owner
/// notice and audit entry in one unit of work — without a server: for
/// fixtures of many keys (the use case itself is `KeyAdmin::generate`).
pub async fn insert_generated_key(store: &Store, new: latchkey_store::NewKey, actor: &User) -> latchkey_domain::ApiKey {
    use latchkey_domain::{AuditChange, AuditEntry, Notice, NoticeKind};
    let now = Utc::now();
    let tx = store.begin().await.unwrap();
    let key = tx.insert_key(new, now, Some(actor.id)).await.unwrap();
    let owner = tx.owner_of(&key).await.unwrap();
    tx.enqueue_notice(&Notice::new(NoticeKind::Generated, &key, &owner, actor, now)).await.unwrap();
    tx.append_audit(&AuditEntry::new(AuditChange::Generated, &key, actor, now)).await.unwrap();
    tx.commit().await.unwrap();
    key
}

/// A valid one-hour token for `user` in `cloud`, signed with `token_key`.
pub fn admin_token(token_key: &AdminTokenKey, user: &User, cloud: Cloud) -> String {
    admin_token_at(token_key, user, cloud, Utc::now())
}

/// A token for `user` in `cloud`, valid for an hour from `now`.
pub fn admin_token_at(token_key: &AdminTokenKey, user: &User, cloud: Cloud, now: chrono::DateTime<Utc>) -> String {
    let now = now.timestamp();
    token_key.sign(&AdminClaims { sub: user.id, tid: user.tenant_id, cloud, exp: now + 3600, iat: now })
}

/// Runs the `latchkey` command line on `db`, with the tests' JWT secret and
/// quiet logs.
pub fn run_latchkey(db: &TestDb, args: &[&str]) -> std::process::Output {
    run_latchkey_with(&[("LATCHKEY_DATABASE_URL", &db.url)], args)
}

/// Runs `latchkey args` with `envs` (the database's URLs, say) and the test
/// token secret.
pub fn run_latchkey_with(envs: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(latchkey_bin());
    cmd.args(args).env("LATCHKEY_JWT_SECRET", JWT_SECRET).env("RUST_LOG", "warn");
    for (name, value) in envs {
        cmd.env(name, value);
    }
    cmd.output().expect("run latchkey")
}

/// The `latchkey` binary built next to this test binary.
pub fn latchkey_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf();
    let bin = dir.join(format!("latchkey{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (which builds it) or `cargo build -p latchkey-server` first",
        bin.display()
    );
    bin
}

/// The first error's `extensions.code`.
pub fn error_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"].as_str().unwrap_or("<none>")
}
