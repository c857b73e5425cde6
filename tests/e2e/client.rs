//! `latchkey-client` in a real service: the example axum service (its
//! tower layer, its in-process cache) beside two `latchkey serve`
//! replicas on PostgreSQL. The service reads the stream from replica A
//! through a proxy the tests cut; changes are made on replica B.

use std::time::{Duration, Instant};

use latchkey_domain::Role;
use latchkey_domain::admin_token::AdminTokenKey;
use latchkey_store::{NewUser, Store};
use latchkey_tests::process::ServerProcess;
use latchkey_tests::proxy::Proxy;
use latchkey_tests::service::ServiceProcess;
use latchkey_tests::{Backend, JWT_SECRET, Seeded, TestDb, ops};
use serde_json::{Value, json};

/// How long the service keeps using its cache once the stream is down.
const STALE_AFTER: Duration = Duration::from_millis(2000);
/// How long a test waits for what the client does in the background (a
/// report every 200 ms): generous, since a loaded CI machine is slow.
const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    _db: TestDb,
    store: Store,
    acme: Seeded,
    globex: Seeded,
    /// The operator's tenant: its `verify:stream` keys read every tenant's stream.
    operator: Seeded,
    a: Option<ServerProcess>,
    b: ServerProcess,
    proxy: Proxy,
    http: reqwest::Client,
    env: Vec<(&'static str, String)>,
}

async fn setup() -> Option<Setup> {
    let db = TestDb::new(Backend::Postgres).await?;
    let store = db.store().await;
    store.migrate().await.unwrap();
    let key = AdminTokenKey::new(JWT_SECRET.as_bytes()).unwrap();
    let acme = latchkey_tests::seed_tenant(&store, &key, "Acme").await;
    let globex = latchkey_tests::seed_tenant(&store, &key, "Globex").await;
    let operator = latchkey_tests::seed_tenant(&store, &key, "Operator").await;
    let env = vec![
        ("LATCHKEY_STREAM_OPERATOR_TENANT", operator.tenant.id.to_string()),
        ("LATCHKEY_USAGE_FLUSH_SECS", "1".to_owned()),
        ("LATCHKEY_DATABASE_URL", db.url.clone()),
        ("LATCHKEY_JWT_SECRET", JWT_SECRET.to_owned()),
        ("LATCHKEY_MAIL_DIR", std::env::temp_dir().join("latchkey-client-mail").display().to_string()),
    ];
    let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut replicas = ServerProcess::spawn_many(2, &refs);
    let (b, a) = (replicas.pop().unwrap(), replicas.pop().unwrap());
    let proxy = Proxy::start(address_of(&a.url)).await;
    Some(Setup { _db: db, store, acme, globex, operator, a: Some(a), b, proxy, http: reqwest::Client::new(), env })
}

fn address_of(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

impl Setup {
    async fn gql(&self, tenant: &Seeded, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables });
        let response =
            self.http.post(format!("{}/graphql", self.b.url)).bearer_auth(&tenant.admin_token).json(&body).send().await;
        let body: Value = response.unwrap().json().await.unwrap();
        assert!(body["errors"].is_null(), "{body}");
        body
    }

    /// A key of `tenant`'s integration user: (id, secret).
    async fn key(&self, tenant: &Seeded, extra: Value) -> (String, String) {
        let mut input = json!({ "ownerId": tenant.integration.id, "description": "Service client" });
        input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let body = self.gql(tenant, ops::GENERATE_LIMITED, json!({ "input": input })).await;
        let payload = &body["data"]["generateApiKey"];
        assert_eq!(payload["userErrors"], json!([]), "{body}");
        (payload["apiKey"]["id"].as_str().unwrap().to_owned(), payload["secret"].as_str().unwrap().to_owned())
    }

    /// `id`'s `usage30d` and `lastUsedAt` (read on replica B).
    async fn usage_of(&self, id: &str) -> Value {
        let query = "query($id: ID!) { apiKey(id: $id) { usage30d lastUsedAt } }";
        self.gql(&self.acme, query, json!({ "id": id })).await["data"]["apiKey"].clone()
    }

    /// [`Setup::usage_of`] once `usage30d` is `uses` (replica A writes its
    /// own verifications every second).
    async fn wait_usage(&self, id: &str, uses: u64) -> Value {
        let started = Instant::now();
        loop {
            let key = self.usage_of(id).await;
            if key["usage30d"] == uses {
                return key;
            }
            assert!(started.elapsed() < WAIT, "usage30d is not {uses}: {key}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts a usage report to replica B: (status, headers, body).
    async fn report(
        &self,
        key: &str,
        idempotency_key: Option<&str>,
        report: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request =
            self.http.post(format!("{}/v1/verifications/usage", self.b.url)).bearer_auth(key).json(report);
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("Idempotency-Key", idempotency_key);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, response.json().await.unwrap_or(Value::Null))
    }

    /// The example service for Acme, reading through the proxy, up and trusted.
    async fn service(&self) -> ServiceProcess {
        self.service_of(&self.acme).await
    }

    /// The example service with a stream key of `tenant`.
    async fn service_of(&self, tenant: &Seeded) -> ServiceProcess {
        let (_, stream_key) = self.key(tenant, json!({ "restrictions": { "permissions": ["verify:stream"] } })).await;
        let stale = STALE_AFTER.as_millis().to_string();
        let envs = [("STALE_AFTER_MS", stale.as_str()), ("REPORT_USES_MS", "200")];
        let service = ServiceProcess::spawn(&format!("http://{}", self.proxy.addr), &stream_key, &envs);
        service.wait_stats(WAIT, "the stream up", |s| s["trusted"] == true).await;
        service
    }
}

/// Verifies `secret` at `/users` twice: the second answer must come from the cache.
async fn cached(service: &ServiceProcess, secret: &str) {
    assert_eq!(service.get("/users", secret).await.0, 200);
    let before = service.stats().await;
    assert_eq!(service.get("/users", secret).await.0, 200);
    let after = service.stats().await;
    assert_eq!(after["asked"], before["asked"], "answered from the cache: {after}");
    assert_eq!(after["cacheHits"].as_u64(), before["cacheHits"].as_u64().map(|h| h + 1), "{after}");
}

/// Waits until `secret` is refused at `/users`; the status and how long it took.
async fn until_refused(service: &ServiceProcess, secret: &str, started: Instant) -> (u16, Duration) {
    loop {
        let (status, _) = service.get("/users", secret).await;
        if status != 200 {
            return (status, started.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still accepted after 5 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_the_services_cache_within_a_second() {
    let Some(s) = setup().await else { return };
    let service = s.service().await;
    let customer = json!({ "restrictions": { "clouds": ["CUSTOMER"], "permissions": ["users:read"] } });
    let mut took = Vec::new();
    let mut check = |what: &str, (status, elapsed): (u16, Duration), expected: u16| {
        assert_eq!(status, expected, "{what}");
        assert!(elapsed < Duration::from_secs(1), "{what} took {elapsed:?}");
        took.push(elapsed);
    };

    let (id, secret) = s.key(&s.acme, customer.clone()).await;
    cached(&service, &secret).await;
    let started = Instant::now();
    s.gql(&s.acme, ops::ROTATE, json!({ "id": id })).await;
    check("rotate", until_refused(&service, &secret, started).await, 401);

    let (id, secret) = s.key(&s.acme, customer.clone()).await;
    cached(&service, &secret).await;
    let started = Instant::now();
    s.gql(&s.acme, ops::DELETE, json!({ "id": id })).await;
    check("delete", until_refused(&service, &secret, started).await, 401);

    let (id, secret) = s.key(&s.acme, customer.clone()).await;
    cached(&service, &secret).await;
    let started = Instant::now();
    s.gql(&s.acme, ops::DISABLE, json!({ "id": id })).await;
    check("disable", until_refused(&service, &secret, started).await, 401);

    let (id, secret) = s.key(&s.acme, customer.clone()).await;
    cached(&service, &secret).await;
    let started = Instant::now();
    let input = json!({ "input": { "id": id, "restrictions": { "permissions": ["groups:read"] } } });
    s.gql(&s.acme, ops::UPDATE_RESTRICTIONS, input).await;
    check("restrict", until_refused(&service, &secret, started).await, 403);
    let (_, body) = service.get("/users", &secret).await;
    assert_eq!(body, json!({ "valid": false, "code": "INSUFFICIENT_PERMISSIONS", "missing": ["users:read"] }));

    let (_, secret) = s.key(&s.acme, customer.clone()).await;
    cached(&service, &secret).await;
    let started = Instant::now();
    let leak = json!({ "key": secret, "url": "https://github.com/acme/site/blob/main/.env" });
    let resp = s.http.post(format!("{}/v1/keys/report-leak", s.b.url)).json(&leak).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    check("leak", until_refused(&service, &secret, started).await, 401);

    // Suspended: its owner, another integration user, is deactivated.
    let leaver = NewUser {
        tenant_id: s.acme.tenant.id,
        email: "leaver@acme.example".into(),
        name: "Leaver".into(),
        role: Role::IntegrationUser,
    };
    let owner = s.store.create_user(leaver, chrono::Utc::now()).await.unwrap();
    let input = json!({ "ownerId": owner.id, "description": "Suspended", "restrictions": customer["restrictions"] });
    let body = s.gql(&s.acme, ops::GENERATE_LIMITED, json!({ "input": input })).await;
    let secret = body["data"]["generateApiKey"]["secret"].as_str().unwrap().to_owned();
    cached(&service, &secret).await;
    let started = Instant::now();
    let body = s.gql(&s.acme, SET_ACTIVE, json!({ "id": owner.id.to_string(), "active": false })).await;
    assert_eq!(body["data"]["setUserActive"]["userErrors"], json!([]), "{body}");
    check("suspend", until_refused(&service, &secret, started).await, 401);
    let (_, body) = service.get("/users", &secret).await;
    assert_eq!(body["code"], "OWNER_INACTIVE");

    let stats = service.stats().await;
    assert_eq!(stats["trusted"], true, "the stream stayed up: these came by it, {stats}");
    assert!(stats["signals"].as_u64().unwrap() >= 6, "{stats}");
    took.sort();
    eprintln!("change to refusal in the service's cache: {took:?}");
}

const SET_ACTIVE: &str = "mutation($id: ID!, $active: Boolean!) { setUserActive(input: {id: $id, active: $active}) { \
    user { id active } userErrors { field message code } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_resumes_without_missing_a_revocation_and_a_late_resume_flushes() {
    let Some(mut s) = setup().await else { return };
    let service = s.service().await;
    let (revoked_id, revoked) = s.key(&s.acme, json!({})).await;
    let (_, kept) = s.key(&s.acme, json!({})).await;
    cached(&service, &revoked).await;
    cached(&service, &kept).await;

    // Cut: the service's stream (and its way to Latchkey) is gone; a key is deleted meanwhile.
    s.proxy.cut();
    let cut = Instant::now();
    service.wait_stats(WAIT, "the stream cut", |st| st["connected"] == false).await;
    s.gql(&s.acme, ops::DELETE, json!({ "id": revoked_id })).await;
    // Within `stale_after` of the cut, the cache still answers: the deletion has not reached it.
    // (Answered later, on a loaded machine, it may rightly be 503.)
    let status = service.get("/users", &revoked).await.0;
    if cut.elapsed() < STALE_AFTER {
        assert_eq!(status, 200, "cached while the stream is down");
    }
    let before = service.stats().await;
    s.proxy.restore();
    let connections = before["connections"].as_u64().unwrap();
    let after = service
        .wait_stats(Duration::from_secs(15), "reconnected", |st| {
            st["connections"].as_u64() > Some(connections) && st["trusted"] == true
        })
        .await;
    // Resumed with Last-Event-ID: the deletion was replayed, and nothing else was dropped.
    assert_eq!(after["flushes"], before["flushes"], "{after}");
    let (status, body) = service.get("/users", &revoked).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("INVALID")));
    let asked = service.stats().await["asked"].clone();
    assert_eq!(service.get("/users", &kept).await.0, 200);
    assert_eq!(service.stats().await["asked"], asked, "the kept key is still cached");

    // Too late: replica A restarts (its new run holds no signal from before), the service resumes there.
    // The service's last event id is the replayed deletion's, from before the new run started.
    s.proxy.cut();
    s.a.take().unwrap().terminate();
    let refs: Vec<(&str, &str)> = s.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = ServerProcess::spawn(&refs);
    s.proxy.retarget(address_of(&a.url));
    s.proxy.restore();
    s.a = Some(a);
    let flushed = service
        .wait_stats(Duration::from_secs(15), "flushed", |st| st["flushes"].as_u64() > after["flushes"].as_u64())
        .await;
    assert_eq!(flushed["cachedKeys"], 0, "{flushed}");
    service.wait_stats(Duration::from_secs(15), "trusted again", |st| st["trusted"] == true).await;
    assert_eq!(service.get("/users", &kept).await.0, 200);
    assert_eq!(service.stats().await["asked"].as_u64(), asked.as_u64().map(|a| a + 1), "asked again after the flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_latchkey_down_cached_keys_serve_for_stale_after_then_503() {
    let Some(s) = setup().await else { return };
    let service = s.service().await;
    let (_, known) = s.key(&s.acme, json!({})).await;
    let (_, unknown) = s.key(&s.acme, json!({})).await;
    cached(&service, &known).await;

    s.proxy.cut();
    let cut = Instant::now();
    service.wait_stats(WAIT, "the stream cut", |st| st["connected"] == false).await;
    // The client saw the cut at some point before this: its `stale_after` ends by then plus `STALE_AFTER`.
    let seen_down = cut.elapsed();
    let (status, body) = service.get("/users", &unknown).await;
    assert_eq!((status, &body["error"]["code"]), (503, &json!("UNAVAILABLE")), "never seen: cannot be verified");
    let served_until = loop {
        // A 200 is decided after its request is sent, a 503 before its answer arrives: the
        // bounds below hold however slowly a loaded machine passes them along.
        let sent = cut.elapsed();
        let status = service.get("/users", &known).await.0;
        match status {
            200 => assert!(sent < seen_down + STALE_AFTER + Duration::from_millis(500), "still served after {sent:?}"),
            503 => break cut.elapsed(),
            other => panic!("{other} after {sent:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(served_until >= STALE_AFTER - Duration::from_millis(100), "served only {served_until:?}");
    eprintln!("cached keys served {served_until:?} after Latchkey went away (stale_after {STALE_AFTER:?})");

    s.proxy.restore();
    service.wait_stats(Duration::from_secs(15), "trusted again", |st| st["trusted"] == true).await;
    assert_eq!(service.get("/users", &known).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_keys_other_tenants_keys_and_a_stream_without_permission_are_asked_each_time() {
    let Some(s) = setup().await else { return };
    let service = s.service().await;

    // A limited key: Latchkey counts every request, the 4th is refused.
    let limits = json!([{ "name": "burst", "limit": 3, "periodSeconds": 3600 }]);
    let (_, limited) = s.key(&s.acme, json!({ "rateLimits": limits })).await;
    let asked = service.stats().await["asked"].as_u64().unwrap();
    for _ in 0..3 {
        assert_eq!(service.get("/whoami", &limited).await.0, 200);
    }
    let response =
        reqwest::Client::new().get(format!("{}/whoami", service.url)).bearer_auth(&limited).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["x-latchkey-code"], "RATE_LIMIT_EXCEEDED");
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(service.stats().await["asked"].as_u64(), Some(asked + 4), "every request of a limited key is asked");

    // Another tenant's key works (Latchkey says so) but is never cached: its stream is not ours.
    let (globex_id, globex) = s.key(&s.globex, json!({})).await;
    let asked = service.stats().await["asked"].as_u64().unwrap();
    let (status, body) = service.get("/whoami", &globex).await;
    assert_eq!((status, body["tenantId"].as_str()), (200, Some(s.globex.tenant.id.to_string().as_str())));
    assert_eq!(service.get("/whoami", &globex).await.0, 200);
    assert_eq!(service.stats().await["asked"].as_u64(), Some(asked + 2));
    s.gql(&s.globex, ops::DELETE, json!({ "id": globex_id })).await;
    assert_eq!(service.get("/whoami", &globex).await.0, 401, "refused at once");

    // No key, or a wrong one: refused like /v1/auth.
    let response = reqwest::Client::new().get(format!("{}/whoami", service.url)).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-latchkey-code"], "MISSING_KEY");
    assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));

    // A stream key without `verify:stream` (restricted to other permissions): the stream is refused, nothing is cached, answers stay right.
    let (_, reader) = s.key(&s.acme, json!({ "restrictions": { "permissions": ["users:read"] } })).await;
    let blind = ServiceProcess::spawn(&format!("http://{}", s.proxy.addr), &reader, &[]);
    let (_, key) = s.key(&s.acme, json!({})).await;
    for _ in 0..3 {
        assert_eq!(blind.get("/whoami", &key).await.0, 200);
    }
    let stats = blind.stats().await;
    assert_eq!((stats["cacheHits"].as_u64(), stats["asked"].as_u64()), (Some(0), Some(3)), "{stats}");
    assert_eq!((stats["trusted"].as_bool(), stats["connections"].as_u64()), (Some(false), Some(0)), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stream_keeps_every_tenants_keys_true() {
    let Some(s) = setup().await else { return };
    let gateway = s.service_of(&s.operator).await;
    for tenant in [&s.acme, &s.globex] {
        let (id, secret) = s.key(tenant, json!({})).await;
        cached(&gateway, &secret).await;
        let started = Instant::now();
        s.gql(tenant, ops::DELETE, json!({ "id": id })).await;
        let (status, took) = until_refused(&gateway, &secret, started).await;
        assert_eq!(status, 401);
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    let stats = gateway.stats().await;
    assert_eq!((stats["trusted"].as_bool(), stats["flushes"].as_u64()), (Some(true), Some(1)), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_verifications_count_in_latchkeys_usage() {
    let Some(s) = setup().await else { return };
    let service = s.service().await;
    let (id, secret) = s.key(&s.acme, json!({})).await;
    for _ in 0..5 {
        assert_eq!(service.get("/users", &secret).await.0, 200);
    }
    let stats = service.wait_stats(WAIT, "reported", |st| st["reported"] == 4).await;
    assert_eq!((stats["asked"].as_u64(), stats["cacheHits"].as_u64()), (Some(1), Some(4)), "{stats}");
    // One verification asked of Latchkey and four reported: five uses, with the last one's time.
    let key = s.wait_usage(&id, 5).await;
    assert!(key["lastUsedAt"].is_string(), "{key}");

    // A report whose answer is lost on the way back was stored all the same;
    // sent again under its Idempotency-Key, it is not counted twice.
    s.proxy.lose_answers();
    for _ in 0..3 {
        assert_eq!(service.get("/users", &secret).await.0, 200);
    }
    let stats = service.wait_stats(WAIT, "a report lost", |st| st["reportFailures"].as_u64() >= Some(1)).await;
    assert_eq!(stats["reported"], 4, "{stats}");
    assert_eq!(s.usage_of(&id).await["usage30d"], 8, "the lost report was not stored");
    s.proxy.deliver_answers();
    let stats = service.wait_stats(WAIT, "the lost report taken", |st| st["reported"] == 7).await;
    assert_eq!((stats["asked"].as_u64(), stats["cacheHits"].as_u64()), (Some(1), Some(7)), "{stats}");
    assert_eq!(s.usage_of(&id).await["usage30d"], 8, "a retried report was counted again: {stats}");

    // The same, by hand: a report sent twice under one key counts once, the
    // second answer saying it was a replay; the key with another report is refused.
    let (_, stream_key) = s.key(&s.acme, json!({ "restrictions": { "permissions": ["verify:stream"] } })).await;
    let at = chrono::Utc::now();
    let report = |count: u64| json!({ "uses": [{ "keyId": id, "count": count, "lastUsedAt": at }] });
    let idempotency_key = "report-6f1c2a";
    for replayed in [false, true] {
        let (status, headers, body) = s.report(&stream_key, Some(idempotency_key), &report(2)).await;
        assert_eq!((status, body), (200, json!({ "counted": 1, "refused": [] })));
        assert_eq!(headers.get("idempotent-replayed").is_some(), replayed, "{headers:?}");
    }
    let (status, _, body) = s.report(&stream_key, Some(idempotency_key), &report(3)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    for bad in ["", &"k".repeat(256), "two words"] {
        assert_eq!(s.report(&stream_key, Some(bad), &report(3)).await.0, 400, "{bad:?}");
    }
    // Without a key, each report counts: 8 + 2 + 1.
    assert_eq!(s.report(&stream_key, None, &report(1)).await.0, 200);
    assert_eq!(s.usage_of(&id).await["usage30d"], 11);

    // A report names only keys the stream carries: another tenant's is refused, nothing counted.
    let (globex_id, _) = s.key(&s.globex, json!({})).await;
    let foreign = json!({ "uses": [{ "keyId": globex_id, "count": 7, "lastUsedAt": chrono::Utc::now() }] });
    let (status, _, body) = s.report(&stream_key, None, &foreign).await;
    assert_eq!((status, body), (200, json!({ "counted": 0, "refused": [globex_id] })));
    for (body, status) in
        [(json!({ "uses": [{ "keyId": id, "count": 0, "lastUsedAt": chrono::Utc::now() }] }), 400), (json!([]), 400)]
    {
        assert_eq!(s.report(&stream_key, None, &body).await.0, status, "{body}");
    }
    let (_, reader) = s.key(&s.acme, json!({ "restrictions": { "permissions": ["users:read"] } })).await;
    assert_eq!(s.report(&reader, None, &foreign).await.0, 403, "a key without verify:stream");
    assert_eq!(s.usage_of(&id).await["usage30d"], 11, "refused reports counted");
}
