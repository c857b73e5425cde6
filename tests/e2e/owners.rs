//! Owners who leave: deactivating a user suspends its keys (on every
//! replica at once) and refuses its sign-in; a transfer gives a key to
//! another owner with the same secret; reactivation restores what was not
//! transferred.

use std::time::{Duration, Instant};

use latchkey_domain::{Cloud, NoticeKind};
use latchkey_tests::browser::{Browser, click, js, until};
use latchkey_tests::{Backend, TestApp, TestDb, error_code, run_latchkey};
use serde_json::{Value, json};

on_both_backends!(
    a_deactivated_owner_suspends_its_keys_until_they_are_transferred,
    hostile_transfers_change_nothing,
    the_directory_lists_a_tenants_users_with_their_keys,
    operators_list_users_and_a_demotion_suspends_keys,
);

const SET_ACTIVE: &str = "mutation($id: ID!, $active: Boolean!) { setUserActive(input: {id: $id, active: $active}) { \
    user { id active } userErrors { field message code } } }";
const TRANSFER: &str = "mutation($id: ID!, $owner: ID!) { transferApiKey(input: {id: $id, ownerId: $owner}) { \
    apiKey { id status owner { id active } } userErrors { field message code } } }";
const TRANSFER_ALL: &str = "mutation($from: ID!, $to: ID!) { transferApiKeys(input: {fromOwnerId: $from, toOwnerId: $to}) { \
    apiKeys { id status owner { id } } userErrors { field message code } } }";
const STATUSES: &str =
    "query($status: [ApiKeyStatus!]) { apiKeys(first: 50, status: $status) { nodes { id status } } }";

async fn set_active(app: &TestApp, token: &str, user: impl ToString, active: bool) -> Value {
    let body = app.gql(Some(token), SET_ACTIVE, json!({ "id": user.to_string(), "active": active })).await;
    body["data"]["setUserActive"].clone()
}

async fn code(app: &TestApp, secret: &str) -> String {
    let answer = app.verify(secret).await;
    answer["code"].as_str().map_or_else(|| "VALID".to_owned(), str::to_owned)
}

async fn ids_with(app: &TestApp, token: &str, status: Value) -> Vec<String> {
    let body = app.gql(Some(token), STATUSES, json!({ "status": status })).await;
    let nodes = body["data"]["apiKeys"]["nodes"].as_array().unwrap_or_else(|| panic!("{body}"));
    nodes.iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
}

async fn a_deactivated_owner_suspends_its_keys_until_they_are_transferred(app: TestApp) {
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let (id1, secret1, _) = app.generate(token, &s.integration, "Sync").await;
    let (id2, secret2, _) = app.generate(token, &s.integration, "Reports").await;
    let (id3, secret3, _) = app.generate(token, &s.admin, "Admin's own").await;
    assert_eq!(code(&app, &secret1).await, "VALID", "now cached");

    // Deactivated: its keys are refused at once, from the cache too, on every surface.
    let done = set_active(&app, token, s.integration.id, false).await;
    assert_eq!(done, json!({ "user": { "id": s.integration.id.to_string(), "active": false }, "userErrors": [] }));
    assert_eq!(code(&app, &secret1).await, "OWNER_INACTIVE");
    assert_eq!(code(&app, &secret2).await, "OWNER_INACTIVE");
    assert_eq!(code(&app, &secret3).await, "VALID", "other owners' keys are untouched");
    let forward = app.http.get(format!("{}/v1/auth", app.url)).bearer_auth(&secret1).send().await.unwrap();
    assert_eq!(forward.status(), 401);
    assert_eq!(forward.headers()["x-latchkey-code"], "OWNER_INACTIVE");
    let body = app.gql(Some(&secret2), "{ viewer { tenant { id } } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("owner was deactivated"), "{body}");

    // The key table says so, and filters by it.
    let mut suspended = ids_with(&app, token, json!(["SUSPENDED"])).await;
    suspended.sort();
    let mut expected = vec![id1.clone(), id2.clone()];
    expected.sort();
    assert_eq!(suspended, expected);
    assert_eq!(ids_with(&app, token, json!(["ACTIVE"])).await, std::slice::from_ref(&id3));
    let candidates = app.gql(Some(token), "{ apiKeyOwnerCandidates { id } }", json!({})).await;
    let candidates = candidates["data"]["apiKeyOwnerCandidates"].as_array().unwrap().clone();
    assert!(!candidates.contains(&json!({ "id": s.integration.id.to_string() })), "no inactive owner is offered");

    // A transfer makes a suspended key work again with the same secret; both owners are told.
    let moved = app.gql(Some(token), TRANSFER, json!({ "id": id1, "owner": s.other_admin.id.to_string() })).await;
    let moved = &moved["data"]["transferApiKey"];
    assert_eq!(moved["userErrors"], json!([]), "{moved}");
    assert_eq!(moved["apiKey"]["status"], "ACTIVE");
    assert_eq!(moved["apiKey"]["owner"]["id"], s.other_admin.id.to_string());
    let verified = app.verify(&secret1).await;
    assert_eq!(verified["ownerId"], s.other_admin.id.to_string(), "{verified}");
    // 3 generated, the suspension notice to each active internal admin, 2 for the transfer.
    let events = app.wait_for_deliveries(7).await;
    let notices: Vec<_> = events.iter().filter(|e| e.kind == NoticeKind::KeysSuspended).collect();
    let mut admins: Vec<_> = notices.iter().map(|e| e.owner_email.clone()).collect();
    admins.sort();
    let mut expected_admins = vec![s.admin.email.clone(), s.other_admin.email.clone()];
    expected_admins.sort();
    assert_eq!(admins, expected_admins, "each active internal admin, once");
    let suspension = notices[0].suspension.clone().expect("the keys are listed");
    assert_eq!((suspension.user_id, suspension.user_name.as_str()), (s.integration.id, s.integration.name.as_str()));
    let mut listed: Vec<_> = suspension.keys.iter().map(|(_, description)| description.as_str()).collect();
    listed.sort_unstable();
    assert_eq!(listed, ["Reports", "Sync"]);
    let transfers: Vec<_> = events.iter().filter(|e| e.kind == NoticeKind::OwnerChanged).collect();
    let mut told: Vec<_> = transfers.iter().map(|e| e.owner_email.clone()).collect();
    told.sort();
    let mut owners = vec![s.integration.email.clone(), s.other_admin.email.clone()];
    owners.sort();
    assert_eq!(told, owners, "the old and the new owner");
    let change = (s.integration.name.clone(), s.other_admin.name.clone());
    assert!(transfers.iter().all(|e| e.owner_change.as_ref() == Some(&change) && e.actor_name == s.admin.name));
    let audit = app
        .gql(
            Some(token),
            "query($k: ID!) { apiKeyEvents(keyId: $k, first: 10) { nodes { action oldOwnerName newOwnerName actorName } } }",
            json!({ "k": id1 }),
        )
        .await;
    assert_eq!(
        audit["data"]["apiKeyEvents"]["nodes"][0],
        json!({ "action": "OWNER_CHANGED", "oldOwnerName": s.integration.name, "newOwnerName": s.other_admin.name, "actorName": s.admin.name })
    );

    // Reactivation restores what was not transferred.
    assert_eq!(set_active(&app, token, s.integration.id, true).await["user"]["active"], true);
    assert_eq!(code(&app, &secret2).await, "VALID");
    assert_eq!(app.verify(&secret1).await["ownerId"], s.other_admin.id.to_string(), "the transfer stands");

    // Everything of a leaver at once.
    set_active(&app, token, s.integration.id, false).await;
    let all = app
        .gql(Some(token), TRANSFER_ALL, json!({ "from": s.integration.id.to_string(), "to": s.admin.id.to_string() }))
        .await;
    let all = &all["data"]["transferApiKeys"];
    assert_eq!(all["userErrors"], json!([]), "{all}");
    assert_eq!(all["apiKeys"], json!([{ "id": id2, "status": "ACTIVE", "owner": { "id": s.admin.id.to_string() } }]));
    assert_eq!(app.verify(&secret2).await["ownerId"], s.admin.id.to_string());

    // A deactivated admin cannot sign in any more; nobody deactivates themselves.
    let other_token = app.token(&s.other_admin, Cloud::Employee);
    assert_eq!(set_active(&app, token, s.other_admin.id, false).await["userErrors"], json!([]));
    let refused = app.gql(Some(&other_token), "{ viewer { tenant { id } } }", json!({})).await;
    assert_eq!(error_code(&refused), "UNAUTHENTICATED");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("deactivated"), "{refused}");
    assert_eq!(code(&app, &secret1).await, "OWNER_INACTIVE", "and its keys are suspended");
    let own = set_active(&app, token, s.admin.id, false).await;
    assert_eq!(own["userErrors"][0]["code"], "INVALID", "{own}");
    assert_eq!(code(&app, &secret3).await, "VALID");
    app.stop().await;
}

async fn hostile_transfers_change_nothing(app: TestApp) {
    let s = app.seed("Acme").await;
    let other = app.seed("Globex").await;
    let token = &s.admin_token;
    let (id, secret, _) = app.generate(token, &s.integration, "Sync").await;
    let (foreign_id, _, _) = app.generate(&other.admin_token, &other.integration, "Theirs").await;
    set_active(&app, token, s.other_admin.id, false).await;
    let cases = [
        (id.clone(), s.academy_admin.id.to_string(), "ownerId", "INVALID_OWNER"),
        (id.clone(), s.other_admin.id.to_string(), "ownerId", "INVALID_OWNER"),
        (id.clone(), other.admin.id.to_string(), "ownerId", "NOT_FOUND"),
        (id.clone(), "not-a-user".to_owned(), "ownerId", "NOT_FOUND"),
        (foreign_id.clone(), s.admin.id.to_string(), "id", "NOT_FOUND"),
        ("garbage".to_owned(), s.admin.id.to_string(), "id", "NOT_FOUND"),
    ];
    for (key, owner, field, expected) in cases {
        let body = app.gql(Some(token), TRANSFER, json!({ "id": key, "owner": owner })).await;
        let errors = &body["data"]["transferApiKey"]["userErrors"];
        assert_eq!(
            (errors[0]["field"].clone(), errors[0]["code"].clone()),
            (json!(["input", field]), json!(expected)),
            "{body}"
        );
    }
    let bulk = app
        .gql(
            Some(token),
            TRANSFER_ALL,
            json!({ "from": s.integration.id.to_string(), "to": s.integration.id.to_string() }),
        )
        .await;
    assert_eq!(bulk["data"]["transferApiKeys"]["userErrors"][0]["code"], "INVALID", "{bulk}");
    let bulk = app
        .gql(
            Some(token),
            TRANSFER_ALL,
            json!({ "from": other.integration.id.to_string(), "to": s.admin.id.to_string() }),
        )
        .await;
    assert_eq!(bulk["data"]["transferApiKeys"]["userErrors"][0]["code"], "NOT_FOUND", "another tenant's user: {bulk}");
    let foreign = set_active(&app, token, other.admin.id, false).await;
    assert_eq!(foreign["userErrors"][0]["code"], "NOT_FOUND", "{foreign}");
    let malformed = set_active(&app, token, "not-a-user", false).await;
    assert_eq!(malformed["userErrors"][0]["code"], "NOT_FOUND", "{malformed}");
    // An integration's key cannot manage users.
    let by_key = app.gql(Some(&secret), SET_ACTIVE, json!({ "id": s.admin.id.to_string(), "active": false })).await;
    assert_eq!(error_code(&by_key), "FORBIDDEN", "{by_key}");

    // Nothing changed.
    assert_eq!(app.verify(&secret).await["ownerId"], s.integration.id.to_string());
    assert_eq!(app.verify(&secret).await["valid"], true);
    let admin_body = app.gql(Some(&other.admin_token), "{ viewer { user { active } } }", json!({})).await;
    assert_eq!(admin_body["data"]["viewer"]["user"]["active"], true, "{admin_body}");
    assert!(app.notifier.delivered().iter().all(|e| e.kind != NoticeKind::OwnerChanged));
    app.stop().await;
}

const USERS: &str = "query($first: Int, $after: String, $search: String, $role: UserRole, $active: Boolean) { \
    users(first: $first, after: $after, search: $search, role: $role, active: $active) { \
    nodes { id name role active keyCount } pageInfo { hasNextPage endCursor } totalCount } }";

async fn the_directory_lists_a_tenants_users_with_their_keys(app: TestApp) {
    let s = app.seed("Acme").await;
    let other = app.seed("Globex").await;
    let token = &s.admin_token;
    app.generate(token, &s.integration, "Sync").await;
    app.generate(token, &s.integration, "Reports").await;
    app.generate(&other.admin_token, &other.integration, "Theirs").await;
    set_active(&app, token, s.other_admin.id, false).await;
    let users = |vars: Value| app.gql(Some(token), USERS, vars);

    // Paged in creation order, this tenant only.
    let first = users(json!({ "first": 2 })).await;
    let page = &first["data"]["users"];
    assert_eq!(
        (page["totalCount"].clone(), page["pageInfo"]["hasNextPage"].clone()),
        (json!(4), json!(true)),
        "{first}"
    );
    let ids = |page: &Value| -> Vec<String> {
        page["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(page), [s.admin.id.to_string(), s.other_admin.id.to_string()]);
    let rest = users(json!({ "first": 2, "after": page["pageInfo"]["endCursor"] })).await;
    let rest = &rest["data"]["users"];
    assert_eq!(ids(rest), [s.academy_admin.id.to_string(), s.integration.id.to_string()]);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);

    // Filters, and what each user owns.
    let bots = users(json!({ "role": "INTEGRATION_USER" })).await;
    assert_eq!(
        bots["data"]["users"]["nodes"],
        json!([{ "id": s.integration.id.to_string(), "name": s.integration.name, "role": "INTEGRATION_USER", "active": true, "keyCount": 2 }])
    );
    let inactive = users(json!({ "active": false })).await;
    assert_eq!(ids(&inactive["data"]["users"]), [s.other_admin.id.to_string()]);
    let found = users(json!({ "search": "SYNC BOT" })).await;
    assert_eq!(ids(&found["data"]["users"]), [s.integration.id.to_string()], "name, ignoring case");
    let found = users(json!({ "search": "academy@acme" })).await;
    assert_eq!(ids(&found["data"]["users"]), [s.academy_admin.id.to_string()], "email");
    for wildcard in ["%", "_", "\\"] {
        let found = users(json!({ "search": wildcard })).await;
        assert_eq!(found["data"]["users"]["totalCount"], 0, "{wildcard} is a character, not a pattern: {found}");
    }
    let me = app.gql(Some(token), "{ viewer { user { keyCount } } }", json!({})).await;
    assert_eq!(me["data"]["viewer"]["user"]["keyCount"], 0, "{me}");

    // Refusals.
    for (vars, code) in [
        (json!({ "after": "nope" }), "BAD_USER_INPUT"),
        (json!({ "first": 0 }), "BAD_USER_INPUT"),
        (json!({ "search": "x".repeat(300) }), "BAD_USER_INPUT"),
    ] {
        assert_eq!(error_code(&users(vars.clone()).await), code, "{vars}");
    }
    let (_, secret, _) = app.generate(token, &s.integration, "Key").await;
    assert_eq!(error_code(&app.gql(Some(&secret), USERS, json!({})).await), "FORBIDDEN");
    app.stop().await;
}

async fn operators_list_users_and_a_demotion_suspends_keys(app: TestApp) {
    let s = app.seed("Acme").await;
    let (_, secret, _) = app.generate(&s.admin_token, &s.integration, "Sync").await;
    let cli = |args: &[&str]| {
        let out = run_latchkey(&app.db, args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let user = s.integration.id.to_string();

    // A role that cannot own keys suspends them, and the admins are told.
    let (ok, out, err) = cli(&["user", "update", "--user", &user, "--role", "academy-admin"]);
    assert!(ok, "{err}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (printed["role"].clone(), printed["keysWork"].clone()),
        (json!("academy-admin"), json!(false)),
        "{printed}"
    );
    assert_eq!(code(&app, &secret).await, "OWNER_INACTIVE");
    let events = app.wait_for_deliveries(3).await;
    assert_eq!(events.iter().filter(|e| e.kind == NoticeKind::KeysSuspended).count(), 2, "both internal admins");
    let (ok, _, err) = cli(&["user", "update", "--user", &user, "--role", "integration-user"]);
    assert!(ok, "{err}");
    assert_eq!(code(&app, &secret).await, "VALID", "a role that may own keys restores them");

    let (ok, out, err) = cli(&["user", "list", "--tenant", &s.tenant.id.to_string()]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert!(
        rows.contains(&json!({ "id": user, "email": s.integration.email, "name": s.integration.name,
        "role": "integration-user", "active": true, "keyCount": 1 })),
        "{listed}"
    );

    for (args, says) in [
        (vec!["user", "update", "--user", &user, "--role", "boss"], "invalid value"),
        (vec!["user", "update", "--user", "nope", "--role", "academy-admin"], "--user must be a user id"),
        (vec!["user", "list", "--tenant", "nope"], "--tenant must be a tenant id"),
    ] {
        let (ok, _, err) = cli(&args);
        assert!(!ok && err.contains(says), "{args:?}: {err}");
    }
    app.stop().await;
}

/// On PostgreSQL, a deactivation through one replica (or the CLI) reaches
/// every replica's cache within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_reaches_every_replica_within_a_second() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let app = TestApp::start_on(db).await;
    let (replica, _) = app.replica().await;
    let s = app.seed("Acme").await;
    let (_, secret, _) = app.generate(&s.admin_token, &s.integration, "Sync").await;
    let (_, other_secret, _) = app.generate(&s.admin_token, &s.other_admin, "Other").await;
    let verify_on_replica = |key: String| {
        let http = app.http.clone();
        let url = format!("{}/v1/keys/verify", replica.url());
        async move {
            let answer: Value = http.post(url).json(&json!({ "key": key })).send().await.unwrap().json().await.unwrap();
            answer["code"].as_str().map_or_else(|| "VALID".to_owned(), str::to_owned)
        }
    };
    assert_eq!(verify_on_replica(secret.clone()).await, "VALID", "cached on the replica");
    assert_eq!(verify_on_replica(other_secret.clone()).await, "VALID");

    // Through the first replica's GraphQL.
    set_active(&app, &s.admin_token, s.integration.id, false).await;
    let started = Instant::now();
    while verify_on_replica(secret.clone()).await != "OWNER_INACTIVE" {
        assert!(started.elapsed() < Duration::from_secs(1), "the replica still accepts a suspended key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Through the operators' CLI.
    let out = run_latchkey(&app.db, &["user", "deactivate", "--user", &s.other_admin.id.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((printed["active"].clone(), printed["changed"].clone()), (json!(false), json!(true)), "{printed}");
    assert_eq!(printed["keysSuspended"].as_array().unwrap().len(), 1);
    let started = Instant::now();
    while verify_on_replica(other_secret.clone()).await != "OWNER_INACTIVE" {
        assert!(started.elapsed() < Duration::from_secs(1), "the CLI's deactivation did not reach the replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = run_latchkey(&app.db, &["user", "deactivate", "--user", &s.other_admin.id.to_string()]);
    assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap()["changed"], false);
    let out = run_latchkey(&app.db, &["user", "activate", "--user", &s.other_admin.id.to_string()]);
    assert!(out.status.success());
    assert_eq!(verify_on_replica(other_secret).await, "VALID");
    let bad = run_latchkey(&app.db, &["user", "deactivate", "--user", "nope"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--user must be a user id"));
    replica.stop().await;
    app.stop().await;
}

/// The API keys page: suspended keys are marked, and "Transfer" (with "every
/// other key of …") gives them to another owner; they work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_keys_are_transferred_from_the_page() {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::start(Backend::Sqlite).await.unwrap();
    let c = &browser.client;
    let s = app.seed("Acme").await;
    let (_, sync, _) = app.generate(&s.admin_token, &s.integration, "Sync").await;
    let (_, reports, _) = app.generate(&s.admin_token, &s.integration, "Reports").await;
    set_active(&app, &s.admin_token, s.integration.id, false).await;

    app.generate(&s.admin_token, &s.admin, "Admin's own").await;

    // The admins' mail links to the page filtered to the deactivated owner.
    let link = format!("{}/settings/integrations/api?owner={}#token={}", app.url, s.integration.id, s.admin_token);
    c.goto(&link).await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 2").await;
    let statuses =
        js(c, "return [...document.querySelectorAll('#rows tr td:nth-child(5)')].map(td => td.textContent)").await;
    assert_eq!(statuses, json!(["Suspended — owner deactivated", "Suspended — owner deactivated"]));
    let filter = js(c, "return document.getElementById('owner-filter').value").await;
    assert_eq!(filter, json!(s.integration.id.to_string()));
    js(c, "const f = document.getElementById('owner-filter'); f.value = ''; f.dispatchEvent(new Event('change')); return true").await;
    until(c, "return document.querySelectorAll('#rows tr').length === 3").await;

    click(c, "#rows tr[data-status='SUSPENDED'] button[data-action='menu']").await;
    click(c, "#rows tr[data-status='SUSPENDED'] [role=menu] button[data-action='transfer']").await;
    until(c, "return document.getElementById('transfer-dialog').open").await;
    let offered = js(c, "return [...document.querySelectorAll('#transfer-owner option')].map(o => o.value)").await;
    let offered: Vec<String> = serde_json::from_value(offered).unwrap();
    assert!(!offered.contains(&s.integration.id.to_string()), "not to the inactive owner: {offered:?}");
    let other = s.other_admin.id.to_string();
    js(c, &format!("document.getElementById('transfer-owner').value = '{other}'; return true")).await;
    click(c, "#transfer-all").await;
    click(c, "#transfer-form button[type=submit]").await;
    until(c, "return !document.getElementById('transfer-dialog').open").await;
    until(
        c,
        "return [...document.querySelectorAll('#rows tr td:nth-child(5)')].every(td => td.textContent === 'Active') \
         && document.querySelectorAll('#rows tr').length === 3",
    )
    .await;
    let owners =
        js(c, "return [...document.querySelectorAll('#rows tr td:nth-child(3)')].map(td => td.firstChild.textContent)")
            .await;
    assert_eq!(owners, json!([s.admin.name, s.other_admin.name, s.other_admin.name]));
    for secret in [&sync, &reports] {
        assert_eq!(app.verify(secret).await["ownerId"], other, "works again, same secret");
    }

    // A deactivated admin's page returns to sign-in, saying why.
    js(c, "sessionStorage.clear(); return true").await;
    let other_token = app.token(&s.other_admin, Cloud::Employee);
    c.goto(&format!("{}/settings/integrations/api#token={other_token}", app.url)).await.unwrap();
    until(c, "return document.querySelectorAll('#rows tr').length === 3").await;
    set_active(&app, &s.admin_token, s.other_admin.id, false).await;
    let search = c.find(fantoccini::Locator::Css("#search")).await.unwrap();
    search.send_keys("Sync").await.unwrap();
    until(c, "return !document.getElementById('signin').hidden").await;
    let said = js(c, "return document.getElementById('signin-message').textContent").await;
    assert!(said.as_str().unwrap().contains("deactivated"), "{said}");
    app.stop().await;
}
