//! The verification stream (`GET /v1/verifications/stream`): every change
//! that makes a key's cached verifications wrong reaches a service
//! streaming its tenant's signals within a second, from any replica;
//! resumable with `Last-Event-ID`; scoped to the tenant of the stream's
//! key, which needs `verify:stream`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use latchkey_domain::clock::ManualClock;

use latchkey_domain::Role;
use latchkey_store::NewUser;
use latchkey_tests::sse::{SseEvent, SseStream};
use latchkey_tests::{AppOptions, Backend, Seeded, TestApp, TestDb, ops};
use serde_json::{Value, json};

on_both_backends!(
    every_revocation_reaches_the_stream_within_a_second,
    the_stream_needs_verify_stream_and_carries_its_tenant_only,
    a_resumed_stream_misses_nothing_and_a_late_one_is_flushed,
);

/// The longest a signal may take from the change's answer to the stream.
const WITHIN: Duration = Duration::from_secs(1);

const SET_ACTIVE: &str = "mutation($id: ID!, $active: Boolean!) { setUserActive(input: {id: $id, active: $active}) { \
    user { id active } userErrors { field message code } } }";

/// A key of `s`'s tenant allowed `permissions`; returns (id, secret).
async fn key_allowed(
    app: &TestApp,
    s: &Seeded,
    owner: &latchkey_domain::User,
    permissions: &[&str],
) -> (String, String) {
    let input = json!({ "input": { "ownerId": owner.id, "description": "Stream reader",
        "restrictions": { "permissions": permissions } } });
    let body = app.gql(Some(&s.admin_token), ops::GENERATE_RESTRICTED, input).await;
    let payload = &body["data"]["generateApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    (payload["apiKey"]["id"].as_str().unwrap().to_owned(), payload["secret"].as_str().unwrap().to_owned())
}

/// Where a stream is read: another replica on PostgreSQL (signals cross
/// replicas by `NOTIFY`), the one server on SQLite (which serves one process).
async fn stream_server(app: &TestApp) -> (String, Option<latchkey_server::wiring::RunningServer>) {
    match app.db.backend {
        Backend::Postgres => {
            let (replica, _) = app.replica().await;
            (replica.url(), Some(replica))
        }
        Backend::Sqlite => (app.url.clone(), None),
    }
}

async fn open(app: &TestApp, base: &str, key: &str, last: Option<&str>) -> SseStream {
    match SseStream::open(&app.http, base, key, last).await {
        Ok(stream) => stream,
        Err(response) => panic!("no stream: {} {:?}", response.status(), response.text().await),
    }
}

/// Waits for the next signal (not a heartbeat); checks it names `key` as `kind`.
async fn expect_signal(stream: &mut SseStream, kind: &str, key: &str, started: Instant) -> SseEvent {
    let event =
        stream.next_signal_within(Duration::from_secs(5)).await.unwrap_or_else(|| panic!("no {kind} for {key}"));
    let took = started.elapsed();
    assert_eq!((event.event.as_str(), event.data["keyId"].as_str()), (kind, Some(key)), "{event:?}");
    assert!(took < WITHIN, "{kind} of {key} took {took:?}");
    assert!(event.id.is_some(), "a signal has an id: {event:?}");
    event
}

async fn every_revocation_reaches_the_stream_within_a_second(app: TestApp) {
    let s = app.seed("Acme").await;
    let (base, replica) = stream_server(&app).await;
    let (_, stream_secret) = key_allowed(&app, &s, &s.integration, &["verify:stream"]).await;
    let mut stream = open(&app, &base, &stream_secret, None).await;
    let first = stream.next_within(Duration::from_secs(5)).await.expect("a first heartbeat");
    assert_eq!(first.event, "heartbeat");
    assert_eq!(first.data, json!({ "tenantId": s.tenant.id.to_string() }), "whose keys it carries");
    assert!(first.id.is_some(), "where the stream starts: {first:?}");
    let token = &s.admin_token;
    let mut took = Vec::new();

    let (id, _, _) = app.generate(token, &s.integration, "Rotated").await;
    let started = Instant::now();
    let rotated = app.gql(Some(token), ops::ROTATE, json!({ "id": id })).await;
    assert!(rotated["errors"].is_null(), "{rotated}");
    let event = expect_signal(&mut stream, "revoked", &id, started).await;
    assert_eq!(event.data["tenantId"], json!(s.tenant.id.to_string()));
    let text = serde_json::to_string(&event.data).unwrap();
    let secret = rotated["data"]["rotateApiKey"]["secret"].as_str().unwrap();
    assert!(!text.contains(&secret[3..15]) && !text.contains("hash"), "never a secret or a hash: {text}");
    took.push(started.elapsed());

    let (id, _, _) = app.generate(token, &s.integration, "Deleted").await;
    let started = Instant::now();
    app.gql(Some(token), ops::DELETE, json!({ "id": id })).await;
    expect_signal(&mut stream, "revoked", &id, started).await;
    took.push(started.elapsed());

    let (id, _, _) = app.generate(token, &s.integration, "Disabled").await;
    let started = Instant::now();
    app.gql(Some(token), ops::DISABLE, json!({ "id": id })).await;
    expect_signal(&mut stream, "revoked", &id, started).await;
    let started = Instant::now();
    app.gql(Some(token), ops::ENABLE, json!({ "id": id })).await;
    expect_signal(&mut stream, "changed", &id, started).await;
    took.push(started.elapsed());

    let (id, _, _) = app.generate(token, &s.integration, "Restricted").await;
    let started = Instant::now();
    let input = json!({ "input": { "id": id, "restrictions": { "permissions": ["users:read"] } } });
    let restricted = app.gql(Some(token), ops::UPDATE_RESTRICTIONS, input).await;
    assert_eq!(restricted["data"]["updateApiKeyRestrictions"]["userErrors"], json!([]), "{restricted}");
    expect_signal(&mut stream, "changed", &id, started).await;
    took.push(started.elapsed());

    let (id, secret, _) = app.generate(token, &s.integration, "Leaked").await;
    let started = Instant::now();
    let leak = json!({ "key": secret, "url": "https://github.com/acme/site/blob/main/.env" });
    let resp = app.http.post(format!("{}/v1/keys/report-leak", app.url)).json(&leak).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    expect_signal(&mut stream, "revoked", &id, started).await;
    took.push(started.elapsed());

    // Suspended with its owner: every key of the owner, the stream's own last (it ends the stream).
    let leaver = NewUser {
        tenant_id: s.tenant.id,
        email: "leaver@acme.example".into(),
        name: "Leaver".into(),
        role: Role::IntegrationUser,
    };
    let owner = app.store.create_user(leaver, app.now()).await.unwrap();
    let (id, _, _) = app.generate(token, &owner, "Suspended").await;
    let started = Instant::now();
    let body = app.gql(Some(token), SET_ACTIVE, json!({ "id": owner.id.to_string(), "active": false })).await;
    assert_eq!(body["data"]["setUserActive"]["userErrors"], json!([]), "{body}");
    expect_signal(&mut stream, "revoked", &id, started).await;
    took.push(started.elapsed());

    let body = app.gql(Some(token), SET_ACTIVE, json!({ "id": s.integration.id.to_string(), "active": false })).await;
    assert_eq!(body["data"]["setUserActive"]["userErrors"], json!([]), "{body}");
    let mut ended = false;
    for _ in 0..20 {
        match stream.next_signal_within(Duration::from_secs(5)).await {
            Some(event) => assert_eq!(event.event, "revoked", "{event:?}"),
            None => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended && stream.ends_within(Duration::from_secs(1)).await, "the stream ends with its own key");
    let refused = SseStream::open(&app.http, &base, &stream_secret, None).await.map(|_| ()).unwrap_err();
    assert_eq!(refused.status(), 401);
    took.sort();
    eprintln!("revocation to stream: median {:?}, max {:?}", took[took.len() / 2], took[took.len() - 1]);
    if let Some(replica) = replica {
        replica.stop().await;
    }
    app.stop().await;
}

async fn the_stream_needs_verify_stream_and_carries_its_tenant_only(app: TestApp) {
    let acme = app.seed("Acme").await;
    let globex = app.seed("Globex").await;
    let (base, replica) = stream_server(&app).await;

    // Who may not open it: no key, an admin token, a key without the permission, a wrong key.
    let anonymous = app.http.get(format!("{base}/v1/verifications/stream")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let admin = SseStream::open(&app.http, &base, &acme.admin_token, None).await.map(|_| ()).unwrap_err();
    assert_eq!(admin.status(), 403);
    let (_, reader) = key_allowed(&app, &acme, &acme.integration, &["users:read"]).await;
    let lacking = SseStream::open(&app.http, &base, &reader, None).await.map(|_| ()).unwrap_err();
    assert_eq!(lacking.status(), 403);
    let body: Value = lacking.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("verify:stream"), "{body}");
    let wrong = SseStream::open(&app.http, &base, "lk_not_a_key", None).await.map(|_| ()).unwrap_err();
    assert_eq!(wrong.status(), 401);

    // Globex's revocation never reaches Acme's stream: Acme's next one does.
    let (acme_stream_id, acme_stream) = key_allowed(&app, &acme, &acme.integration, &["verify:stream"]).await;
    let mut stream = open(&app, &base, &acme_stream, None).await;
    let (globex_key, _, _) = app.generate(&globex.admin_token, &globex.integration, "Theirs").await;
    let (acme_key, _, _) = app.generate(&acme.admin_token, &acme.integration, "Ours").await;
    app.gql(Some(&globex.admin_token), ops::DELETE, json!({ "id": globex_key })).await;
    let started = Instant::now();
    app.gql(Some(&acme.admin_token), ops::DELETE, json!({ "id": acme_key })).await;
    expect_signal(&mut stream, "revoked", &acme_key, started).await;

    // Globex's signals, however frequent, neither reach Acme's stream nor keep its heartbeat away.
    let quiet_since = Instant::now();
    let heartbeat = loop {
        assert!(quiet_since.elapsed() < Duration::from_secs(20), "no heartbeat within 15 s of quiet");
        let (theirs, _, _) = app.generate(&globex.admin_token, &globex.integration, "Theirs").await;
        app.gql(Some(&globex.admin_token), ops::DELETE, json!({ "id": theirs })).await;
        if let Some(event) = stream.next_within(Duration::from_secs(2)).await {
            break event;
        }
    };
    assert_eq!(heartbeat.event, "heartbeat", "{heartbeat:?}");
    assert!(quiet_since.elapsed() >= Duration::from_secs(14), "after {:?}", quiet_since.elapsed());

    // Its own key losing `verify:stream` ends it; the reconnection is refused.
    let input = json!({ "input": { "id": acme_stream_id, "restrictions": { "permissions": ["users:read"] } } });
    let started = Instant::now();
    let narrowed = app.gql(Some(&acme.admin_token), ops::UPDATE_RESTRICTIONS, input).await;
    assert_eq!(narrowed["data"]["updateApiKeyRestrictions"]["userErrors"], json!([]), "{narrowed}");
    expect_signal(&mut stream, "changed", &acme_stream_id, started).await;
    assert!(stream.ends_within(Duration::from_secs(1)).await, "the stream ends with its key's change");
    let refused = SseStream::open(&app.http, &base, &acme_stream, None).await.map(|_| ()).unwrap_err();
    assert_eq!(refused.status(), 403);
    if let Some(replica) = replica {
        replica.stop().await;
    }
    app.stop().await;
}

/// On the test's clock, so that both servers have run a while before the
/// events (a resume on another replica needs that replica to have been
/// running from shortly before the event it resumes after).
async fn a_resumed_stream_misses_nothing_and_a_late_one_is_flushed(db: TestDb) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let app = TestApp::start_with(db, AppOptions { clock: Some(clock.clone()), ..AppOptions::default() }).await;
    let s = app.seed("Acme").await;
    let (base, replica) = stream_server(&app).await;
    clock.advance(chrono::Duration::seconds(10));
    let (_, stream_secret) = key_allowed(&app, &s, &s.integration, &["verify:stream"]).await;
    let token = &s.admin_token;
    // A client that saw no signal before it went away resumes from the opening heartbeat.
    let mut quiet = open(&app, &base, &stream_secret, None).await;
    let opening = quiet.next_within(Duration::from_secs(5)).await.expect("the opening heartbeat");
    let opening = opening.id.expect("the opening heartbeat has an id");
    drop(quiet);
    let mut stream = open(&app, &base, &stream_secret, None).await;
    let (first, _, _) = app.generate(token, &s.integration, "First").await;
    let started = Instant::now();
    app.gql(Some(token), ops::DELETE, json!({ "id": first })).await;
    expect_signal(&mut stream, "revoked", &first, started).await;
    let last = stream.last_event_id.clone().expect("an id to resume from");
    drop(stream);

    // Two revocations while the client is away.
    let mut missed = Vec::new();
    for name in ["Second", "Third"] {
        let (id, _, _) = app.generate(token, &s.integration, name).await;
        app.gql(Some(token), ops::DELETE, json!({ "id": id })).await;
        missed.push(id);
    }
    // Resumed where it was read, and (on PostgreSQL) on the other replica as well.
    let mut resumes = vec![base.clone()];
    if replica.is_some() {
        resumes.push(app.url.clone());
    }
    for resume_at in resumes {
        let mut resumed = open(&app, &resume_at, &stream_secret, Some(&last)).await;
        let mut seen = Vec::new();
        while seen.len() < missed.len() {
            let event = resumed.next_signal_within(Duration::from_secs(5)).await.expect("the missed signals");
            assert_eq!(event.event, "revoked", "resumed at {resume_at} after {last}: {event:?}");
            let key = event.data["keyId"].as_str().unwrap().to_owned();
            // From another replica the replay starts a little before: a signal sent twice is harmless.
            if missed.contains(&key) && !seen.contains(&key) {
                seen.push(key);
            }
        }
        assert_eq!(seen, missed, "resumed at {resume_at}");
    }
    let mut from_opening = open(&app, &base, &stream_secret, Some(&opening)).await;
    let mut all = vec![first.clone()];
    all.extend(missed.iter().cloned());
    for expected in &all {
        let event = from_opening.next_signal_within(Duration::from_secs(5)).await.expect("every signal since");
        assert_eq!(event.data["keyId"].as_str(), Some(expected.as_str()), "{event:?}");
    }

    // A resume the replica cannot prove complete: drop everything.
    for last in ["0-0-00000000", "not an id"] {
        let mut late = open(&app, &base, &stream_secret, Some(last)).await;
        let event = late.next_signal_within(Duration::from_secs(5)).await.expect("a flush");
        assert_eq!((event.event.as_str(), &event.data), ("flush", &json!({ "reason": "resume_too_old" })));
    }
    if let Some(replica) = replica {
        replica.stop().await;
    }
    app.stop().await;
}
