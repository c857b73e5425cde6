//! Several `latchkey serve` processes on one PostgreSQL database: revocation
//! across replicas, start-up together, a replica killed under load, a
//! database outage, and a (short) soak. PostgreSQL only: replicas need a
//! shared server database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use latchkey_domain::User;
use latchkey_domain::admin_token::AdminTokenKey;
use latchkey_migrations::MigratorTrait;
use latchkey_store::Store;
use latchkey_tests::ops::GENERATE;
use latchkey_tests::process::ServerProcess;
use latchkey_tests::proxy::Proxy;
use latchkey_tests::smtp::SmtpServer;
use latchkey_tests::{Backend, JWT_SECRET, TestDb, ops};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};

struct Fixture {
    db: TestDb,
    store: Store,
    bot: User,
    token: String,
}

async fn fixture() -> Option<Fixture> {
    let db = TestDb::new(Backend::Postgres).await?;
    let store = db.store().await;
    store.migrate().await.unwrap();
    let key = AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap();
    let seeded = latchkey_tests::seed_tenant(&store, &key, "Replicated").await;
    Some(Fixture { db, store, bot: seeded.integration, token: seeded.admin_token })
}

async fn gql(http: &reqwest::Client, base: &str, token: &str, query: &str, variables: Value) -> Result<Value, String> {
    let resp = http
        .post(format!("{base}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    resp.json().await.map_err(|e| e.to_string())
}

async fn generate(
    http: &reqwest::Client,
    base: &str,
    f: &Fixture,
    description: &str,
) -> Result<(String, String), String> {
    let body =
        gql(http, base, &f.token, GENERATE, json!({ "input": { "ownerId": f.bot.id, "description": description } }))
            .await?;
    let p = &body["data"]["generateApiKey"];
    match (p["apiKey"]["id"].as_str(), p["secret"].as_str()) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        _ => Err(body.to_string()),
    }
}

async fn rotate(http: &reqwest::Client, base: &str, f: &Fixture, id: &str) -> String {
    let body = gql(http, base, &f.token, ops::ROTATE, json!({ "id": id })).await.unwrap();
    body["data"]["rotateApiKey"]["secret"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
}

async fn verdict(http: &reqwest::Client, base: &str, key: &str) -> Result<Value, String> {
    let response = http.post(format!("{base}/v1/keys/verify")).json(&json!({ "key": key })).send().await;
    response.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())
}

async fn valid(http: &reqwest::Client, base: &str, key: &str) -> bool {
    verdict(http, base, key).await.is_ok_and(|v| v["valid"] == true)
}

fn envs(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("LATCHKEY_DATABASE_URL", url.to_owned()),
        ("LATCHKEY_JWT_SECRET", JWT_SECRET.to_owned()),
        ("LATCHKEY_MAIL_DIR", std::env::temp_dir().join("latchkey-replica-mail").display().to_string()),
    ]
}

fn as_refs<'a>(envs: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    envs.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Waits until `old` stops verifying on `base`; returns how long that took.
async fn until_refused(http: &reqwest::Client, base: &str, old: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    while valid(http, base, old).await {
        assert!(started.elapsed() < limit, "the old secret still works on the other replica after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_other_replica_within_a_second() {
    let Some(f) = fixture().await else { return };
    let env = envs(&f.db.url);
    let mut replicas = ServerProcess::spawn_many(2, &as_refs(&env));
    let (b, a) = (replicas.pop().unwrap(), replicas.pop().unwrap());
    let http = reqwest::Client::new();
    let (id, mut secret) = generate(&http, &a.url, &f, "Replicated key").await.unwrap();

    let mut delays = Vec::new();
    for _ in 0..100 {
        assert!(valid(&http, &b.url, &secret).await);
        assert!(valid(&http, &b.url, &secret).await, "cached on B");
        let new = rotate(&http, &a.url, &f, &id).await;
        delays.push(until_refused(&http, &b.url, &secret, Duration::from_secs(1)).await);
        secret = new;
    }
    delays.sort();
    eprintln!(
        "revocation propagation over {} rotations: median {:?}, p95 {:?}, max {:?}",
        delays.len(),
        delays[delays.len() / 2],
        delays[delays.len() * 95 / 100],
        delays[delays.len() - 1]
    );

    // Kill the replicas' listener connections: they reconnect, resync, and
    // revocations still arrive.
    let admin = Database::connect(latchkey_tests::postgres_admin_url()).await.unwrap();
    let dbname = f.db.url.rsplit('/').next().unwrap().to_owned();
    let killed = admin
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{dbname}' AND query ILIKE 'LISTEN%'"),
        ))
        .await
        .unwrap();
    assert!(killed.len() >= 2, "both replicas listen ({} found)", killed.len());
    for _ in 0..5 {
        assert!(valid(&http, &b.url, &secret).await);
        let new = rotate(&http, &a.url, &f, &id).await;
        until_refused(&http, &b.url, &secret, Duration::from_secs(2)).await;
        secret = new;
    }
    let _ = admin.close().await;
    // And deletion.
    assert!(valid(&http, &b.url, &secret).await);
    gql(&http, &a.url, &f.token, ops::DELETE, json!({ "id": id })).await.unwrap();
    until_refused(&http, &b.url, &secret, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_replicas_starting_together_migrate_once() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let env = envs(&db.url);
    let replicas = ServerProcess::spawn_many(5, &as_refs(&env));
    let http = reqwest::Client::new();
    for r in &replicas {
        let resp = http.get(format!("{}/readyz", r.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", r.log());
    }
    let applied: usize = replicas.iter().map(|r| r.log().matches("migrations applied").count()).sum();
    assert_eq!(applied, 1, "exactly one replica applied the migrations");
    let conn = Database::connect(&db.url).await.unwrap();
    let rows = conn
        .query_all_raw(Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT version FROM seaql_migrations".to_owned(),
        ))
        .await
        .unwrap();
    let known = latchkey_migrations::Migrator::migrations().len();
    assert_eq!(rows.len(), known, "each of the {known} migrations recorded once");
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_loses_nothing() {
    let Some(f) = fixture().await else { return };
    let smtp = SmtpServer::start();
    let mut env = envs(&f.db.url);
    env.push(("LATCHKEY_SMTP_URL", smtp.url()));
    env.push(("LATCHKEY_SMTP_TIMEOUT_SECS", "2".to_owned()));
    env.push(("LATCHKEY_MAIL_LEASE_SECS", "3".to_owned()));
    env.push(("LATCHKEY_MAIL_RETRY_MAX_SECS", "1".to_owned()));
    let mut replicas = ServerProcess::spawn_many(2, &as_refs(&env));
    let (survivor, victim) = (replicas.pop().unwrap(), replicas.pop().unwrap());
    let urls = [victim.url.clone(), survivor.url.clone()];
    let http = reqwest::Client::new();
    let secrets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let counter = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut workers = Vec::new();
    for w in 0..4 {
        let (http, urls, secrets, counter, f) =
            (http.clone(), urls.clone(), secrets.clone(), counter.clone(), f.clone());
        workers.push(tokio::spawn(async move {
            for i in 0..30 {
                let base = &urls[(w + i) % 2];
                let n = counter.fetch_add(1, Ordering::SeqCst);
                if let Ok((_, secret)) = generate(&http, base, &f, &format!("load {n}")).await {
                    secrets.lock().unwrap().push(secret);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    victim.kill9();
    for w in workers {
        w.await.unwrap();
    }
    let secrets = secrets.lock().unwrap().clone();
    assert!(secrets.len() >= 60, "most requests succeeded ({})", secrets.len());
    for secret in &secrets {
        assert!(valid(&http, &survivor.url, secret).await, "every key the client got works");
    }
    // No half-written rows: each key has its event and audit entry, and nothing else exists.
    let conn = Database::connect(&f.db.url).await.unwrap();
    let count = |sql: &str| {
        let conn = &conn;
        let sql = sql.to_owned();
        async move {
            let row =
                conn.query_one_raw(Statement::from_string(sea_orm::DbBackend::Postgres, sql)).await.unwrap().unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    let keys = count("SELECT count(*) FROM api_keys").await;
    // A generate that committed just before the kill may have lost its
    // response: at most one per in-flight client request.
    let handed_out = secrets.len() as i64;
    assert!((handed_out..=handed_out + 4).contains(&keys), "{keys} keys for {handed_out} secrets handed out");
    assert_eq!(count("SELECT count(*) FROM key_events WHERE kind = 'generated'").await, keys);
    assert_eq!(count("SELECT count(*) FROM key_audit WHERE action = 'generated'").await, keys);
    let _ = conn.close().await;
    // The victim's unsent notices are sent by the survivor once their lease
    // ends (at least once: a notice the victim sent but did not mark may come
    // twice, with the same Message-ID).
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.store.event_counts().await.unwrap().0 > 0 {
        assert!(Instant::now() < deadline, "notices left pending: {:?}", f.store.event_counts().await.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids: std::collections::HashSet<String> =
        smtp.received().iter().map(|m| m.parsed().message_id().unwrap_or_default().to_owned()).collect();
    assert_eq!(ids.len(), keys as usize, "every key's owner got its notice");
}

/// Sends verifications of `key` to `bases` from 4 clients until every
/// replica answers `USAGE_EXCEEDED` 10 times in a row (or `cap` requests);
/// returns how many were admitted.
async fn spend_until_refused(http: &reqwest::Client, bases: &[String], key: &str, cap: usize) -> usize {
    let admitted = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, bases, key, admitted, sent) =
            (http.clone(), bases.to_vec(), key.to_owned(), admitted.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut refused_in_a_row = 0;
            while refused_in_a_row < 10 * bases.len() && sent.fetch_add(1, Ordering::SeqCst) < cap {
                let base = &bases[(c + sent.load(Ordering::SeqCst)) % bases.len()];
                match verdict(&http, base, &key).await {
                    Ok(v) if v["valid"] == true => {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        refused_in_a_row = 0;
                    }
                    Ok(v) => {
                        assert_eq!(v["code"], "USAGE_EXCEEDED", "{v}");
                        refused_in_a_row += 1;
                    }
                    Err(_) => {} // a replica being killed
                }
            }
        }));
    }
    for client in clients {
        client.await.unwrap();
    }
    admitted.load(Ordering::SeqCst)
}

/// Credits across three replicas, one killed with SIGKILL and restarted:
/// never more admitted than given; less by at most what the killed replica
/// held (one and a half leases: a lease is at most a 20th of what was
/// stored, here ≤ 100).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_are_never_overspent_across_killed_replicas() {
    let Some(f) = fixture().await else { return };
    let env = envs(&f.db.url);
    let mut replicas = ServerProcess::spawn_many(3, &as_refs(&env));
    let http = reqwest::Client::new();
    let given = 2_000;
    let input =
        json!({ "input": { "ownerId": f.bot.id, "description": "Metered", "credits": { "remaining": given } } });
    let body = gql(&http, &replicas[0].url, &f.token, ops::GENERATE_LIMITED, input).await.unwrap();
    let key = body["data"]["generateApiKey"]["secret"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
    let urls = |replicas: &[ServerProcess]| replicas.iter().map(|r| r.url.clone()).collect::<Vec<_>>();

    // Spend about half, then kill a replica that holds a lease, and restart it.
    let before_kill = spend_until_refused(&http, &urls(&replicas), &key, 1_000).await;
    replicas.remove(0).kill9();
    replicas.push(ServerProcess::spawn(&as_refs(&env)));
    let after_kill = spend_until_refused(&http, &urls(&replicas), &key, 10 * given).await;
    let admitted = before_kill + after_kill;
    assert!(admitted <= given, "{admitted} admitted of {given} credits");
    assert!(admitted >= given - 150, "{admitted} admitted: more lost than the killed replica could hold");
    // Stopped gracefully, the survivors give back what they hold: nothing is left anywhere.
    for replica in replicas {
        assert!(replica.terminate().success());
    }
    let stored = f.db.count("SELECT credits_remaining FROM api_keys").await;
    assert_eq!(stored, 0, "every credit not lost with the killed replica was spent");
    eprintln!("credits: {given} given, {admitted} admitted, {} lost with the killed replica", given - admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gives_quick_errors_and_the_service_recovers() {
    let Some(f) = fixture().await else { return };
    let pg: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(pg).await;
    let dbname = f.db.url.rsplit('/').next().unwrap().to_owned();
    let via_proxy = format!("postgres://postgres@{}/{dbname}", proxy.addr);
    let mut env = envs(&via_proxy);
    env.push(("LATCHKEY_DB_ACQUIRE_TIMEOUT_MS", "1000".to_owned()));
    env.push(("LATCHKEY_DB_CONNECT_TIMEOUT_MS", "1000".to_owned()));
    let server = ServerProcess::spawn(&as_refs(&env));
    let http = reqwest::Client::new();
    let (_, secret) = generate(&http, &server.url, &f, "Outage").await.unwrap();
    assert!(valid(&http, &server.url, &secret).await, "verified once: cached");
    let list = "{ apiKeys { totalCount } }";

    proxy.cut();
    // The proxy drops open connections within ~20 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cut_at = Instant::now();
    let mut failures = 0;
    let mut slowest = Duration::ZERO;
    while cut_at.elapsed() < Duration::from_secs(10) {
        let started = Instant::now();
        let body = gql(&http, &server.url, &f.token, list, json!({})).await.unwrap();
        let took = started.elapsed();
        slowest = slowest.max(took);
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{body}");
        let ready = http.get(format!("{}/readyz", server.url)).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        failures += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(failures >= 3);
    assert!(slowest < Duration::from_secs(4), "errors are quick, not hung requests: {slowest:?}");
    // A cached key keeps verifying while the database is away.
    assert!(valid(&http, &server.url, &secret).await);

    proxy.restore();
    let restored_at = Instant::now();
    loop {
        let body = gql(&http, &server.url, &f.token, list, json!({})).await.unwrap();
        if body["data"]["apiKeys"]["totalCount"] == 1 {
            break;
        }
        assert!(restored_at.elapsed() < Duration::from_secs(15), "no recovery: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "outage: {failures} failed requests, slowest {slowest:?}; recovered {:?} after restore",
        restored_at.elapsed()
    );
    assert_eq!(http.get(format!("{}/readyz", server.url)).send().await.unwrap().status(), 200);
    generate(&http, &server.url, &f, "After the outage").await.unwrap();
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

/// Mixed load across two replicas. `LATCHKEY_SOAK_SECS` sets the length
/// (default 20 s; the README's 5-minute soak sets 300).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_load_across_two_replicas() {
    let Some(f) = fixture().await else { return };
    let seconds: u64 = std::env::var("LATCHKEY_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let env = envs(&f.db.url);
    let replicas = ServerProcess::spawn_many(2, &as_refs(&env));
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let http = reqwest::Client::new();
    let f = Arc::new(f);
    // Warm up, then measure memory.
    let (_, stable) = generate(&http, &urls[0], &f, "stable").await.unwrap();
    for url in &urls {
        for _ in 0..200 {
            assert!(valid(&http, url, &stable).await);
        }
    }
    let rss_start: Vec<u64> = replicas.iter().map(ServerProcess::rss_kib).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let ops = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..7usize {
        let (http, urls, f, stop, errors, ops, stable) =
            (http.clone(), urls.clone(), f.clone(), stop.clone(), errors.clone(), ops.clone(), stable.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let base = &urls[(w + i) % 2];
                let result: Result<(), String> = match w {
                    0..=2 => {
                        if valid(&http, base, &stable).await {
                            Ok(())
                        } else {
                            Err("stable key refused".into())
                        }
                    }
                    // Strangers' keys: every one new, so the failure maps fill to their caps.
                    6 => {
                        let stranger = latchkey_domain::ApiKeySecret::generate().unwrap();
                        verdict(&http, base, stranger.expose()).await.and_then(|v| {
                            if v["valid"] == false {
                                Ok(())
                            } else {
                                Err(format!("a stranger's key was accepted: {v}"))
                            }
                        })
                    }
                    3 => gql(&http, base, &f.token, "{ apiKeys(first: 50) { totalCount nodes { id } } }", json!({}))
                        .await
                        .and_then(|b| if b["errors"].is_null() { Ok(()) } else { Err(b.to_string()) }),
                    _ => match generate(&http, base, &f, &format!("soak {w}-{i}")).await {
                        Ok((id, _)) => {
                            let other = &urls[(w + i + 1) % 2];
                            let _ = rotate(&http, other, &f, &id).await;
                            gql(&http, base, &f.token, ops::DELETE, json!({ "id": id })).await.and_then(|b| {
                                if b["data"]["deleteApiKey"]["userErrors"] == json!([]) {
                                    Ok(())
                                } else {
                                    Err(b.to_string())
                                }
                            })
                        }
                        Err(e) => Err(e),
                    },
                };
                if let Err(e) = result {
                    errors.lock().unwrap().push(e);
                }
                ops.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let rss_end: Vec<u64> = replicas.iter().map(ServerProcess::rss_kib).collect();
    let errors = errors.lock().unwrap().clone();
    eprintln!(
        "soak: {seconds} s, {} operations, {} errors; RSS KiB start {rss_start:?} end {rss_end:?}",
        ops.load(Ordering::Relaxed),
        errors.len()
    );
    let failures: Vec<String> = replicas
        .iter()
        .flat_map(|r| r.log().lines().filter(|l| l.contains("internal error")).map(str::to_owned).collect::<Vec<_>>())
        .take(5)
        .collect();
    assert!(errors.is_empty(), "{:?}\nthe replicas logged: {failures:#?}", &errors[..errors.len().min(5)]);
    // What verification may hold at its caps, plus room for the pools and
    // buffers a busy server keeps (database connections, HTTP workers).
    let ceiling_kib = latchkey_app::VerifierConfig::default().max_memory_bytes() as u64 / 1024 + 32 * 1024;
    for (start, end) in rss_start.iter().zip(&rss_end) {
        assert!(
            *end < start + ceiling_kib,
            "memory grew from {start} KiB to {end} KiB, past the ceiling of {ceiling_kib} KiB from the caps"
        );
    }
}
