//! A real OpenID Connect provider for the tests: the certified
//! `oidc-provider` from npm (`tests/oidc/provider.mjs`), run on Node on a free
//! port. Tokens come out of its real authorization-code flow with PKCE.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_domain::oidc::{DEFAULT_SUBJECT_CLAIM, DEFAULT_TENANT_CLAIM, OidcRules};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The audience the provider gives Latchkey's access tokens.
pub const AUDIENCE: &str = "api://latchkey";
/// The API keys page's client id at the provider.
pub const CLIENT_ID: &str = "latchkey-console";

/// A person the provider knows.
#[derive(Clone, Debug, Serialize)]
pub struct Account {
    /// Its `sub`.
    pub sub: String,
    /// Its address.
    pub email: String,
    /// Whether the provider verified the address.
    pub email_verified: bool,
    /// Its tenant, as the `tid` claim.
    pub tid: String,
}

impl Account {
    /// A verified account.
    pub fn new(sub: &str, email: &str, tid: &str) -> Account {
        Account { sub: sub.into(), email: email.into(), email_verified: true, tid: tid.into() }
    }
}

/// Whether the provider can run: Node, and the npm packages of `tests/oidc`,
/// installed here with `npm ci` (once per test run) when they are missing.
/// Fails when LATCHKEY_REQUIRE_OIDC_PROVIDER=1 (`.ci/run`) and they cannot be.
pub fn provider_installed() -> bool {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let found = *INSTALLED.get_or_init(|| {
        let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
        let installed = || dir().join("node_modules/oidc-provider/package.json").exists();
        if node && !installed() {
            eprintln!("installing the test identity provider: npm ci in {}", dir().display());
            let _ = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(dir()).status();
        }
        node && installed()
    });
    if !found {
        let required = std::env::var("LATCHKEY_REQUIRE_OIDC_PROVIDER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "LATCHKEY_REQUIRE_OIDC_PROVIDER=1 but Node.js or the npm packages of tests/oidc are missing"
        );
        eprintln!("\n*** SKIPPED: OIDC test — install Node.js and npm (then `npm ci` runs in tests/oidc) ***\n");
    }
    found
}

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/oidc"))
}

/// The running provider.
pub struct IdentityProvider {
    child: Option<Child>,
    /// Its issuer URL, `http://127.0.0.1:PORT`.
    pub issuer: String,
    port: u16,
    accounts: String,
    keys: String,
    keys_dir: tempfile::TempDir,
}

impl IdentityProvider {
    /// Starts the provider knowing `accounts`, publishing `keys` (`kid:ALG`,
    /// comma-separated, the signing key of each algorithm first).
    pub fn start(accounts: &[Account], keys: &str) -> IdentityProvider {
        Self::start_with_token_ttl(accounts, keys, 3600)
    }

    /// As [`IdentityProvider::start`], issuing access tokens that live `ttl_secs`.
    pub fn start_with_token_ttl(accounts: &[Account], keys: &str, ttl_secs: u32) -> IdentityProvider {
        let accounts = serde_json::to_string(accounts).unwrap();
        let keys_dir = tempfile::tempdir().unwrap();
        let (child, issuer) = spawn_with_ttl(0, &accounts, keys, &keys_dir.path().join("keys.json"), ttl_secs);
        let port = issuer.rsplit(':').next().unwrap().parse().unwrap();
        IdentityProvider { child: Some(child), issuer, port, accounts, keys: keys.into(), keys_dir }
    }

    /// Another provider on another port (so another issuer) signing with the
    /// same private keys: an impostor whose only difference is `iss`.
    pub fn twin(&self) -> IdentityProvider {
        let keys_dir = tempfile::tempdir().unwrap();
        std::fs::copy(self.keys_dir.path().join("keys.json"), keys_dir.path().join("keys.json")).unwrap();
        let (child, issuer) = spawn(0, &self.accounts, &self.keys, &keys_dir.path().join("keys.json"));
        let port = issuer.rsplit(':').next().unwrap().parse().unwrap();
        IdentityProvider {
            child: Some(child),
            issuer,
            port,
            accounts: self.accounts.clone(),
            keys: self.keys.clone(),
            keys_dir,
        }
    }

    /// Stops the provider: its endpoints stop answering.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts it on the same port publishing `keys` (keys it had keep their
    /// private half): how a provider rotates its signing keys.
    pub fn restart_with_keys(&mut self, keys: &str) {
        self.stop();
        let (child, issuer) = spawn(self.port, &self.accounts, keys, &self.keys_dir.path().join("keys.json"));
        assert_eq!(issuer, self.issuer);
        self.child = Some(child);
        self.keys = keys.into();
    }

    /// Latchkey's OIDC settings for this provider, with the page's sign-in
    /// when `page_params` is given (extra authorization parameters).
    pub fn config(&self, page_params: Option<&str>) -> latchkey_server::oidc::OidcConfig {
        let rules = OidcRules {
            issuer: self.issuer.clone(),
            audience: AUDIENCE.into(),
            tenant_claim: DEFAULT_TENANT_CLAIM.into(),
            subject_claim: DEFAULT_SUBJECT_CLAIM.into(),
            max_lifetime_secs: 24 * 3600,
        };
        latchkey_server::oidc::OidcConfig {
            settings: latchkey_app::oidc::OidcSettings::new(rules),
            page: page_params.map(|params| latchkey_server::oidc::PageSignIn {
                client_id: CLIENT_ID.into(),
                scope: "openid email latchkey".into(),
                extra_params: latchkey_server::config::parse_auth_params(params).unwrap(),
            }),
        }
    }

    /// An access token for `login` with `resource` as the resource indicator
    /// (`AUDIENCE`, `AUDIENCE?alg=PS256`, or another audience), through the
    /// authorization-code flow with PKCE, as the page's public client (on a
    /// loopback redirect URI, whose port the provider ignores: RFC 8252).
    pub async fn access_token(&self, login: &str, resource: &str) -> String {
        let redirect_uri = format!("http://127.0.0.1:1{}", latchkey_domain::API_KEYS_PAGE_PATH);
        let verifier = URL_SAFE_NO_PAD.encode(rand_bytes());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let state = URL_SAFE_NO_PAD.encode(rand_bytes());
        let stop_at = redirect_uri.clone();
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.url().as_str().starts_with(&stop_at) { attempt.stop() } else { attempt.follow() }
            }))
            .build()
            .unwrap();
        let authorize = browser
            .get(format!("{}/auth", self.issuer))
            .query(&[
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", &redirect_uri),
                ("scope", "openid email latchkey"),
                ("state", &state),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("resource", resource),
                ("login_hint", login),
            ])
            .send()
            .await
            .unwrap();
        let location = authorize.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        let Some(location) = location else {
            panic!("no redirect back: {} {}", authorize.status(), authorize.text().await.unwrap_or_default());
        };
        let back = reqwest::Url::parse(&location).unwrap();
        let param = |name: &str| back.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        assert_eq!(param("state").as_deref(), Some(state.as_str()), "{location}");
        let code = param("code").unwrap_or_else(|| panic!("no code: {location}"));
        let token: serde_json::Value = browser
            .post(format!("{}/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("client_id", CLIENT_ID),
                ("code_verifier", &verifier),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {token}")).to_owned()
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// 32 bytes no two calls share (a test's PKCE verifier and state need not be secret).
fn rand_bytes() -> [u8; 32] {
    Sha256::digest(uuid::Uuid::now_v7().as_bytes()).into()
}

/// Runs the provider and waits for the line with its issuer.
fn spawn(port: u16, accounts: &str, keys: &str, keys_file: &std::path::Path) -> (Child, String) {
    spawn_with_ttl(port, accounts, keys, keys_file, 3600)
}

fn spawn_with_ttl(port: u16, accounts: &str, keys: &str, keys_file: &std::path::Path, ttl: u32) -> (Child, String) {
    let mut child = Command::new("node")
        .arg(dir().join("provider.mjs"))
        .current_dir(dir())
        .env("OIDC_PORT", port.to_string())
        .env("OIDC_ACCOUNTS", accounts)
        .env("OIDC_KEYS", keys)
        .env("OIDC_KEYS_FILE", keys_file)
        .env("OIDC_AUDIENCE", AUDIENCE)
        .env("OIDC_CLIENT_ID", CLIENT_ID)
        .env("OIDC_PAGE_PATH", latchkey_domain::API_KEYS_PAGE_PATH)
        .env("OIDC_ACCESS_TOKEN_TTL", ttl.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs tests/oidc/provider.mjs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(started) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(issuer) = started["issuer"].as_str()
            {
                let _ = tx.send(issuer.to_owned());
            }
        }
    });
    let issuer = rx.recv_timeout(Duration::from_secs(30)).expect("the identity provider starts");
    (child, issuer)
}
