//! Sign-in through the company's identity provider (OpenID Connect) against a
//! real provider (`oidc-provider` on Node, `support/oidc.rs`): each algorithm,
//! issuer, audience and times, the user mapping, key rotation and outages at
//! the provider, forged tokens, and a deployment that signs in only this way.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use fantoccini::Locator;
use hmac::{Hmac, Mac};
use latchkey_domain::admin_token::AdminTokenKey;
use latchkey_domain::clock::ManualClock;
use latchkey_tests::browser::{Browser, click, js, until};
use latchkey_tests::oidc::{AUDIENCE, Account, IdentityProvider, provider_installed};
use latchkey_tests::process::ServerProcess;
use latchkey_tests::{AppOptions, JWT_SECRET, Seeded, TestApp, TestDb, error_code, ops, run_latchkey, seed_tenant};
use serde_json::{Value, json};

on_both_backends!(
    admins_sign_in_with_the_providers_tokens_of_each_algorithm,
    tokens_of_another_issuer_or_audience_or_out_of_time_are_refused,
    users_are_found_by_subject_or_verified_email_within_their_tenant,
    the_provider_rotates_keys_and_goes_down,
    forged_tokens_are_refused,
);

const WHO: &str = "{ viewer { user { id email } tenant { id } } }";
const KEYS: &str = "{ apiKeys { totalCount } }";
const SCIM_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

/// The tenant's name at the provider (its `tid` claim).
const TENANT_AT_IDP: &str = "8f14e45f-acme-directory";

struct World {
    app: TestApp,
    idp: IdentityProvider,
    s: Seeded,
    clock: Arc<ManualClock>,
    /// A key allowed `scim`: how the provider provisions users.
    scim_key: String,
}

/// Acme seeded, a provider that knows `accounts` and publishes `keys`,
/// Latchkey trusting it on a clock the test moves, and Acme named
/// `TENANT_AT_IDP` at the provider (`latchkey tenant update --external-id`).
async fn world(db: TestDb, keys: &str, accounts: impl FnOnce(&Seeded) -> Vec<Account>) -> Option<World> {
    if !provider_installed() {
        return None;
    }
    let store = db.store().await;
    store.migrate().await.unwrap();
    let s = seed_tenant(&store, &AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap(), "Acme").await;
    store.close().await.unwrap();
    let idp = IdentityProvider::start(&accounts(&s), keys);
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let options =
        AppOptions { oidc: Some(idp.config(None)), clock: Some(clock.clone()), metrics: true, ..AppOptions::default() };
    let app = TestApp::start_with(db, options).await;
    let tenant = s.tenant.id.to_string();
    let out = run_latchkey(&app.db, &["tenant", "update", "--tenant", &tenant, "--external-id", TENANT_AT_IDP]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let updated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(updated["externalId"], TENANT_AT_IDP);
    let input = json!({ "input": { "ownerId": s.integration.id, "description": "IdP provisioning", "restrictions": { "permissions": ["scim"] } } });
    let body = app.gql(Some(&s.admin_token), ops::GENERATE_RESTRICTED, input).await;
    let scim_key = body["data"]["generateApiKey"]["secret"].as_str().unwrap().to_owned();
    // This provider provisions internal admins: the tenant allows it.
    let allowed =
        "mutation { updateTenantSettings(input: { scimMayGrantInternalAdmin: true }) { scimMayGrantInternalAdmin } }";
    let body = app.gql(Some(&s.admin_token), allowed, json!({})).await;
    assert_eq!(body["data"]["updateTenantSettings"]["scimMayGrantInternalAdmin"], true, "{body}");
    Some(World { app, idp, s, clock, scim_key })
}

impl World {
    /// Sends a SCIM request as the provider; returns the status and body.
    async fn scim(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .app
            .http
            .request(method, format!("{}/scim/v2{path}", self.app.url))
            .bearer_auth(&self.scim_key)
            .header("content-type", "application/scim+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// Provisions a user over SCIM, as the provider would; returns its id.
    async fn provision(&self, email: &str, external_id: &str, role: &str) -> String {
        let user = json!({
            "schemas": [SCIM_USER], "userName": email, "externalId": external_id, "displayName": email,
            "emails": [{ "primary": true, "value": email }], "roles": [{ "value": role, "primary": true }], "active": true,
        });
        let (status, created) = self.scim(reqwest::Method::POST, "/Users", user).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    }

    /// Deactivates a user over SCIM.
    async fn deactivate(&self, id: &str) {
        let patch = json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{ "op": "replace", "value": { "active": false } }] });
        let (status, body) = self.scim(reqwest::Method::PATCH, &format!("/Users/{id}"), patch).await;
        assert_eq!(status, 200, "{body}");
    }

    /// Who Latchkey says `token` is: the viewer, or the refusal's code and message.
    async fn who(&self, token: &str) -> Result<Value, (String, String)> {
        let body = self.app.gql(Some(token), WHO, json!({})).await;
        match body["errors"][0]["message"].as_str() {
            None => Ok(body["data"]["viewer"].clone()),
            Some(message) => Err((error_code(&body).to_owned(), message.to_owned())),
        }
    }

    /// The refusal message for `token`, which must be refused as UNAUTHENTICATED.
    async fn refused(&self, token: &str) -> String {
        let (code, message) = self.who(token).await.expect_err("refused");
        assert_eq!(code, "UNAUTHENTICATED", "{message}");
        message
    }

    /// Fetches of the provider's keys so far, by result.
    async fn key_fetches(&self) -> (u64, u64) {
        let addr = self.app.server.as_ref().unwrap().metrics_addr.unwrap();
        let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
        let count = |result: &str| {
            let line = format!("latchkey_oidc_key_fetches_total{{result=\"{result}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |n| n.parse().unwrap())
        };
        (count("ok"), count("error"))
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

fn ada(s: &Seeded) -> Account {
    Account::new("00u-ada", &s.admin.email, TENANT_AT_IDP)
}

async fn admins_sign_in_with_the_providers_tokens_of_each_algorithm(db: TestDb) {
    let Some(w) = world(db, "rsa-1:RS256,ec-1:ES256", |s| {
        // One account names its tenant by Latchkey's id instead of its external id.
        let by_id = Account::new("00u-other", &s.other_admin.email, &s.tenant.id.to_string());
        vec![ada(s), by_id]
    })
    .await
    else {
        return;
    };
    let ada_id = w.provision("ada.lovelace@acme.example", "00u-ada", "internal-admin").await;
    for (query, alg) in [("", "RS256"), ("?alg=PS256", "PS256"), ("?alg=ES256", "ES256")] {
        let resource = format!("{AUDIENCE}{query}");
        let token = w.idp.access_token("00u-ada", &resource).await;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts(&token).0).unwrap()).unwrap();
        assert_eq!(header["alg"], alg, "the provider signed with {alg}");
        let viewer = w.who(&token).await.unwrap_or_else(|e| panic!("{resource} ({header}): {e:?}"));
        // Found by `sub` = SCIM externalId, not by the token's email (the seeded admin's).
        assert_eq!(viewer["user"]["id"], ada_id.as_str(), "{header}");
        assert_eq!(viewer["tenant"]["id"], w.s.tenant.id.to_string());
        // The role comes from Latchkey: an internal admin manages keys.
        let keys = w.app.gql(Some(&token), KEYS, json!({})).await;
        assert_eq!(keys["data"]["apiKeys"]["totalCount"], 1, "{keys}");
    }
    let by_id = w.idp.access_token("00u-other", AUDIENCE).await;
    assert_eq!(w.who(&by_id).await.unwrap()["user"]["id"], w.s.other_admin.id.to_string());
    // The shared-secret path keeps working beside it.
    assert_eq!(w.who(&w.s.admin_token).await.unwrap()["user"]["id"], w.s.admin.id.to_string());
    assert_eq!(w.key_fetches().await, (1, 0), "one fetch of the key set served every token");
    w.stop().await;
}

async fn tokens_of_another_issuer_or_audience_or_out_of_time_are_refused(db: TestDb) {
    let Some(w) = world(db, "rsa-1:RS256", |s| vec![ada(s)]).await else { return };
    let good = w.idp.access_token("00u-ada", AUDIENCE).await;
    assert!(w.who(&good).await.is_ok());
    let for_billing = w.idp.access_token("00u-ada", "https://billing.example").await;
    assert!(w.refused(&for_billing).await.contains("not issued for this service"));
    // Another provider signing with the same key: only the issuer differs.
    let mut impostor = w.idp.twin();
    let foreign = impostor.access_token("00u-ada", AUDIENCE).await;
    assert!(w.refused(&foreign).await.contains("not issued for this service"));
    impostor.stop();
    w.advance(2 * 3600);
    assert!(w.refused(&good).await.contains("expired"));
    w.advance(-2 * 3600 - 600);
    assert_eq!(w.refused(&good).await, "The token is not valid.", "not valid yet (nbf, iat)");
    w.stop().await;
}

async fn users_are_found_by_subject_or_verified_email_within_their_tenant(db: TestDb) {
    let Some(w) = world(db, "ec-1:ES256", |s| {
        let mut unverified = Account::new("00u-eve", &s.other_admin.email, TENANT_AT_IDP);
        unverified.email_verified = false;
        vec![
            ada(s),
            // No externalId matches: found by the verified address.
            Account::new("00u-other", &s.other_admin.email, TENANT_AT_IDP),
            unverified,
            Account::new("00u-nobody", "nobody@acme.example", TENANT_AT_IDP),
            Account::new("00u-lost", &s.admin.email, "no-such-directory"),
            Account::new("00u-academy", &s.academy_admin.email, TENANT_AT_IDP),
            Account::new("00u-elsewhere", "admin@globex.example", TENANT_AT_IDP),
        ]
    })
    .await
    else {
        return;
    };
    let ada_id = w.provision("ada.lovelace@acme.example", "00u-ada", "internal-admin").await;
    let es256 = format!("{AUDIENCE}?alg=ES256");
    let token = |login: &'static str| w.idp.access_token(login, &es256);
    assert_eq!(w.who(&token("00u-ada").await).await.unwrap()["user"]["id"], ada_id.as_str());
    assert_eq!(w.who(&token("00u-other").await).await.unwrap()["user"]["id"], w.s.other_admin.id.to_string());
    assert!(w.refused(&token("00u-eve").await).await.contains("email is not verified"));
    assert!(w.refused(&token("00u-nobody").await).await.contains("No user of the token's tenant"));
    assert_eq!(w.refused(&token("00u-lost").await).await, "The token's tenant is not known to Latchkey.");
    // A user of another tenant is simply not found in this one.
    let globex = seed_tenant(&w.app.store, &w.app.token_key, "Globex").await;
    assert_eq!(globex.admin.email, "admin@globex.example");
    assert!(w.refused(&token("00u-elsewhere").await).await.contains("No user of the token's tenant"));
    // The role is Latchkey's: an academy admin signs in but may not manage keys.
    let academy = token("00u-academy").await;
    assert!(w.who(&academy).await.is_ok());
    assert_eq!(error_code(&w.app.gql(Some(&academy), KEYS, json!({})).await), "FORBIDDEN");
    // Deactivated by the provider over SCIM: refused.
    let before = token("00u-ada").await;
    w.deactivate(&ada_id).await;
    assert_eq!(w.refused(&before).await, "The token's user is deactivated.");
    w.stop().await;
}

async fn the_provider_rotates_keys_and_goes_down(db: TestDb) {
    let Some(mut w) = world(db, "rsa-1:RS256", |s| vec![ada(s)]).await else { return };
    let first = w.idp.access_token("00u-ada", AUDIENCE).await;
    assert!(w.who(&first).await.is_ok());
    assert_eq!(w.key_fetches().await, (1, 0));

    // The provider rotates: a new signing key, the old one still published.
    w.idp.restart_with_keys("rsa-2:RS256,rsa-1:RS256");
    let second = w.idp.access_token("00u-ada", AUDIENCE).await;
    // Within 30 s of the last fetch the set is not fetched again…
    assert!(w.refused(&second).await.contains("does not publish"));
    assert_eq!(w.key_fetches().await, (1, 0));
    // …after, the unknown kid makes Latchkey fetch it.
    w.advance(31);
    assert!(w.who(&second).await.is_ok(), "the new key is learnt");
    assert!(w.who(&first).await.is_ok(), "the old key is still published");
    assert_eq!(w.key_fetches().await, (2, 0));

    // The provider moves to a third key, then goes down before Latchkey saw it.
    w.idp.restart_with_keys("rsa-3:RS256");
    let third = w.idp.access_token("00u-ada", AUDIENCE).await;
    w.idp.stop();
    w.advance(31);
    assert!(w.refused(&third).await.contains("does not publish"), "a new kid is refused");
    assert_eq!(w.key_fetches().await, (2, 1));
    assert!(w.who(&first).await.is_ok(), "the last good keys keep working");
    assert!(w.who(&second).await.is_ok());

    // Back up: the next unknown kid after 30 s fetches the set that dropped the old keys.
    w.idp.restart_with_keys("rsa-3:RS256");
    w.advance(31);
    assert!(w.who(&third).await.is_ok());
    assert!(w.refused(&first).await.contains("does not publish"), "a key the provider dropped no longer works");
    w.stop().await;
}

async fn forged_tokens_are_refused(db: TestDb) {
    let Some(w) = world(db, "rsa-1:RS256,ec-1:ES256", |s| vec![ada(s)]).await else { return };
    let genuine = w.idp.access_token("00u-ada", AUDIENCE).await;
    assert!(w.who(&genuine).await.is_ok());
    let (_, payload, _) = parts(&genuine);
    let jwks: Value = reqwest::get(format!("{}/jwks", w.idp.issuer)).await.unwrap().json().await.unwrap();
    let rsa = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == "rsa-1").unwrap();

    // alg confusion: HS256 signed with the provider's RSA public key as the secret.
    let public_key_text = rsa.to_string();
    for secret in [public_key_text.as_bytes(), rsa["n"].as_str().unwrap().as_bytes()] {
        let confused = sign_hs256(&json!({ "alg": "HS256", "kid": "rsa-1" }), payload, secret);
        assert_eq!(w.refused(&confused).await, "The token is not valid.");
    }
    // none, and an ES256 header over the RSA key's kid.
    let none = format!("{}.{payload}.", b64(&json!({ "alg": "none", "kid": "rsa-1" })));
    assert_eq!(w.refused(&none).await, "The token is not valid.");
    let (_, _, signature) = parts(&genuine);
    let switched = format!("{}.{payload}.{signature}", b64(&json!({ "alg": "ES256", "kid": "rsa-1" })));
    assert_eq!(w.refused(&switched).await, "The token is not valid.");
    // The genuine header and signature over changed claims.
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["sub"] = json!("00u-someone-else");
    let (header, _, signature) = parts(&genuine);
    let tampered = format!("{header}.{}.{signature}", b64(&claims));
    assert_eq!(w.refused(&tampered).await, "The token is not valid.");

    // A flood of random kids fetches the key set at most once per 30 s.
    w.advance(31);
    let before = w.key_fetches().await;
    for i in 0..50 {
        let random_kid =
            format!("{}.{payload}.{signature}", b64(&json!({ "alg": "RS256", "kid": format!("kid-{i}") })));
        assert!(w.refused(&random_kid).await.contains("does not publish"));
    }
    assert_eq!(w.key_fetches().await, (before.0 + 1, before.1), "fifty unknown kids, one fetch");
    w.stop().await;
}

/// A deployment with only OIDC: no shared secret at all (`latchkey serve` as a process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_may_sign_in_only_through_its_provider() {
    if !provider_installed() {
        return;
    }
    let db = TestDb::new(latchkey_tests::Backend::Sqlite).await.unwrap();
    let store = db.store().await;
    store.migrate().await.unwrap();
    let s = seed_tenant(&store, &AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap(), "Acme").await;
    let idp =
        IdentityProvider::start(&[Account::new("00u-ada", &s.admin.email, &s.tenant.id.to_string())], "rsa-1:RS256");
    let server = ServerProcess::spawn(&[
        // Set but empty, as a deployment template may leave it: the same as unset.
        ("LATCHKEY_JWT_SECRET", ""),
        ("LATCHKEY_DATABASE_URL", &db.url),
        ("LATCHKEY_OIDC_ISSUER", &idp.issuer),
        ("LATCHKEY_OIDC_AUDIENCE", AUDIENCE),
    ]);
    let who = |token: String| {
        let url = format!("{}/graphql", server.url);
        async move {
            let body: Value = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "query": WHO }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body
        }
    };
    let viewer = who(idp.access_token("00u-ada", AUDIENCE).await).await;
    assert_eq!(viewer["data"]["viewer"]["user"]["id"], s.admin.id.to_string(), "{viewer}");
    let shared_secret = who(s.admin_token.clone()).await;
    assert_eq!(error_code(&shared_secret), "UNAUTHENTICATED");
    assert!(shared_secret["errors"][0]["message"].as_str().unwrap().contains("only tokens of its identity provider"));
    // Without either way to sign in, serve refuses to start and says why.
    let out = std::process::Command::new(latchkey_tests::latchkey_bin())
        .arg("serve")
        .env("LATCHKEY_DATABASE_URL", &db.url)
        .env_remove("LATCHKEY_JWT_SECRET")
        .env("LATCHKEY_OIDC_AUDIENCE", AUDIENCE)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("LATCHKEY_OIDC_ISSUER is required"));
    let out = std::process::Command::new(latchkey_tests::latchkey_bin())
        .arg("serve")
        .env("LATCHKEY_DATABASE_URL", &db.url)
        .env_remove("LATCHKEY_JWT_SECRET")
        .env("LATCHKEY_OIDC_ISSUER", "http://idp.example")
        .env("LATCHKEY_OIDC_AUDIENCE", AUDIENCE)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("LATCHKEY_OIDC_ISSUER is invalid"));
}

/// The API keys page's "Sign in with your organisation": the
/// authorization-code flow with PKCE through the provider's own login page,
/// the token kept in sessionStorage only, and the session ended at its expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keys_page_signs_in_through_the_provider() {
    if !provider_installed() {
        return;
    }
    let Some(browser) = Browser::start().await else { return };
    let c = &browser.client;
    let db = TestDb::new(latchkey_tests::Backend::Sqlite).await.unwrap();
    let store = db.store().await;
    store.migrate().await.unwrap();
    let s = seed_tenant(&store, &AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap(), "Acme").await;
    let accounts = [Account::new("ada", &s.admin.email, &s.tenant.id.to_string())];
    // Short-lived tokens, so that the test sees the page end the session.
    let idp = IdentityProvider::start_with_token_ttl(&accounts, "ec-1:ES256", 20);
    // The provider wants a resource indicator to issue a token for Latchkey.
    let options = AppOptions {
        oidc: Some(idp.config(Some(&format!("resource={AUDIENCE}%3Falg%3DES256")))),
        ..AppOptions::default()
    };
    let app = TestApp::start_with(db, options).await;
    app.generate(&s.admin_token, &s.integration, "Salesforce sync").await;
    let page = format!("{}{}", app.url, latchkey_domain::API_KEYS_PAGE_PATH);
    let csp =
        app.http.get(&page).send().await.unwrap().headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains(&format!("connect-src 'self' {}", idp.issuer)),
        "the page may post to the token endpoint: {csp}"
    );

    c.goto(&format!("{page}?owner={}", s.integration.id)).await.unwrap();
    until(c, "return !document.getElementById('org-signin').hidden").await;
    click(c, "#org-signin-button").await;
    // The provider's own sign-in page.
    until(c, "return !!document.getElementById('login')").await;
    let at_provider = js(c, "return location.href").await;
    assert!(at_provider.as_str().unwrap().starts_with(&idp.issuer), "{at_provider}");
    c.find(Locator::Css("#login")).await.unwrap().send_keys("ada").await.unwrap();
    click(c, "#sign-in").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 1").await;
    assert_eq!(js(c, "return document.getElementById('who').textContent").await, json!("Admin (Acme) · Acme"));
    assert_eq!(
        js(c, "return location.search").await,
        json!(format!("?owner={}", s.integration.id)),
        "the address the flow left from"
    );
    let token = js(c, "return sessionStorage.getItem('latchkey.adminToken')").await;
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts(token.as_str().unwrap()).1).unwrap()).unwrap();
    assert_eq!(claims["iss"], idp.issuer.as_str(), "the provider's access token");
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(
        js(c, "return localStorage.length + document.cookie.length").await,
        json!(0),
        "kept in sessionStorage only"
    );
    assert_eq!(
        js(c, "return sessionStorage.getItem('latchkey.signInFlow')").await,
        Value::Null,
        "the verifier is gone"
    );
    // At the token's expiry the page signs out by itself.
    for _ in 0..400 {
        if js(c, "return !document.getElementById('signin').hidden").await == json!(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        js(c, "return document.getElementById('signin-message').textContent").await,
        json!("Your session has expired; sign in again.")
    );
    assert_eq!(js(c, "return sessionStorage.getItem('latchkey.adminToken')").await, Value::Null);
    // An answer for a sign-in this tab did not start (login CSRF) is refused before any exchange.
    c.goto(&format!("{page}?code=stolen-code&state=forged")).await.unwrap();
    until(c, "return document.getElementById('signin-message').textContent.includes('does not belong to a sign-in started here')").await;
    assert_eq!(js(c, "return location.search").await, json!(""), "the code leaves the address bar");
    assert_eq!(js(c, "return sessionStorage.getItem('latchkey.adminToken')").await, Value::Null);
    app.stop().await;
}

fn parts(token: &str) -> (&str, &str, &str) {
    let mut parts = token.split('.');
    (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap())
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn sign_hs256(header: &Value, payload: &str, secret: &[u8]) -> String {
    let input = format!("{}.{payload}", b64(header));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}
