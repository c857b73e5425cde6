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

/// Every kind of revocation, with what the other replica then answers.
const REVOCATIONS: [(&str, &str); 6] = [
    ("rotate", "INVALID"),
    ("delete", "INVALID"),
    ("disable", "DISABLED"),
    ("restrict", "INSUFFICIENT_PERMISSIONS"),
    ("leak", "COMPROMISED"),
    ("suspend", "OWNER_INACTIVE"),
];

/// The permissions a verification asks for to see a revocation of `kind`.
fn asking(kind: &str) -> &'static [&'static str] {
    if kind == "restrict" { &["users:write"] } else { &[] }
}

/// An internal admin of the seeded tenant, acting on one replica.
struct Admin {
    http: reqwest::Client,
    base: String,
    seeded: latchkey_tests::Seeded,
}

impl Admin {
    async fn gql(&self, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables });
        let resp = self.http.post(format!("{}/graphql", self.base)).bearer_auth(&self.seeded.admin_token).json(&body);
        let body: Value = resp.send().await.unwrap().json().await.unwrap();
        assert!(body["errors"].is_null(), "{body}");
        body
    }

    /// A new key of `owner`: (id, secret).
    async fn generate(&self, owner: latchkey_domain::UserId, description: &str) -> (String, String) {
        let input = json!({ "input": { "ownerId": owner.to_string(), "description": description } });
        let body = self.gql(ops::GENERATE, input).await;
        let made = &body["data"]["generateApiKey"];
        (made["apiKey"]["id"].as_str().unwrap().to_owned(), made["secret"].as_str().unwrap().to_owned())
    }

    /// Revokes the key `id` (secret `secret`) the way `kind` says; `suspend`
    /// deactivates the integration user, who owns it.
    async fn revoke(&self, kind: &str, id: &str, secret: &str) {
        match kind {
            "rotate" => drop(self.gql(ops::ROTATE, json!({ "id": id })).await),
            "delete" => drop(self.gql(ops::DELETE, json!({ "id": id })).await),
            "disable" => drop(self.gql(ops::DISABLE, json!({ "id": id })).await),
            "restrict" => {
                let input = json!({ "input": { "id": id, "restrictions": { "permissions": ["users:read"] } } });
                drop(self.gql(ops::UPDATE_RESTRICTIONS, input).await)
            }
            "leak" => {
                let report = json!({ "key": secret });
                let resp = self.http.post(format!("{}/v1/keys/report-leak", self.base)).json(&report).send().await;
                assert_eq!(resp.unwrap().status(), 202);
            }
            "suspend" => {
                let deactivate =
                    "mutation($id: ID!) { setUserActive(input: {id: $id, active: false}) { userErrors { code } } }";
                drop(self.gql(deactivate, json!({ "id": self.seeded.integration.id.to_string() })).await)
            }
            other => panic!("no revocation {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_pgbouncer_in_transaction_mode_every_revocation_reaches_the_other_replica_within_a_second() {
    let Some(cluster) = Cluster::start() else { return };
    let Some(bouncer) = PgBouncer::start(&cluster) else { return };
    let (pooled, direct) = (bouncer.url(), cluster.url());
    // Migrations take the session URL; everything else goes through PgBouncer.
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
    let admin = Admin { http: http.clone(), base: a.clone(), seeded: s };
    let owner = admin.seeded.integration.id;

    let mut took = Vec::new();
    for (kind, expected) in REVOCATIONS {
        let (id, secret) = admin.generate(owner, "Revoked through PgBouncer").await;
        assert_eq!(code_at(&http, b, &secret, asking(kind)).await, "VALID", "{kind}: cached on the other replica");
        let done = Instant::now();
        admin.revoke(kind, &id, &secret).await;
        let waited = reaches(&http, b, &secret, asking(kind), expected).await;
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

/// `/readyz`'s standby detail at `base`.
async fn standby_at(http: &reqwest::Client, base: &str) -> Value {
    let body: Value = http.get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
    body["standby"].clone()
}

/// Waits until every replica reports the standby as `status`.
async fn standby_becomes(http: &reqwest::Client, bases: &[&str], status: &str) {
    let started = Instant::now();
    for base in bases {
        while standby_at(http, base).await["status"] != status {
            assert!(started.elapsed() < Duration::from_secs(20), "{base}: the standby never became {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Index and sequential scans of `api_keys` on `cluster` (lookups it served).
fn key_scans(cluster: &Cluster) -> i64 {
    cluster
        .psql(
            "SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'api_keys'",
        )
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_a_lagging_standby_never_verify_a_revoked_key() {
    let Some(primary) = Cluster::start() else { return };
    let standby = primary.standby();
    let (primary_url, standby_url) = (primary.url(), standby.url());
    let envs = [
        ("LATCHKEY_DATABASE_URL", primary_url.as_str()),
        ("LATCHKEY_DATABASE_READ_URL", standby_url.as_str()),
        ("LATCHKEY_READ_MAX_LAG_SECS", "2"),
        ("LATCHKEY_JWT_SECRET", JWT_SECRET),
        ("LATCHKEY_DB_MAX_CONNECTIONS", "8"),
    ];
    let replicas = ServerProcess::spawn_many(2, &envs);
    let (a, b) = (replicas[0].url.clone(), replicas[1].url.clone());
    let http = reqwest::Client::new();
    let store = Store::connect(&primary_url, &StoreOptions::default()).await.unwrap();
    let token_key = AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap();
    let s = seed_tenant(&store, &token_key, "Acme").await;
    standby_becomes(&http, &[&a, &b], "reading").await;
    let admin = Admin { http: http.clone(), base: a.clone(), seeded: s };
    let (integration, internal_admin) = (admin.seeded.integration.id, admin.seeded.admin.id);

    // Cold lookups are served by the standby once it has the keys.
    let mut keys = Vec::new();
    for _ in REVOCATIONS {
        keys.push(admin.generate(integration, "Read from the standby").await);
    }
    let replicated = Instant::now();
    while standby.psql("SELECT count(*) FROM api_keys") != "6" {
        assert!(replicated.elapsed() < Duration::from_secs(10), "the standby never replayed the keys");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scans_before = key_scans(&standby);
    for (_, secret) in &keys {
        assert_eq!(code_at(&http, &b, secret, &[]).await, "VALID");
    }
    // Backends report their statistics within a second or so.
    let counted = Instant::now();
    while key_scans(&standby) <= scans_before {
        assert!(counted.elapsed() < Duration::from_secs(10), "the standby served no cold lookup");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Replay paused: every revocation still refuses the key on both replicas within a second.
    standby.psql("SELECT pg_wal_replay_pause()");
    let mut took = Vec::new();
    for ((id, secret), (kind, expected)) in keys.iter().zip(REVOCATIONS) {
        let done = Instant::now();
        admin.revoke(kind, id, secret).await;
        for base in [&a, &b] {
            reaches(&http, base, secret, asking(kind), expected).await;
        }
        let elapsed = done.elapsed();
        assert!(elapsed < Duration::from_secs(1), "{kind} with replay paused took {elapsed:?}");
        took.push((kind, elapsed));
    }
    eprintln!("revocation with the standby's replay paused, both replicas: {took:?}");
    // A key the standby has never seen verifies (from the primary).
    let (_, fresh) = admin.generate(internal_admin, "Newer than the standby").await;
    assert_eq!(code_at(&http, &b, &fresh, &[]).await, "VALID");
    // Behind by more than LATCHKEY_READ_MAX_LAG_SECS: bypassed, and reported.
    standby_becomes(&http, &[&a, &b], "bypassed").await;
    let lag = standby_at(&http, &b).await["lagSeconds"].as_f64().unwrap();
    assert!(lag > 2.0, "{lag}");

    // Resumed it reads again; stopped, everything keeps working from the primary.
    standby.psql("SELECT pg_wal_replay_resume()");
    standby_becomes(&http, &[&a, &b], "reading").await;
    standby.stop();
    standby_becomes(&http, &[&a, &b], "bypassed").await;
    assert_eq!(code_at(&http, &b, &fresh, &[]).await, "VALID");
    let body = admin.gql("{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 6, "the deleted key is gone, the new one listed: {body}");
    let (_, after_stop) = admin.generate(internal_admin, "Made with the standby down").await;
    assert_eq!(code_at(&http, &b, &after_stop, &[]).await, "VALID");
    for replica in replicas {
        replica.terminate();
    }
}

/// What a write under failover was answered.
#[derive(Debug)]
enum Answer {
    /// The key was made: its id.
    Made(String),
    /// A GraphQL error with this code (or the transport's failure).
    Refused(String),
}

/// Generates a key of `owner` on `base`; what the client was told.
async fn try_generate(http: &reqwest::Client, base: &str, token: &str, owner: &str, description: &str) -> Answer {
    let body =
        json!({ "query": ops::GENERATE, "variables": { "input": { "ownerId": owner, "description": description } } });
    let sent = http.post(format!("{base}/graphql")).bearer_auth(token).json(&body).send().await;
    let body: Value = match sent {
        Ok(response) => response.json().await.unwrap_or_else(|e| json!({ "transport": e.to_string() })),
        Err(e) => json!({ "transport": e.to_string() }),
    };
    match body["data"]["generateApiKey"]["apiKey"]["id"].as_str() {
        Some(id) => Answer::Made(id.to_owned()),
        None => Answer::Refused(
            body["errors"][0]["extensions"]["code"].as_str().map_or_else(|| body.to_string(), str::to_owned),
        ),
    }
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The primary killed (`-m immediate`) under verifications and writes, its
/// synchronous standby promoted, and the proxy in front of the pair (where
/// HAProxy would stand) switched to it: cached keys keep verifying, writes
/// fail with `UNAVAILABLE` and nothing half-written until the new primary
/// takes them (within 5 s), every change a client was told of is there,
/// and every owner notice is mailed at least once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_to_a_promoted_standby_loses_no_committed_change() {
    use latchkey_tests::proxy::Proxy;
    use latchkey_tests::smtp::SmtpServer;
    use latchkey_tests::topology::Commits;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let Some(primary) = Cluster::start_with(Commits::SynchronousStandby) else { return };
    let standby = primary.standby();
    let replicating = Instant::now();
    while primary.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") != "1" {
        assert!(replicating.elapsed() < Duration::from_secs(20), "the standby never became synchronous");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let proxy = Proxy::start(primary.addr()).await;
    let url = format!("postgres://postgres@{}/postgres", proxy.addr);
    let smtp = SmtpServer::start();
    let smtp_url = smtp.url();
    let envs = [
        ("LATCHKEY_DATABASE_URL", url.as_str()),
        ("LATCHKEY_JWT_SECRET", JWT_SECRET),
        ("LATCHKEY_DB_MAX_CONNECTIONS", "8"),
        ("LATCHKEY_DB_ACQUIRE_TIMEOUT_MS", "1000"),
        ("LATCHKEY_DB_CONNECT_TIMEOUT_MS", "1000"),
        ("LATCHKEY_SMTP_URL", smtp_url.as_str()),
        ("LATCHKEY_SMTP_TIMEOUT_SECS", "2"),
        ("LATCHKEY_MAIL_LEASE_SECS", "3"),
        ("LATCHKEY_MAIL_RETRY_MAX_SECS", "1"),
    ];
    let replicas = ServerProcess::spawn_many(2, &envs);
    let bases = [replicas[0].url.clone(), replicas[1].url.clone()];
    let store = Store::connect(&primary.url(), &StoreOptions::default()).await.unwrap();
    let token_key = AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap();
    let s = seed_tenant(&store, &token_key, "Acme").await;
    drop(store);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
    let owner = s.integration.id.to_string();

    // Keys every replica has verified once: cached.
    let mut cached = Vec::new();
    for n in 0..6 {
        let admin = Admin { http: http.clone(), base: bases[n % 2].clone(), seeded: s.clone() };
        let (_, secret) = admin.generate(s.integration.id, &format!("Cached {n}")).await;
        for base in &bases {
            assert_eq!(code_at(&http, base, &secret, &[]).await, "VALID");
        }
        cached.push(secret);
    }

    // Load: two clients verifying the cached keys, two generating keys.
    let stop = Arc::new(AtomicBool::new(false));
    let verdicts = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let answers = Arc::new(Mutex::new(Vec::<(Instant, Instant, Answer)>::new()));
    let mut load = Vec::new();
    for client in 0..2 {
        let (http, bases, cached, stop, verdicts) =
            (http.clone(), bases.clone(), cached.clone(), stop.clone(), verdicts.clone());
        load.push(tokio::spawn(async move {
            let mut n = client;
            while !stop.load(Ordering::SeqCst) {
                let body = json!({ "key": cached[n % cached.len()] });
                let sent = http.post(format!("{}/v1/keys/verify", bases[n % 2])).json(&body).send().await;
                let verdict = match sent {
                    Ok(response) => response.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                verdicts.lock().unwrap().push((Instant::now(), verdict));
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for client in 0..2 {
        let (http, bases, token, owner, stop, answers) =
            (http.clone(), bases.clone(), s.admin_token.clone(), owner.clone(), stop.clone(), answers.clone());
        load.push(tokio::spawn(async move {
            let mut n = client;
            while !stop.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let answer =
                    try_generate(&http, &bases[n % 2], &token, &owner, &format!("Failover {client}-{n}")).await;
                answers.lock().unwrap().push((sent, Instant::now(), answer));
                n += 2;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let made = |answers: &Mutex<Vec<(Instant, Instant, Answer)>>, since: Instant| {
        answers.lock().unwrap().iter().filter(|(sent, _, a)| *sent >= since && matches!(a, Answer::Made(_))).count()
    };
    let started = Instant::now();
    until("writes under load", Duration::from_secs(20), || made(&answers, started) >= 10).await;

    // The primary dies; writes fail until the standby is promoted and the proxy points at it.
    primary.kill();
    let killed = Instant::now();
    until("writes refused and keys verified while no primary answers", Duration::from_secs(20), || {
        let refused = answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _, a)| *sent >= killed && matches!(a, Answer::Refused(_)))
            .count();
        let verified = verdicts.lock().unwrap().iter().filter(|(at, _)| *at >= killed).count();
        refused >= 4 && verified >= 50
    })
    .await;
    standby.promote();
    proxy.retarget(standby.addr());
    let promoted = Instant::now();
    until("a write after the promotion", Duration::from_secs(5), || made(&answers, promoted) >= 1).await;
    let writes_back = promoted.elapsed();
    until("writes on the new primary", Duration::from_secs(20), || made(&answers, promoted) >= 10).await;
    stop.store(true, Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }

    // Cached keys answered throughout, from memory while no database answered.
    let verdicts = verdicts.lock().unwrap().clone();
    let refused: Vec<&String> = verdicts.iter().map(|(_, v)| v).filter(|v| !v.contains("\"valid\":true")).collect();
    assert!(
        refused.is_empty(),
        "{} of {} verifications refused: {:?}",
        refused.len(),
        verdicts.len(),
        &refused[..3.min(refused.len())]
    );
    // Writes were made or refused with UNAVAILABLE; never an internal error or a hung request.
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let told: Vec<&String> =
        answers.iter().filter_map(|(_, _, a)| if let Answer::Made(id) = a { Some(id) } else { None }).collect();
    let mut refusals = 0;
    for (sent, answered, answer) in &answers {
        if let Answer::Refused(code) = answer {
            let internal: Vec<String> = replicas
                .iter()
                .flat_map(|r| {
                    r.log().lines().filter(|l| l.contains("internal error")).map(str::to_owned).collect::<Vec<_>>()
                })
                .collect();
            assert_eq!(code, "UNAVAILABLE", "a write during the failover: {internal:?}");
            assert!(*answered - *sent < Duration::from_secs(5), "refused after {:?}", *answered - *sent);
            refusals += 1;
        }
    }
    // Every key a client was told of is on the new primary, whole; at most
    // the writes in flight at the kill (one per client) committed unseen.
    let stored: Vec<String> = standby
        .psql("SELECT id FROM api_keys WHERE description LIKE 'Failover %'")
        .lines()
        .map(str::to_owned)
        .collect();
    for id in &told {
        assert!(stored.contains(id), "key {id} was made but is not on the new primary");
    }
    assert!(stored.len() <= told.len() + 2, "{} stored, {} made", stored.len(), told.len());
    let whole = standby.psql(
        "SELECT count(*) FROM api_keys k WHERE EXISTS (SELECT 1 FROM key_audit a WHERE a.key_id = k.id AND a.action = 'generated') \
         AND EXISTS (SELECT 1 FROM key_events e WHERE e.key_id = k.id AND e.kind = 'generated')",
    );
    assert_eq!(whole, standby.psql("SELECT count(*) FROM api_keys"), "a key without its audit entry or notice");

    // The revocation listeners followed the new primary: a rotation reaches the other replica.
    let admin = Admin { http: http.clone(), base: bases[0].clone(), seeded: s.clone() };
    let (id, secret) = admin.generate(s.integration.id, "Rotated after the failover").await;
    assert_eq!(code_at(&http, &bases[1], &secret, &[]).await, "VALID");
    let rotated = Instant::now();
    admin.revoke("rotate", &id, &secret).await;
    reaches(&http, &bases[1], &secret, &[], "INVALID").await;
    let revocation = rotated.elapsed();
    assert!(revocation < Duration::from_secs(1), "revocation after the failover took {revocation:?}");

    // Every notice is mailed at least once (a notice mailed but not marked
    // before the kill comes again, with the same Message-ID).
    let events: std::collections::BTreeSet<String> =
        standby.psql("SELECT id FROM key_events").lines().map(str::to_owned).collect();
    let mailed = Instant::now();
    let delivered = loop {
        let delivered: std::collections::BTreeSet<String> = smtp
            .received()
            .iter()
            .filter_map(|m| {
                let id = m.parsed().message_id()?.to_owned();
                Some(id.strip_prefix("key-event-")?.split('@').next()?.to_owned())
            })
            .collect();
        if events.is_subset(&delivered) {
            break delivered;
        }
        assert!(mailed.elapsed() < Duration::from_secs(30), "{} of {} notices mailed", delivered.len(), events.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "failover: {} writes made, {refusals} refused (UNAVAILABLE), {} stored; writes back {writes_back:?} after \
         the promotion; {} verifications all valid; revocation to the other replica {revocation:?}; {} notices, \
         {} mails ({} distinct)",
        told.len(),
        stored.len(),
        verdicts.len(),
        events.len(),
        smtp.received().len(),
        delivered.len()
    );
    for replica in replicas {
        assert!(!replica.log().contains("panicked"), "{}", replica.log());
        replica.terminate();
    }
}
