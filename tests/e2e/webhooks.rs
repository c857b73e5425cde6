//! Webhooks through the public surface: endpoints over GraphQL, every event
//! type delivered to a real loopback receiver and verified with the
//! reference `standardwebhooks` library, retries on the test clock,
//! disabling after 5 days, redelivery, hostile URLs and receivers, tenant
//! isolation, several replicas and a replica killed mid-delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use latchkey_domain::NoticeKind;
use latchkey_domain::clock::ManualClock;
use latchkey_tests::webhooks::{Answer, Receiver, reference_library, verify_with_reference_library};
use latchkey_tests::{AppOptions, Backend, Seeded, TestApp, TestDb, ops, run_latchkey};
use serde_json::{Value, json};

on_both_backends!(
    every_event_type_reaches_the_receiver_signed_as_the_reference_library_verifies,
    expiry_events_follow_the_clock,
    a_rotated_signing_secret_signs_beside_the_new_one_for_a_day,
    a_failing_receiver_is_retried_on_the_schedule_with_the_same_webhook_id,
    five_days_of_failures_disable_the_endpoint_and_mail_the_admins_once,
    redelivery_and_test_events,
    hostile_endpoint_input_is_refused_and_nothing_is_stored,
    hostile_receivers_are_cut_recorded_and_retried,
    tenants_see_and_touch_only_their_own_webhooks,
    operators_list_deliveries_with_the_cli,
);

const ENDPOINT_FIELDS: &str = "id url description eventTypes enabled createdAt disabledReason";

fn create_op() -> String {
    format!(
        "mutation($input: CreateWebhookEndpointInput!) {{ createWebhookEndpoint(input: $input) {{ \
         endpoint {{ {ENDPOINT_FIELDS} }} signingSecret userErrors {{ field message code }} }} }}"
    )
}

fn update_op() -> String {
    format!(
        "mutation($input: UpdateWebhookEndpointInput!) {{ updateWebhookEndpoint(input: $input) {{ \
         endpoint {{ {ENDPOINT_FIELDS} }} userErrors {{ field message code }} }} }}"
    )
}

const DELIVERIES: &str = "query($endpoint: ID, $status: [WebhookDeliveryStatus!], $first: Int) { \
    webhookDeliveries(endpointId: $endpoint, status: $status, first: $first) { nodes { id messageId endpointId \
    eventId eventType status payload createdAt nextAttemptAt \
    attempts { attemptedAt httpStatus durationMs responseBody error } } pageInfo { hasNextPage endCursor } } }";

const ROTATE_SECRET: &str = "mutation($id: ID!) { rotateWebhookSigningSecret(input: {id: $id}) { \
    endpoint { id } signingSecret userErrors { field message code } } }";

const SEND_TEST: &str = "mutation($id: ID!) { sendTestWebhook(input: {endpointId: $id}) { \
    delivery { id messageId eventType status } userErrors { field message code } } }";

const REDELIVER: &str = "mutation($id: ID!) { redeliverWebhook(input: {deliveryId: $id}) { \
    delivery { id messageId status } userErrors { field message code } } }";

/// Creates an endpoint for `url` receiving `types`; returns (id, signing secret).
async fn create_endpoint(app: &TestApp, token: &str, url: &str, types: Value) -> (String, String) {
    let body = app
        .gql(Some(token), &create_op(), json!({ "input": { "url": url, "description": "Sink", "eventTypes": types } }))
        .await;
    let payload = &body["data"]["createWebhookEndpoint"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    let secret = payload["signingSecret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (payload["endpoint"]["id"].as_str().unwrap().to_owned(), secret)
}

/// The deliveries of `endpoint` (newest first), optionally in `status`.
async fn deliveries(app: &TestApp, token: &str, endpoint: &str, status: Option<&str>) -> Vec<Value> {
    let status = status.map(|s| json!([s]));
    let body = app.gql(Some(token), DELIVERIES, json!({ "endpoint": endpoint, "status": status, "first": 100 })).await;
    body["data"]["webhookDeliveries"]["nodes"].as_array().unwrap_or_else(|| panic!("{body}")).clone()
}

/// Polls `check` until it holds (at most 20 s).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A server whose clock the test moves, starting now (so the reference
/// library's 5-minute timestamp tolerance holds until the test moves it).
async fn app_with_clock(db: TestDb) -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let app = TestApp::start_with(db, AppOptions { clock: Some(clock.clone()), ..AppOptions::default() }).await;
    (app, clock)
}

async fn generate_for(app: &TestApp, token: &str, owner: &latchkey_domain::User, extra: Value) -> (String, String) {
    let mut input = json!({ "ownerId": owner.id, "description": "Sync job" });
    input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let body = app.gql(Some(token), ops::GENERATE_LIMITED, json!({ "input": input })).await;
    let payload = &body["data"]["generateApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    (payload["apiKey"]["id"].as_str().unwrap().to_owned(), payload["secret"].as_str().unwrap().to_owned())
}

async fn set_user_active(app: &TestApp, token: &str, user: &latchkey_domain::User, active: bool) {
    let op = "mutation($id: ID!, $active: Boolean!) { setUserActive(input: {id: $id, active: $active}) { \
              user { id } userErrors { code } } }";
    let body = app.gql(Some(token), op, json!({ "id": user.id, "active": active })).await;
    assert_eq!(body["data"]["setUserActive"]["userErrors"], json!([]), "{body}");
}

async fn gql_ok(app: &TestApp, token: &str, op: &str, vars: Value) -> Value {
    let body = app.gql(Some(token), op, vars).await;
    assert!(body["errors"].is_null(), "{body}");
    body
}

async fn every_event_type_reaches_the_receiver_signed_as_the_reference_library_verifies(app: TestApp) {
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let receiver = Receiver::start().await;
    let (endpoint, secret) = create_endpoint(&app, token, &receiver.url(), json!([])).await;

    let (a, a_secret) = generate_for(&app, token, &s.integration, json!({})).await;
    let rotated = gql_ok(&app, token, ops::ROTATE_WITH, json!({ "input": { "id": a, "overlapSeconds": 3600 } })).await;
    let a_new_secret = rotated["data"]["rotateApiKey"]["secret"].as_str().unwrap().to_owned();
    gql_ok(&app, token, ops::UPDATE_DESCRIPTION, json!({ "id": a, "d": "Nightly sync" })).await;
    let restrict = json!({ "input": { "id": a, "restrictions": { "permissions": ["users:read"] } } });
    gql_ok(&app, token, ops::UPDATE_RESTRICTIONS, restrict).await;
    gql_ok(&app, token, ops::DISABLE, json!({ "id": a })).await;
    gql_ok(&app, token, ops::ENABLE, json!({ "id": a })).await;
    let transfer =
        "mutation($id: ID!, $owner: ID!) { transferApiKey(input: {id: $id, ownerId: $owner}) { userErrors { code } } }";
    gql_ok(&app, token, transfer, json!({ "id": a, "owner": s.other_admin.id })).await;
    let leak = app
        .http
        .post(format!("{}/v1/keys/report-leak", app.url))
        .json(&json!({ "key": a_new_secret, "url": "https://gist.example/leak" }))
        .send()
        .await
        .unwrap();
    assert_eq!(leak.status(), 202);

    let (_b, b_secret) = generate_for(&app, token, &s.integration, json!({ "credits": { "remaining": 100 } })).await;
    let spend = json!({ "key": b_secret, "cost": 91 });
    let resp = app.http.post(format!("{}/v1/keys/verify", app.url)).json(&spend).send().await;
    assert_eq!(resp.unwrap().status(), 200);
    let (c, _) = generate_for(&app, token, &s.integration, json!({})).await;
    set_user_active(&app, token, &s.integration, false).await;
    set_user_active(&app, token, &s.integration, true).await;
    app.delete(token, &c).await;
    gql_ok(&app, token, SEND_TEST, json!({ "id": endpoint })).await;

    let expected: BTreeMap<&str, usize> = [
        ("api_key.created", 3),
        ("api_key.rotated", 1),
        ("api_key.description_changed", 1),
        ("api_key.restrictions_changed", 1),
        ("api_key.disabled", 1),
        ("api_key.enabled", 1),
        ("api_key.owner_changed", 1),
        ("api_key.compromised", 1),
        ("api_key.credits_low", 1),
        ("user.deactivated", 1),
        ("api_key.suspended", 2),
        ("user.reactivated", 1),
        ("api_key.deleted", 1),
        ("webhook.test", 1),
    ]
    .into();
    let total: usize = expected.values().sum();
    let received = receiver.wait_for(total, Duration::from_secs(20)).await;
    let mut by_type: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in &received {
        assert_eq!(r.headers["content-type"], "application/json");
        let body = r.json();
        by_type.entry(body["type"].as_str().unwrap().to_owned()).or_default().push(body);
    }
    let counts: BTreeMap<&str, usize> = by_type.iter().map(|(t, v)| (t.as_str(), v.len())).collect();
    assert_eq!(counts, expected);
    // One id per delivery, never repeated here.
    let ids: BTreeSet<&str> = received.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), received.len());

    // The payloads: the key as the table shows it, the actor, the type's fields.
    let rotated = &by_type["api_key.rotated"][0]["data"];
    assert_eq!(rotated["tenantId"], s.tenant.id.to_string());
    assert_eq!(rotated["apiKey"]["id"], a);
    assert_eq!(rotated["apiKey"]["status"], "ACTIVE");
    assert_eq!(rotated["apiKey"]["owner"]["name"], s.integration.name);
    assert_eq!(rotated["actor"], json!({ "kind": "ADMIN", "id": s.admin.id.to_string(), "name": s.admin.name }));
    assert!(rotated["previousSecretExpiresAt"].is_string(), "{rotated}");
    assert_eq!(by_type["api_key.description_changed"][0]["data"]["previousDescription"], "Sync job");
    assert_eq!(by_type["api_key.disabled"][0]["data"]["apiKey"]["status"], "DISABLED");
    let moved = &by_type["api_key.owner_changed"][0]["data"];
    assert_eq!(moved["previousOwner"]["id"], s.integration.id.to_string());
    assert_eq!(moved["apiKey"]["owner"]["id"], s.other_admin.id.to_string());
    let compromised = &by_type["api_key.compromised"][0]["data"];
    assert_eq!(compromised["actor"]["kind"], "SYSTEM");
    assert_eq!(compromised["leak"]["url"], "https://gist.example/leak");
    assert_eq!(compromised["apiKey"]["status"], "COMPROMISED");
    let low = &by_type["api_key.credits_low"][0]["data"];
    assert_eq!(low["actor"]["kind"], "SYSTEM");
    assert_eq!(low["credits"], json!({ "remaining": 9, "allotment": 100 }), "{low}");
    let deactivated = &by_type["user.deactivated"][0]["data"];
    assert_eq!(deactivated["user"]["id"], s.integration.id.to_string());
    assert_eq!(deactivated["apiKeyIds"].as_array().unwrap().len(), 2);
    assert!(by_type["api_key.suspended"].iter().all(|e| e["data"]["apiKey"]["status"] == "SUSPENDED"));
    assert_eq!(by_type["webhook.test"][0]["data"]["endpointId"], endpoint);
    for body in by_type.values().flatten() {
        assert!(DateTime::parse_from_rfc3339(body["timestamp"].as_str().unwrap()).is_ok(), "{body}");
    }

    // Never a secret, a hash or an admin's email.
    for r in &received {
        for secret in [&a_secret, &a_new_secret, &b_secret, &secret] {
            assert!(!r.body.contains(secret.as_str()), "a secret in {}", r.body);
        }
        for user in [&s.admin, &s.other_admin, &s.integration] {
            assert!(!r.body.contains(&user.email), "an email in {}", r.body);
        }
        assert!(!r.body.to_ascii_lowercase().contains("hash"), "{}", r.body);
    }

    // Signatures, verified by the reference library; a wrong secret fails.
    if reference_library() {
        let verdicts = verify_with_reference_library(&secret, &received);
        assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");
        let other = latchkey_domain::webhooks::SigningSecret::generate().unwrap();
        let wrong = verify_with_reference_library(other.expose(), &received[..1]);
        assert!(wrong[0].is_err(), "a wrong secret must not verify");
    }

    // The log agrees: every delivery succeeded at its first attempt.
    let log = deliveries(&app, token, &endpoint, None).await;
    assert_eq!(log.len(), total);
    for d in &log {
        assert_eq!(d["status"], "SUCCEEDED", "{d}");
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
        assert_eq!(d["attempts"][0]["httpStatus"], 200);
        assert_eq!(d["attempts"][0]["responseBody"], "answered 200");
        assert!(received.iter().any(|r| r.id() == d["messageId"]));
    }
    app.stop().await;
}

async fn expiry_events_follow_the_clock(db: TestDb) {
    let (app, clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = &app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let receiver = Receiver::start().await;
    let types = json!(["api_key.expiring", "api_key.expired"]);
    create_endpoint(&app, token, &receiver.url(), types).await;
    let expires_at = app.now() + Span::days(8);
    generate_for(&app, token, &s.integration, json!({ "expiresAt": expires_at.to_rfc3339() })).await;
    clock.advance(Span::days(1) + Span::minutes(1));
    let first = receiver.wait_for(1, Duration::from_secs(20)).await;
    clock.advance(Span::days(6));
    let second = receiver.wait_for(2, Duration::from_secs(20)).await;
    clock.advance(Span::days(1));
    let all = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 1, "only the created key and its subscribed types");
    let bodies: Vec<Value> = all.iter().map(|r| r.json()).collect();
    assert_eq!(bodies[0]["type"], "api_key.expiring");
    assert_eq!(bodies[0]["data"]["warning"], "7d");
    assert_eq!(second[1].json()["data"]["warning"], "1d");
    assert_eq!(bodies[2]["type"], "api_key.expired");
    assert_eq!(bodies[2]["data"]["apiKey"]["status"], "EXPIRED");
    assert_eq!(bodies[2]["data"]["actor"]["kind"], "SYSTEM");
    app.stop().await;
}

/// `webhook-signature`'s entries.
fn signatures(r: &latchkey_tests::webhooks::Received) -> Vec<String> {
    r.headers["webhook-signature"].split(' ').map(str::to_owned).collect()
}

async fn a_rotated_signing_secret_signs_beside_the_new_one_for_a_day(db: TestDb) {
    let (app, clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = &app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let receiver = Receiver::start().await;
    let (endpoint, old) = create_endpoint(&app, token, &receiver.url(), json!(["webhook.test"])).await;
    let body = gql_ok(&app, token, ROTATE_SECRET, json!({ "id": endpoint })).await;
    let new = body["data"]["rotateWebhookSigningSecret"]["signingSecret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    gql_ok(&app, token, SEND_TEST, json!({ "id": endpoint })).await;
    let during = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(signatures(&during[0]).len(), 2, "both secrets sign during the overlap");
    if reference_library() {
        for secret in [&old, &new] {
            let verdicts = verify_with_reference_library(secret, &during);
            assert!(verdicts[0].is_ok(), "{secret}: {verdicts:?}");
        }
    }
    // A day later only the new secret signs.
    clock.advance(Span::hours(24) + Span::minutes(1));
    let token = &app.token(&s.admin, latchkey_domain::Cloud::Employee);
    gql_ok(&app, token, SEND_TEST, json!({ "id": endpoint })).await;
    let after = receiver.wait_for(2, Duration::from_secs(20)).await;
    let signed = signatures(&after[1]);
    assert_eq!(signed.len(), 1);
    let new_secret = latchkey_domain::webhooks::SigningSecret::from_stored(&new).unwrap();
    let timestamp: i64 = after[1].headers["webhook-timestamp"].parse().unwrap();
    assert_eq!(timestamp, app.now().timestamp());
    assert_eq!(signed[0], new_secret.sign(after[1].id(), timestamp, &after[1].body));
    app.stop().await;
}

/// Moves `clock` to when the pending delivery of `endpoint` is due and waits
/// for the receiver to get one more request.
async fn step_to_next_attempt(
    app: &TestApp,
    clock: &ManualClock,
    s: &Seeded,
    endpoint: &str,
    receiver: &Receiver,
) -> Value {
    let token = app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let pending = deliveries(app, &token, endpoint, Some("PENDING")).await;
    let due: DateTime<Utc> = pending[0]["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    let before = receiver.received().len();
    clock.advance((due - clock_now(clock)).max(Span::zero()));
    receiver.wait_for(before + 1, Duration::from_secs(20)).await;
    pending[0].clone()
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    use latchkey_domain::Clock;
    clock.now()
}

async fn a_failing_receiver_is_retried_on_the_schedule_with_the_same_webhook_id(db: TestDb) {
    let (app, clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = &app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500), Answer::Status(503)]);
    let (endpoint, _) = create_endpoint(&app, token, &receiver.url(), json!(["api_key.created"])).await;
    generate_for(&app, token, &s.integration, json!({})).await;
    let first = receiver.wait_for(1, Duration::from_secs(20)).await;
    let failed_at = clock_now(&clock);
    eventually("the first failure to be recorded", || async {
        deliveries(&app, token, &endpoint, Some("PENDING"))
            .await
            .first()
            .is_some_and(|d| d["attempts"].as_array().unwrap().len() == 1)
    })
    .await;
    let pending = deliveries(&app, token, &endpoint, Some("PENDING")).await;
    let due: DateTime<Utc> = pending[0]["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    let wait = (due - failed_at).num_milliseconds();
    assert!((4_400..=5_600).contains(&wait), "the first retry comes 5 s ± 10 % later: {wait} ms");
    // Nothing is sent before it is due.
    clock.advance(due - Span::milliseconds(500) - clock_now(&clock));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 1);
    step_to_next_attempt(&app, &clock, &s, &endpoint, &receiver).await;
    eventually("the second failure", || async {
        deliveries(&app, token, &endpoint, Some("PENDING"))
            .await
            .first()
            .is_some_and(|d| d["attempts"].as_array().unwrap().len() == 2)
    })
    .await;
    let pending = deliveries(&app, token, &endpoint, Some("PENDING")).await;
    let due: DateTime<Utc> = pending[0]["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    let wait = (due - clock_now(&clock)).num_seconds();
    assert!((270..=330).contains(&wait), "the second retry comes 5 min ± 10 % later: {wait} s");
    step_to_next_attempt(&app, &clock, &s, &endpoint, &receiver).await;
    let all = receiver.received();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|r| r.id() == first[0].id()), "one webhook-id across retries");
    assert!(all.iter().all(|r| r.body == first[0].body), "the same body");
    eventually("success", || async { deliveries(&app, token, &endpoint, Some("SUCCEEDED")).await.len() == 1 }).await;
    let done = &deliveries(&app, token, &endpoint, None).await[0];
    let statuses: Vec<&Value> = done["attempts"].as_array().unwrap().iter().map(|a| &a["httpStatus"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(503), &json!(200)]);
    assert_eq!(done["attempts"][0]["responseBody"], "answered 500");
    assert!(done["nextAttemptAt"].is_null());
    app.stop().await;
}

async fn five_days_of_failures_disable_the_endpoint_and_mail_the_admins_once(db: TestDb) {
    let (app, clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let receiver = Receiver::start().await;
    receiver.script(std::iter::repeat_n(Answer::Status(503), 100));
    let token = app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let (endpoint, _) = create_endpoint(&app, &token, &receiver.url(), json!(["api_key.created"])).await;
    let started = clock_now(&clock);
    // Events keep coming while every attempt fails: each delivery runs its
    // ~3-day schedule; the endpoint goes after 5 days without a success.
    let mut attempts = 0;
    while endpoint_state(&app, &s).await["enabled"] == true {
        let token = app.token(&s.admin, latchkey_domain::Cloud::Employee);
        let pending = deliveries(&app, &token, &endpoint, Some("PENDING")).await;
        if pending.is_empty() {
            generate_for(&app, &token, &s.integration, json!({})).await;
            receiver.wait_for(attempts + 1, Duration::from_secs(20)).await;
        } else {
            step_to_next_attempt(&app, &clock, &s, &endpoint, &receiver).await;
        }
        attempts += 1;
        let recorded = attempts;
        eventually("the attempt to be recorded", || async {
            let token = app.token(&s.admin, latchkey_domain::Cloud::Employee);
            let log = deliveries(&app, &token, &endpoint, None).await;
            log.iter().map(|d| d["attempts"].as_array().unwrap().len()).sum::<usize>() == recorded
        })
        .await;
        assert!(attempts < 60, "the endpoint should be disabled by now");
    }
    let disabled = endpoint_state(&app, &s).await;
    let elapsed = clock_now(&clock) - started;
    assert!(elapsed >= Span::days(5) && elapsed < Span::days(6), "disabled after {elapsed}");
    assert!(disabled["disabledReason"].as_str().unwrap().contains("5 days"), "{disabled}");
    assert!(disabled["disabledReason"].as_str().unwrap().contains("503"), "{disabled}");
    // Both internal admins are mailed, once.
    let is_notice = |n: &latchkey_domain::Notice| n.kind == NoticeKind::WebhookDisabled;
    eventually("the admins' mail", || async { app.notifier.delivered().iter().filter(|n| is_notice(n)).count() == 2 })
        .await;
    let mailed: BTreeSet<_> = app.notifier.delivered().iter().filter(|n| is_notice(n)).map(|n| n.owner_id).collect();
    assert_eq!(mailed, [s.admin.id, s.other_admin.id].into());
    // Disabled: new events queue nothing and nothing more is sent.
    let sent = receiver.received().len();
    let token = app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let queued = deliveries(&app, &token, &endpoint, None).await.len();
    generate_for(&app, &token, &s.integration, json!({})).await;
    clock.advance(Span::days(1));
    let token = app.token(&s.admin, latchkey_domain::Cloud::Employee);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), sent);
    assert_eq!(deliveries(&app, &token, &endpoint, None).await.len(), queued);
    assert_eq!(app.notifier.delivered().iter().filter(|n| is_notice(n)).count(), 2, "mailed once");
    // Enabled again: a fresh start, the reason gone.
    let body = app.gql(Some(&token), &update_op(), json!({ "input": { "id": endpoint, "enabled": true } })).await;
    let endpoint_now = &body["data"]["updateWebhookEndpoint"]["endpoint"];
    assert_eq!(endpoint_now["enabled"], true, "{body}");
    assert!(endpoint_now["disabledReason"].is_null());
    app.stop().await;
}

/// The tenant's first endpoint, as the admin sees it.
async fn endpoint_state(app: &TestApp, s: &Seeded) -> Value {
    let token = app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let op = format!("{{ webhookEndpoints {{ nodes {{ {ENDPOINT_FIELDS} }} }} }}");
    app.gql(Some(&token), &op, json!({})).await["data"]["webhookEndpoints"]["nodes"][0].clone()
}

async fn redelivery_and_test_events(app: TestApp) {
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let receiver = Receiver::start().await;
    let (endpoint, secret) = create_endpoint(&app, token, &receiver.url(), json!(["api_key.deleted"])).await;
    let body = gql_ok(&app, token, SEND_TEST, json!({ "id": endpoint })).await;
    let queued = &body["data"]["sendTestWebhook"]["delivery"];
    assert_eq!(queued["eventType"], "webhook.test");
    let first = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(first[0].id(), queued["messageId"]);
    assert_eq!(first[0].json()["data"]["actor"]["kind"], "ADMIN");
    eventually("success", || async { deliveries(&app, token, &endpoint, Some("SUCCEEDED")).await.len() == 1 }).await;
    let body = gql_ok(&app, token, REDELIVER, json!({ "id": queued["id"] })).await;
    assert_eq!(body["data"]["redeliverWebhook"]["delivery"]["status"], "PENDING");
    let again = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(again[1].id(), again[0].id(), "a redelivery keeps its webhook-id");
    assert_eq!(again[1].body, again[0].body);
    eventually("two attempts logged", || async {
        let log = deliveries(&app, token, &endpoint, Some("SUCCEEDED")).await;
        log.len() == 1 && log[0]["attempts"].as_array().unwrap().len() == 2
    })
    .await;
    if reference_library() {
        assert!(verify_with_reference_library(&secret, &again).iter().all(Result::is_ok));
    }
    for (op, id) in [(REDELIVER, "nope"), (SEND_TEST, "00000000-0000-0000-0000-000000000000")] {
        let body = gql_ok(&app, token, op, json!({ "id": id })).await;
        let payload = body["data"].as_object().unwrap().values().next().unwrap();
        assert_eq!(payload["userErrors"][0]["code"], "NOT_FOUND", "{body}");
    }
    app.stop().await;
}

async fn hostile_endpoint_input_is_refused_and_nothing_is_stored(db: TestDb) {
    // Only a name is allowed (never resolved, never reached): the rule holds
    // for loopback and every other internal address.
    let mut webhooks = latchkey_tests::test_webhooks();
    webhooks.allowed = latchkey_domain::webhooks::AllowedHosts::parse("hooks.internal").unwrap();
    let app = TestApp::start_with(db, AppOptions { webhooks, ..AppOptions::default() }).await;
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let long = format!("https://hooks.example.com/{}", "a".repeat(10_000));
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({ "url": "https://127.0.0.1/hook" }), "url", "INVALID"),
        (json!({ "url": "http://127.0.0.1:8080/hook" }), "url", "INVALID"),
        (json!({ "url": "https://[::1]/hook" }), "url", "INVALID"),
        (json!({ "url": "https://[::ffff:127.0.0.1]/hook" }), "url", "INVALID"),
        (json!({ "url": "https://169.254.169.254/latest/meta-data" }), "url", "INVALID"),
        (json!({ "url": "https://10.1.2.3/hook" }), "url", "INVALID"),
        (json!({ "url": "https://100.64.0.1/hook" }), "url", "INVALID"),
        (json!({ "url": "https://localhost/hook" }), "url", "INVALID"),
        (json!({ "url": "http://hooks.example.com/hook" }), "url", "INVALID"),
        (json!({ "url": "https://user:pw@hooks.example.com/" }), "url", "INVALID"),
        (json!({ "url": "" }), "url", "BLANK"),
        (json!({ "url": long }), "url", "TOO_LONG"),
        (json!({ "url": "https://hooks.internal/", "eventTypes": ["api_key.exploded"] }), "eventTypes", "INVALID"),
        (json!({ "url": "https://hooks.internal/", "description": "x".repeat(201) }), "description", "TOO_LONG"),
    ];
    for (input, field, code) in cases {
        let body = app.gql(Some(token), &create_op(), json!({ "input": input })).await;
        let payload = &body["data"]["createWebhookEndpoint"];
        assert!(payload["endpoint"].is_null() && payload["signingSecret"].is_null(), "{body}");
        let error = &payload["userErrors"][0];
        assert_eq!(error["field"], json!(["input", field]), "{input}: {body}");
        assert_eq!(error["code"], code, "{input}: {body}");
        assert!(error["message"].as_str().unwrap().len() < 300, "a short message: {error}");
    }
    let body = app.gql(Some(token), "{ webhookEndpoints { totalCount nodes { id } } }", json!({})).await;
    assert_eq!(body["data"]["webhookEndpoints"]["totalCount"], 0, "{body}");
    assert_eq!(app.db.count("SELECT COUNT(*) FROM webhook_endpoints").await, 0);

    // At most 20 per tenant; updates are held to the same rules and change nothing.
    let allowed = "http://hooks.internal/in";
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(create_endpoint(&app, token, allowed, json!([])).await.0);
    }
    let body = app.gql(Some(token), &create_op(), json!({ "input": { "url": allowed } })).await;
    assert_eq!(body["data"]["createWebhookEndpoint"]["userErrors"][0]["code"], "LIMIT_REACHED", "{body}");
    let body = app.gql(Some(token), &update_op(), json!({ "input": { "id": ids[0], "url": "https://[::1]/x" } })).await;
    assert_eq!(body["data"]["updateWebhookEndpoint"]["userErrors"][0]["field"], json!(["input", "url"]), "{body}");
    let body = app.gql(Some(token), "{ webhookEndpoints(first: 1) { nodes { url } } }", json!({})).await;
    assert_eq!(body["data"]["webhookEndpoints"]["nodes"][0]["url"], allowed, "unchanged");
    app.stop().await;
}

async fn hostile_receivers_are_cut_recorded_and_retried(db: TestDb) {
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let mut webhooks = latchkey_tests::test_webhooks();
    webhooks.dispatcher.attempt_timeout = Duration::from_secs(1);
    let options = AppOptions { clock: Some(clock.clone()), webhooks, ..AppOptions::default() };
    let app = TestApp::start_with(db, options).await;
    let s = app.seed("Acme").await;
    let token = &app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let receiver = Receiver::start().await;
    receiver.script([Answer::Slow(Duration::from_secs(3)), Answer::Huge(50 << 20), Answer::Redirect]);
    let (endpoint, _) = create_endpoint(&app, token, &receiver.url(), json!(["webhook.test"])).await;
    gql_ok(&app, token, SEND_TEST, json!({ "id": endpoint })).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    for attempt in 2..=3 {
        eventually("the attempt to be recorded", || async {
            deliveries(&app, token, &endpoint, Some("PENDING"))
                .await
                .first()
                .is_some_and(|d| d["attempts"].as_array().unwrap().len() == attempt - 1)
        })
        .await;
        step_to_next_attempt(&app, &clock, &s, &endpoint, &receiver).await;
    }
    eventually("three attempts", || async {
        deliveries(&app, token, &endpoint, Some("PENDING"))
            .await
            .first()
            .is_some_and(|d| d["attempts"].as_array().unwrap().len() == 3)
    })
    .await;
    let log = deliveries(&app, token, &endpoint, Some("PENDING")).await;
    let attempts = log[0]["attempts"].as_array().unwrap();
    let slow = &attempts[0];
    assert!(slow["httpStatus"].is_null() && slow["error"].as_str().unwrap().contains("no answer"), "{slow}");
    assert!(slow["durationMs"].as_i64().unwrap() < 2_500, "cut at the timeout: {slow}");
    let huge = &attempts[1];
    assert_eq!(huge["httpStatus"], 200);
    assert!(huge["error"].as_str().unwrap().contains("1 MB"), "{huge}");
    assert_eq!(huge["responseBody"].as_str().unwrap().len(), 1024, "the first 1 KB kept");
    let redirect = &attempts[2];
    assert_eq!(redirect["httpStatus"], 302);
    assert!(redirect["error"].as_str().unwrap().contains("redirect"), "{redirect}");
    assert_eq!(receiver.received().len(), 3, "the redirect was not followed");
    app.stop().await;
}

async fn tenants_see_and_touch_only_their_own_webhooks(app: TestApp) {
    let a = app.seed("Acme").await;
    let b = app.seed("Globex").await;
    let receiver_a = Receiver::start().await;
    let receiver_b = Receiver::start().await;
    let (endpoint_a, _) = create_endpoint(&app, &a.admin_token, &receiver_a.url(), json!([])).await;
    create_endpoint(&app, &b.admin_token, &receiver_b.url(), json!([])).await;
    generate_for(&app, &a.admin_token, &a.integration, json!({})).await;
    receiver_a.wait_for(1, Duration::from_secs(20)).await;
    let delivery_a = deliveries(&app, &a.admin_token, &endpoint_a, None).await[0]["id"].as_str().unwrap().to_owned();

    let body = app.gql(Some(&b.admin_token), "{ webhookEndpoints { totalCount nodes { id } } }", json!({})).await;
    assert_eq!(body["data"]["webhookEndpoints"]["totalCount"], 1);
    assert_ne!(body["data"]["webhookEndpoints"]["nodes"][0]["id"], endpoint_a);
    let body = app.gql(Some(&b.admin_token), DELIVERIES, json!({ "endpoint": endpoint_a })).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{body}");
    let body = app.gql(Some(&b.admin_token), "{ webhookDeliveries { nodes { id } } }", json!({})).await;
    assert_eq!(body["data"]["webhookDeliveries"]["nodes"], json!([]), "B's events: none yet");
    for (op, vars) in [
        (update_op(), json!({ "input": { "id": endpoint_a, "enabled": false } })),
        (
            "mutation($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) { deletedEndpointId userErrors { code } } }"
                .into(),
            json!({ "id": endpoint_a }),
        ),
        (ROTATE_SECRET.into(), json!({ "id": endpoint_a })),
        (SEND_TEST.into(), json!({ "id": endpoint_a })),
        (REDELIVER.into(), json!({ "id": delivery_a })),
    ] {
        let body = app.gql(Some(&b.admin_token), &op, vars).await;
        let payload = body["data"].as_object().unwrap().values().next().unwrap();
        assert_eq!(payload["userErrors"][0]["code"], "NOT_FOUND", "{op}: {body}");
    }
    // Nobody but an internal admin in the employee cloud.
    for user in [&a.academy_admin] {
        let token = app.token(user, latchkey_domain::Cloud::Customer);
        let body = app.gql(Some(&token), "{ webhookEndpoints { totalCount } }", json!({})).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver_b.received().is_empty(), "A's events never reach B");
    assert_eq!(receiver_a.received().len(), 1);
    app.stop().await;
}

async fn operators_list_deliveries_with_the_cli(app: TestApp) {
    let s = app.seed("Acme").await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500)]);
    let (endpoint, _) = create_endpoint(&app, &s.admin_token, &receiver.url(), json!(["webhook.test"])).await;
    gql_ok(&app, &s.admin_token, SEND_TEST, json!({ "id": endpoint })).await;
    receiver.wait_for(1, Duration::from_secs(20)).await;
    eventually("the failed attempt", || async {
        deliveries(&app, &s.admin_token, &endpoint, None).await[0]["attempts"].as_array().unwrap().len() == 1
    })
    .await;
    let tenant = s.tenant.id.to_string();
    let out = run_latchkey(&app.db, &["webhooks", "deliveries", "--tenant", &tenant]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["eventType"], "webhook.test");
    assert_eq!(listed[0]["status"], "pending");
    assert_eq!(listed[0]["attempts"][0]["httpStatus"], 500);
    let out = run_latchkey(&app.db, &["webhooks", "deliveries", "--tenant", &tenant, "--status", "failed"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!([]));
    let out = run_latchkey(&app.db, &["webhooks", "deliveries", "--tenant", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant"));
    app.stop().await;
}

/// Two replicas on one PostgreSQL database deliver each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once() {
    let Some(app) = TestApp::start(Backend::Postgres).await else { return };
    let (replica, _) = app.replica().await;
    let s = app.seed("Acme").await;
    let receiver = Receiver::start().await;
    create_endpoint(&app, &s.admin_token, &receiver.url(), json!(["api_key.created"])).await;
    for _ in 0..40 {
        generate_for(&app, &s.admin_token, &s.integration, json!({})).await;
    }
    let received = receiver.wait_for(40, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received_now = receiver.received();
    let ids: BTreeSet<&str> = received_now.iter().map(|r| r.id()).collect();
    assert_eq!((received.len(), received_now.len(), ids.len()), (40, 40, 40), "each event once");
    replica.stop().await;
    app.stop().await;
}

/// A replica killed with SIGKILL while a receiver holds its request: the
/// other replica delivers it once the lease runs out, with the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_held_by_a_killed_replica_is_made_by_another_after_the_lease() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let receiver = Receiver::start().await;
    receiver.script([Answer::Hang]);
    let envs = [
        ("LATCHKEY_DATABASE_URL", db.url.as_str()),
        ("LATCHKEY_JWT_SECRET", latchkey_tests::JWT_SECRET),
        ("LATCHKEY_WEBHOOK_ALLOW_HOSTS", "127.0.0.1"),
        ("LATCHKEY_WEBHOOK_TIMEOUT_SECS", "2"),
        ("LATCHKEY_WEBHOOK_LEASE_SECS", "4"),
        ("LATCHKEY_WEBHOOK_POLL_MS", "100"),
    ];
    let first = latchkey_tests::process::ServerProcess::spawn(&envs);
    let store = db.store().await;
    let token_key = latchkey_domain::admin_token::AdminTokenKey::new(latchkey_tests::JWT_SECRET.as_bytes()).unwrap();
    let s = latchkey_tests::seed_tenant(&store, &token_key, "Acme").await;
    let http = reqwest::Client::new();
    let gql = |base: String, query: String, variables: Value| {
        let (http, token) = (http.clone(), s.admin_token.clone());
        async move {
            let resp = http
                .post(format!("{base}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": query, "variables": variables }));
            resp.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let input = json!({ "input": { "url": receiver.url(), "eventTypes": ["webhook.test"] } });
    let body = gql(first.url.clone(), create_op(), input).await;
    let endpoint = body["data"]["createWebhookEndpoint"]["endpoint"]["id"].as_str().unwrap().to_owned();
    gql(first.url.clone(), SEND_TEST.into(), json!({ "id": endpoint })).await;
    let held = receiver.wait_for(1, Duration::from_secs(20)).await;
    first.kill9();
    let killed_at = std::time::Instant::now();
    let second = latchkey_tests::process::ServerProcess::spawn(&envs);
    let all = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(all[1].id(), held[0].id(), "the same webhook-id");
    assert!(killed_at.elapsed() < Duration::from_secs(15));
    let log = gql(second.url.clone(), DELIVERIES.into(), json!({ "endpoint": endpoint })).await;
    let delivery = &log["data"]["webhookDeliveries"]["nodes"][0];
    // The killed replica recorded nothing; the other one's attempt succeeded.
    for _ in 0..100 {
        let log = gql(second.url.clone(), DELIVERIES.into(), json!({ "endpoint": endpoint })).await;
        if log["data"]["webhookDeliveries"]["nodes"][0]["status"] == "SUCCEEDED" {
            assert_eq!(log["data"]["webhookDeliveries"]["nodes"][0]["attempts"].as_array().unwrap().len(), 1);
            second.terminate();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not delivered after the kill: {delivery}");
}
