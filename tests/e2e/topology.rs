//! Latchkey on the PostgreSQL topologies operators run, started inside the
//! test on free ports (never the machine's own cluster): a cluster of its own
//! behind Debian's PgBouncer in transaction mode, two `latchkey serve`
//! processes on it, and every kind of revocation reaching the other replica
//! within a second.

use std::time::{Duration, Instant};

use latchkey_domain::admin_token::AdminTokenKey;
use latchkey_store::{Store, StoreOptions};
use latchkey_tests::process::ServerProcess;
use latchkey_tests::topology::{Cluster, PgBouncer};
use latchkey_tests::{JWT_SECRET, ops, seed_tenant};
use serde_json::{Value, json};

/// What `base` answers for `secret` (asking for `permissions`).
async fn code_at(http: &reqwest::Client, base: &str, secret: &str, permissions: &[&str]) -> String {
    let body = json!({ "key": secret, "permissions": permissions });
    let verdict: Value =
        http.post(format!("{base}/v1/keys/verify")).json(&body).send().await.unwrap().json().await.unwrap();
    if verdict["valid"] == true { "VALID".into() } else { verdict["code"].as_str().unwrap().to_owned() }
}

/// Waits until `base` answers `expected`; how long that took.
async fn reaches(http: &reqwest::Client, base: &str, secret: &str, permissions: &[&str], expected: &str) -> Duration {
    let started = Instant::now();
    loop {
        let code = code_at(http, base, secret, permissions).await;
        if code == expected {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{base} still answers {code}, not {expected}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_in_transaction_mode_every_revocation_reaches_the_other_replica_within_a_second() {
    let Some(cluster) = Cluster::start() else { return };
    let Some(bouncer) = PgBouncer::start(&cluster) else { return };
    let (pooled, direct) = (bouncer.url(), cluster.url());
    // Before: the store's own statements through the pooler fail (sqlx's named
    // statements). With the session URL, migrations take it and the rest works.
    let envs = [
        ("LATCHKEY_DATABASE_URL", pooled.as_str()),
        ("LATCHKEY_DATABASE_LISTEN_URL", direct.as_str()),
        ("LATCHKEY_JWT_SECRET", JWT_SECRET),
        ("LATCHKEY_DB_MAX_CONNECTIONS", "8"),
    ];
    let out = latchkey_tests::run_latchkey_with(
        &[("LATCHKEY_DATABASE_URL", &pooled), ("LATCHKEY_DATABASE_LISTEN_URL", &direct)],
        &["migrate"],
    );
    assert!(out.status.success(), "migrate through PgBouncer: {}", String::from_utf8_lossy(&out.stderr));
    let replicas = ServerProcess::spawn_many(2, &envs);
    let (a, b) = (&replicas[0].url, &replicas[1].url);
    let store = Store::connect(&direct, &StoreOptions::default()).await.unwrap();
    let token_key = AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap();
    let s = seed_tenant(&store, &token_key, "Acme").await;
    let http = reqwest::Client::new();
    let gql = |query: &'static str, variables: Value| {
        let (http, token, base) = (http.clone(), s.admin_token.clone(), a.clone());
        async move {
            let body = json!({ "query": query, "variables": variables });
            let resp = http.post(format!("{base}/graphql")).bearer_auth(token).json(&body).send().await.unwrap();
            let body: Value = resp.json().await.unwrap();
            assert!(body["errors"].is_null(), "{body}");
            body
        }
    };
    let generate = |description: &'static str| {
        let gql = &gql;
        let owner = s.integration.id.to_string();
        async move {
            let input = json!({ "input": { "ownerId": owner, "description": description } });
            let body = gql(ops::GENERATE, input).await;
            let made = &body["data"]["generateApiKey"];
            (made["apiKey"]["id"].as_str().unwrap().to_owned(), made["secret"].as_str().unwrap().to_owned())
        }
    };

    let mut took = Vec::new();
    for (kind, expected) in [
        ("rotate", "INVALID"),
        ("delete", "INVALID"),
        ("disable", "DISABLED"),
        ("restrict", "INSUFFICIENT_PERMISSIONS"),
        ("leak", "COMPROMISED"),
        ("suspend", "OWNER_INACTIVE"),
    ] {
        let (id, secret) = generate("Revoked through PgBouncer").await;
        let asks: &[&str] = if kind == "restrict" { &["users:write"] } else { &[] };
        assert_eq!(code_at(&http, b, &secret, asks).await, "VALID", "{kind}: cached on the other replica");
        let done = Instant::now();
        match kind {
            "rotate" => drop(gql(ops::ROTATE, json!({ "id": id })).await),
            "delete" => drop(gql(ops::DELETE, json!({ "id": id })).await),
            "disable" => drop(gql(ops::DISABLE, json!({ "id": id })).await),
            "restrict" => {
                let input = json!({ "input": { "id": id, "restrictions": { "permissions": ["users:read"] } } });
                drop(gql(ops::UPDATE_RESTRICTIONS, input).await)
            }
            "leak" => {
                let resp = http.post(format!("{a}/v1/keys/report-leak")).json(&json!({ "key": secret })).send().await;
                assert_eq!(resp.unwrap().status(), 202);
            }
            _ => {
                let deactivate =
                    "mutation($id: ID!) { setUserActive(input: {id: $id, active: false}) { userErrors { code } } }";
                drop(gql(deactivate, json!({ "id": s.integration.id.to_string() })).await)
            }
        }
        let waited = reaches(&http, b, &secret, asks, expected).await;
        let elapsed = done.elapsed();
        assert!(elapsed < Duration::from_secs(1), "{kind} reached the other replica after {elapsed:?}");
        took.push((kind, waited));
    }
    eprintln!("revocation through PgBouncer, other replica: {took:?}");
    assert!(bouncer.log().contains("login attempt: db=postgres user=postgres"), "the replicas went through PgBouncer");
    for replica in replicas {
        assert!(!replica.log().contains("do not reach this replica"), "{}", replica.log());
        replica.terminate();
    }
    drop(cluster);
}

/// A listener behind the pooler hears nothing: its probe says so (and the
/// server logs it); on a direct session it hears its probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_listener_behind_a_transaction_pooler_is_detected() {
    let Some(cluster) = Cluster::start() else { return };
    let Some(bouncer) = PgBouncer::start(&cluster) else { return };
    for (session, delivers) in [(bouncer.url(), false), (cluster.url(), true)] {
        // Another spelling of the pooled URL: the store treats the main URL as pooled.
        let main = format!("{}?application_name=latchkey", bouncer.url());
        let store =
            Store::connect(&main, &StoreOptions { session_url: Some(session.clone()), ..StoreOptions::default() })
                .await
                .unwrap();
        let mut listener = store.revocation_listener().unwrap();
        assert_eq!(listener.next().await, latchkey_store::RevocationSignal::Resync);
        assert_eq!(listener.delivers(), Some(delivers), "listening on {session}");
    }
}
