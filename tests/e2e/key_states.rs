//! The key lifecycle beyond generate, rotate and delete: rotation with an
//! overlap, expiry (with its notices), disable and enable, and the key
//! table's status filter and orders. Time is the server's manual clock,
//! moved by the tests.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use latchkey_domain::clock::ManualClock;
use latchkey_domain::{Cloud, NoticeKind};
use latchkey_tests::{Seeded, TestApp, TestDb, error_code, ops};
use serde_json::{Value, json};

on_both_backends!(
    overlap_keeps_the_old_secret_until_its_deadline,
    hostile_lifecycle_input_changes_nothing,
    disabled_and_expired_keys_are_refused_with_their_code,
    the_key_table_filters_by_status_and_pages_stably_in_every_order,
    expiry_notices_are_sent_once_across_replicas_and_restarts,
);

/// A server whose clock the test moves, starting at the real now.
async fn clocked(db: TestDb) -> (TestApp, Arc<ManualClock>) {
    TestApp::start_clocked(db).await
}

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("a date: {v}"))).unwrap().with_timezone(&Utc)
}

async fn code(app: &TestApp, secret: &str) -> String {
    let verdict = app.verify(secret).await;
    if verdict["valid"] == true { "VALID".into() } else { verdict["code"].as_str().unwrap().to_owned() }
}

/// Runs a lifecycle mutation; returns its payload.
async fn change(app: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    let body = app.gql(Some(token), query, variables).await;
    let data = body["data"].as_object().unwrap_or_else(|| panic!("{body}"));
    data.values().next().unwrap().clone()
}

async fn rotate(app: &TestApp, token: &str, input: Value) -> Value {
    change(app, token, ops::ROTATE_WITH, json!({ "input": input })).await
}

/// The audit entries of a key (entries made in the same millisecond have no
/// defined order, and the test clock stands still: compare them as a set).
async fn audit_actions(app: &TestApp, token: &str, key_id: &str) -> Vec<Value> {
    let body = app
        .gql(
            Some(token),
            "query($k: ID!) { apiKeyEvents(keyId: $k, first: 100) { nodes { action actorName \
             previousSecretExpiresAt oldExpiresAt newExpiresAt } } }",
            json!({ "k": key_id }),
        )
        .await;
    body["data"]["apiKeyEvents"]["nodes"].as_array().unwrap_or_else(|| panic!("{body}")).clone()
}

async fn overlap_keeps_the_old_secret_until_its_deadline(db: TestDb) {
    let (app, clock) = clocked(db).await;
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let (id, first, _) = app.generate(token, &s.integration, "Sync").await;
    assert_eq!(code(&app, &first).await, "VALID", "cached now");

    // Rotate with an hour of overlap: both secrets work.
    let start = app.now();
    let payload = rotate(&app, token, json!({ "id": id, "overlapSeconds": 3600 })).await;
    assert_eq!(payload["userErrors"], json!([]), "{payload}");
    let second = payload["secret"].as_str().unwrap().to_owned();
    let key = &payload["apiKey"];
    assert_eq!(parse(&key["previousSecretExpiresAt"]), start + Duration::hours(1));
    assert_eq!(key["previousLastFour"], &first[first.len() - 4..]);
    assert_eq!(key["status"], "ACTIVE");
    assert_eq!(code(&app, &first).await, "VALID", "the old secret works during the overlap");
    assert_eq!(code(&app, &second).await, "VALID");
    let viewer = app.gql(Some(&first), "{ viewer { apiKey { id } } }", json!({})).await;
    assert_eq!(viewer["data"]["viewer"]["apiKey"]["id"], id, "{viewer}");

    // The owner is told until when the old secret works.
    let events = app.wait_for_deliveries(2).await;
    let rotated = events.iter().find(|e| e.kind == NoticeKind::Rotated).expect("rotated mail");
    assert_eq!(rotated.previous_secret_expires_at, Some(start + Duration::hours(1)));

    // Right after the overlap the old secret is refused, even from the cache.
    clock.advance(Duration::seconds(3601));
    assert_eq!(code(&app, &first).await, "EXPIRED");
    assert_eq!(code(&app, &second).await, "VALID");
    let token = &app.token(&s.admin, Cloud::Employee);
    let now_key = app.gql(Some(token), ops::GET_KEY_STATE, json!({ "id": id })).await;
    assert_eq!(now_key["data"]["apiKey"]["previousSecretExpiresAt"], Value::Null, "{now_key}");
    assert_eq!(now_key["data"]["apiKey"]["previousLastFour"], Value::Null);

    // A second rotation during an overlap ends the older previous secret at once.
    let third =
        rotate(&app, token, json!({ "id": id, "overlapSeconds": 600 })).await["secret"].as_str().unwrap().to_owned();
    let fourth =
        rotate(&app, token, json!({ "id": id, "overlapSeconds": 600 })).await["secret"].as_str().unwrap().to_owned();
    assert_eq!(code(&app, &second).await, "INVALID", "replaced twice: no longer the key's");
    assert_eq!(code(&app, &third).await, "VALID", "the one being replaced gets the new overlap");
    assert_eq!(code(&app, &fourth).await, "VALID");

    // Ending the overlap early refuses the previous secret at once; again is an error.
    let ended = change(&app, token, ops::EXPIRE_PREVIOUS, json!({ "id": id })).await;
    assert_eq!(ended["userErrors"], json!([]), "{ended}");
    assert_eq!(ended["apiKey"]["previousSecretExpiresAt"], Value::Null);
    assert_eq!(code(&app, &third).await, "EXPIRED");
    assert_eq!(code(&app, &fourth).await, "VALID");
    let again = change(&app, token, ops::EXPIRE_PREVIOUS, json!({ "id": id })).await;
    assert_eq!(again["userErrors"][0]["code"], "INVALID", "{again}");
    assert_eq!(again["userErrors"][0]["field"], json!(["input", "id"]));

    // Without an overlap, a rotation ends the old secret at once (as before).
    let fifth = rotate(&app, token, json!({ "id": id })).await["secret"].as_str().unwrap().to_owned();
    assert_eq!(code(&app, &fourth).await, "INVALID");
    assert_eq!(code(&app, &fifth).await, "VALID");

    let actions: Vec<Value> = audit_actions(&app, token, &id).await;
    assert_eq!(names(&actions), ["GENERATED", "PREVIOUS_SECRET_EXPIRED", "ROTATED", "ROTATED", "ROTATED", "ROTATED"]);
    let overlaps: Vec<Value> =
        actions.iter().filter(|a| a["action"] == "ROTATED").map(|a| a["previousSecretExpiresAt"].clone()).collect();
    assert!(overlaps.iter().any(|o| !o.is_null() && parse(o) == start + Duration::hours(1)), "{overlaps:?}");
    assert_eq!(overlaps.iter().filter(|o| o.is_null()).count(), 1, "one rotation without overlap: {overlaps:?}");
    app.stop().await;
}

async fn hostile_lifecycle_input_changes_nothing(db: TestDb) {
    let (app, _clock) = clocked(db).await;
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let (id, secret, _) = app.generate(token, &s.integration, "Sync").await;
    let before = app.gql(Some(token), ops::GET_KEY_STATE, json!({ "id": id })).await;

    // Out of range: a user error on the field, nothing changed.
    for overlap in [-1, 604_801, i32::MAX, i32::MIN] {
        let payload = rotate(&app, token, json!({ "id": id, "overlapSeconds": overlap })).await;
        assert_eq!(payload["userErrors"][0]["code"], "INVALID", "{overlap}: {payload}");
        assert_eq!(payload["userErrors"][0]["field"], json!(["input", "overlapSeconds"]));
        assert_eq!(payload["secret"], Value::Null);
    }
    let now = app.now();
    for (expiry, why) in [
        (now - Duration::seconds(1), "in the past"),
        (now, "now"),
        (now + Duration::days(366) + Duration::seconds(1), "too far"),
    ] {
        for query in [ops::ROTATE_WITH, ops::SET_EXPIRY] {
            let payload = change(&app, token, query, json!({ "input": { "id": id, "expiresAt": iso(expiry) } })).await;
            assert_eq!(payload["userErrors"][0]["field"], json!(["input", "expiresAt"]), "{why}: {payload}");
            assert_eq!(payload["userErrors"][0]["code"], "INVALID");
        }
        let generate =
            json!({ "input": { "ownerId": s.integration.id, "description": "x", "expiresAt": iso(expiry) } });
        let body = app.gql(Some(token), ops::GENERATE, generate).await;
        assert_eq!(body["data"]["generateApiKey"]["userErrors"][0]["field"], json!(["input", "expiresAt"]), "{body}");
    }
    // Not an integer, or not a date: refused by GraphQL before anything runs.
    for bad in [json!(1.5), json!("3600"), json!(1_u64 << 40)] {
        let body =
            app.gql(Some(token), ops::ROTATE_WITH, json!({ "input": { "id": id, "overlapSeconds": bad } })).await;
        assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{bad}: {body}");
    }
    for bad in ["tomorrow", "2026-13-45T00:00:00Z", "", "1e9"] {
        let body = app.gql(Some(token), ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": bad } })).await;
        assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{bad}: {body}");
    }
    for query in [ops::DISABLE, ops::ENABLE, ops::EXPIRE_PREVIOUS] {
        for unknown in ["nope", "00000000-0000-0000-0000-000000000000"] {
            let payload = change(&app, token, query, json!({ "id": unknown })).await;
            assert_eq!(payload["userErrors"][0]["code"], "NOT_FOUND", "{payload}");
        }
    }
    assert_eq!(app.gql(Some(token), ops::GET_KEY_STATE, json!({ "id": id })).await, before, "nothing changed");
    assert_eq!(code(&app, &secret).await, "VALID");
    let count = app.gql(Some(token), "{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(count["data"]["apiKeys"]["totalCount"], 1, "no key was generated by refused input");
    assert_eq!(app.store.events_of_key(s.tenant.id, id.parse().unwrap()).await.unwrap().len(), 1, "no mail either");
    app.stop().await;
}

async fn disabled_and_expired_keys_are_refused_with_their_code(db: TestDb) {
    let (app, clock) = clocked(db).await;
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let expires = app.now() + Duration::days(10);
    let input =
        json!({ "input": { "ownerId": s.integration.id, "description": "Expiring", "expiresAt": iso(expires) } });
    let body = app.gql(Some(token), ops::GENERATE, input).await;
    let id = body["data"]["generateApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned();
    let secret = body["data"]["generateApiKey"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(code(&app, &secret).await, "VALID");

    // Disabled: refused at once (the cached verification is dropped), same secret after enabling.
    let disabled = change(&app, token, ops::DISABLE, json!({ "id": id })).await;
    assert_eq!(disabled["apiKey"]["status"], "DISABLED", "{disabled}");
    assert_eq!(code(&app, &secret).await, "DISABLED");
    let body = app.gql(Some(&secret), "{ viewer { tenant { id } } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("disabled"), "{body}");
    let again = change(&app, token, ops::DISABLE, json!({ "id": id })).await;
    assert_eq!(again["apiKey"]["status"], "DISABLED", "disabling twice is harmless");
    let enabled = change(&app, token, ops::ENABLE, json!({ "id": id })).await;
    assert_eq!(enabled["apiKey"]["status"], "ACTIVE");
    assert_eq!(code(&app, &secret).await, "VALID", "the same secret works again");

    // Disable and enable mail the owner, saying who did it (once each: the repeat changed nothing).
    let events = app.wait_for_deliveries(3).await;
    let kinds: Vec<NoticeKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [NoticeKind::Generated, NoticeKind::Disabled, NoticeKind::Enabled]);
    assert!(events[1..].iter().all(|e| e.actor_name == s.admin.name && e.owner_email == s.integration.email));

    // Expired: refused with its code, from the cache too; GraphQL says so; the owner is told.
    clock.advance(Duration::days(10) + Duration::seconds(1));
    assert_eq!(code(&app, &secret).await, "EXPIRED");
    until("the expiry notice", || app.notifier.delivered().iter().any(|e| e.kind == NoticeKind::Expired)).await;
    let body = app.gql(Some(&secret), "{ viewer { tenant { id } } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("expired"), "{body}");
    let token = &app.token(&s.admin, Cloud::Employee);
    let state = app.gql(Some(token), ops::GET_KEY_STATE, json!({ "id": id })).await;
    assert_eq!(state["data"]["apiKey"]["status"], "EXPIRED", "{state}");

    // A new expiry revives it; null means never.
    let later = app.now() + Duration::days(5);
    let set = change(&app, token, ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": iso(later) } })).await;
    assert_eq!((set["apiKey"]["status"].clone(), parse(&set["apiKey"]["expiresAt"])), (json!("ACTIVE"), later));
    assert_eq!(code(&app, &secret).await, "VALID");
    let never = change(&app, token, ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": null } })).await;
    assert_eq!(never["apiKey"]["expiresAt"], Value::Null, "{never}");

    // Shortening an expiry reaches cached verifications at once.
    let soon = app.now() + Duration::hours(1);
    change(&app, token, ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": iso(soon) } })).await;
    assert_eq!(code(&app, &secret).await, "VALID");
    clock.advance(Duration::hours(1));
    assert_eq!(code(&app, &secret).await, "EXPIRED");
    // It expired a second time: the owner is told again (and the audit log says so).
    let expiry_notices = || app.notifier.delivered().iter().filter(|e| e.kind == NoticeKind::Expired).count();
    until("the second expiry notice", || expiry_notices() == 2).await;

    // Rotating an expired key gives a working key, without expiry unless asked.
    let rotated = rotate(&app, token, json!({ "id": id, "overlapSeconds": 3600 })).await;
    assert_eq!(rotated["apiKey"]["status"], "ACTIVE", "{rotated}");
    assert_eq!(rotated["apiKey"]["expiresAt"], Value::Null);
    assert_eq!(rotated["apiKey"]["previousSecretExpiresAt"], Value::Null, "an expired secret gets no overlap");
    assert_eq!(code(&app, rotated["secret"].as_str().unwrap()).await, "VALID");
    assert_eq!(code(&app, &secret).await, "INVALID");

    let actions = audit_actions(&app, token, &id).await;
    assert_eq!(
        names(&actions),
        [
            "DISABLED",
            "ENABLED",
            "EXPIRED",
            "EXPIRED",
            "EXPIRY_CHANGED",
            "EXPIRY_CHANGED",
            "EXPIRY_CHANGED",
            "GENERATED",
            "ROTATED"
        ],
        "{actions:?}"
    );
    let by = |action: &str| actions.iter().filter(|a| a["action"] == action).cloned().collect::<Vec<_>>();
    assert_eq!(by("EXPIRED")[0]["actorName"], "Latchkey");
    let changes = by("EXPIRY_CHANGED");
    let revived = changes.iter().find(|c| !c["oldExpiresAt"].is_null() && parse(&c["oldExpiresAt"]) == expires);
    assert_eq!(revived.map(|c| parse(&c["newExpiresAt"])), Some(later), "{changes:?}");
    assert!(changes.iter().any(|c| c["newExpiresAt"].is_null()), "cleared: {changes:?}");
    app.stop().await;
}

/// The actions of audit entries, sorted.
fn names(actions: &[Value]) -> Vec<&str> {
    let mut names: Vec<&str> = actions.iter().map(|a| a["action"].as_str().unwrap()).collect();
    names.sort_unstable();
    names
}

/// Ids of the whole key table under `order`, fetched `page` at a time.
async fn all_pages(app: &TestApp, token: &str, order: Value, status: Value, page: i32) -> Vec<String> {
    let query = "query($first: Int, $after: String, $order: ApiKeyOrder, $status: [ApiKeyStatus!]) { \
        apiKeys(first: $first, after: $after, orderBy: $order, status: $status) { \
        totalCount pageInfo { hasNextPage endCursor } nodes { id } } }";
    let (mut ids, mut after) = (Vec::new(), Value::Null);
    loop {
        let variables = json!({ "first": page, "after": after, "order": order, "status": status });
        let body = app.gql(Some(token), query, variables).await;
        let keys = &body["data"]["apiKeys"];
        let nodes = keys["nodes"].as_array().unwrap_or_else(|| panic!("{body}"));
        ids.extend(nodes.iter().map(|n| n["id"].as_str().unwrap().to_owned()));
        if keys["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
        after = keys["pageInfo"]["endCursor"].clone();
    }
}

async fn the_key_table_filters_by_status_and_pages_stably_in_every_order(db: TestDb) {
    let (app, clock) = clocked(db).await;
    let s: Seeded = app.seed("Acme").await;
    let token = &s.admin_token;
    let now = app.now();
    // Five keys: expiring in 3, 1 and 2 days, never, and one disabled.
    let (mut ids, mut secrets) = (Vec::new(), Vec::new());
    for (name, days) in [("a", Some(3)), ("b", Some(1)), ("c", Some(2)), ("d", None), ("e", Some(1))] {
        let mut input = json!({ "ownerId": s.integration.id, "description": name });
        if let Some(days) = days {
            input["expiresAt"] = json!(iso(now + Duration::days(days)));
        }
        let body = app.gql(Some(token), ops::GENERATE, json!({ "input": input })).await;
        ids.push(body["data"]["generateApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned());
        secrets.push(body["data"]["generateApiKey"]["secret"].as_str().unwrap().to_owned());
        clock.advance(Duration::seconds(1));
    }
    change(&app, token, ops::DISABLE, json!({ "id": ids[4] })).await;
    let id = |i: usize| ids[i].clone();

    let asc = json!({ "field": "EXPIRES_AT", "direction": "ASC" });
    let desc = json!({ "field": "EXPIRES_AT", "direction": "DESC" });
    let all = Value::Null;
    // b and e expire together: ties go by id, in the order's direction; never-expiring keys come last.
    assert_eq!(all_pages(&app, token, asc.clone(), all.clone(), 2).await, [id(1), id(4), id(2), id(0), id(3)]);
    assert_eq!(all_pages(&app, token, desc, all.clone(), 2).await, [id(0), id(2), id(4), id(1), id(3)]);
    assert_eq!(all_pages(&app, token, Value::Null, all.clone(), 2).await, [id(4), id(3), id(2), id(1), id(0)]);
    let created_asc = json!({ "field": "CREATED_AT", "direction": "ASC" });
    assert_eq!(all_pages(&app, token, created_asc, all.clone(), 3).await, [id(0), id(1), id(2), id(3), id(4)]);

    // Use b and then c: by last use, most recent first, never-used keys last.
    for i in [1, 2] {
        assert_eq!(code(&app, &secrets[i]).await, "VALID");
        clock.advance(Duration::seconds(1));
    }
    for _ in 0..200 {
        let body = app.gql(Some(token), ops::GET_KEY, json!({ "id": id(2) })).await;
        if !body["data"]["apiKey"]["lastUsedAt"].is_null() {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let used = json!({ "field": "LAST_USED_AT" });
    assert_eq!(all_pages(&app, token, used, all.clone(), 2).await, [id(2), id(1), id(4), id(3), id(0)]);

    // One day and a bit later b (and disabled e) have expired.
    clock.advance(Duration::days(1) + Duration::minutes(1));
    let token = &app.token(&s.admin, Cloud::Employee);
    assert_eq!(all_pages(&app, token, asc.clone(), json!(["EXPIRED"]), 2).await, [id(1)]);
    assert_eq!(all_pages(&app, token, asc.clone(), json!(["DISABLED"]), 2).await, [id(4)]);
    assert_eq!(all_pages(&app, token, asc.clone(), json!(["ACTIVE"]), 1).await, [id(2), id(0), id(3)]);
    assert_eq!(all_pages(&app, token, asc.clone(), json!(["ACTIVE", "EXPIRED"]), 1).await.len(), 4);
    let body = app.gql(Some(token), "{ apiKeys(status: [EXPIRED]) { totalCount } }", json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 1);

    // A cursor of another order is refused.
    let body = app.gql(Some(token), "{ apiKeys(first: 1) { pageInfo { endCursor } } }", json!({})).await;
    let cursor = body["data"]["apiKeys"]["pageInfo"]["endCursor"].clone();
    let body = app
        .gql(
            Some(token),
            "query($a: String) { apiKeys(after: $a, orderBy: {field: EXPIRES_AT}) { totalCount } }",
            json!({ "a": cursor }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    app.stop().await;
}

/// Events of `kind` delivered by any of `notifiers`.
fn delivered(notifiers: &[&latchkey_notify::RecordingNotifier], kind: NoticeKind) -> usize {
    notifiers.iter().map(|n| n.delivered().iter().filter(|e| e.kind == kind).count()).sum()
}

/// Waits until `condition` holds (10 s at most).
async fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn expiry_notices_are_sent_once_across_replicas_and_restarts(db: TestDb) {
    let (app, clock) = clocked(db).await;
    let s = app.seed("Acme").await;
    let expires = app.now() + Duration::days(30);
    let input =
        json!({ "input": { "ownerId": s.integration.id, "description": "Nightly export", "expiresAt": iso(expires) } });
    let body = app.gql(Some(&s.admin_token), ops::GENERATE, input).await;
    let id = body["data"]["generateApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned();
    let (replica, second) = app.replica().await;
    let notifiers = || [&app.notifier, &second];

    // 7 days before: one warning between the two replicas.
    clock.advance(Duration::days(23));
    until("the 7-day warning", || delivered(&notifiers(), NoticeKind::Expiring) == 1).await;
    // 1 day before: the second.
    clock.advance(Duration::days(6));
    until("the 1-day warning", || delivered(&notifiers(), NoticeKind::Expiring) == 2).await;
    // A restart of one replica sends nothing again.
    replica.stop().await;
    let (replica, third) = app.replica().await;
    // Expired: one notice.
    clock.advance(Duration::days(1));
    until("the expiry notice", || delivered(&[&app.notifier, &second, &third], NoticeKind::Expired) == 1).await;
    // Each replica scans every 100 ms: many passes later, still once each.
    tokio::time::sleep(StdDuration::from_millis(800)).await;
    let all = [&app.notifier, &second, &third];
    assert_eq!((delivered(&all, NoticeKind::Expiring), delivered(&all, NoticeKind::Expired)), (2, 1));
    let stored = app.store.events_of_key(s.tenant.id, id.parse().unwrap()).await.unwrap();
    let kinds: Vec<&str> = stored.iter().map(|e| e.event.kind.as_str()).collect();
    assert_eq!(kinds, ["generated", "expiring", "expiring", "expired"]);

    // The mail: description, last four, the date, the link; never a secret.
    let warning = all.iter().flat_map(|n| n.delivered()).find(|e| e.kind == NoticeKind::Expiring).unwrap();
    assert_eq!(warning.key_expires_at, Some(parse(&json!(iso(expires)))));
    assert_eq!(warning.key_description, "Nightly export");
    let settings =
        latchkey_notify::mail::MailSettings::new("Latchkey <keys@latchkey.example>", "https://admin.example").unwrap();
    let message = String::from_utf8(latchkey_notify::mail::compose(&warning, &settings).unwrap().formatted()).unwrap();
    assert!(message.contains("Nightly export") && message.contains(&warning.key_last_four), "{message}");
    assert!(message.contains("https://admin.example/settings/integrations/api"));
    assert!(!message.contains("lk_"), "no secret in mail");

    // A new expiry date re-arms the notices.
    let token = app.token(&s.admin, Cloud::Employee);
    let next = app.now() + Duration::days(3);
    change(&app, &token, ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": iso(next) } })).await;
    until("the re-armed warning", || delivered(&[&app.notifier, &second, &third], NoticeKind::Expiring) == 3).await;
    replica.stop().await;
    app.stop().await;
}

/// What the replica at `base` answers for `secret`.
async fn code_at(app: &TestApp, base: &str, secret: &str) -> String {
    let resp = app.http.post(format!("{base}/v1/keys/verify")).json(&json!({ "key": secret })).send().await.unwrap();
    let verdict: Value = resp.json().await.unwrap();
    if verdict["valid"] == true { "VALID".into() } else { verdict["code"].as_str().unwrap().to_owned() }
}

/// Waits until the replica at `base` answers `expected` for `secret`; returns how long that took.
async fn reaches(app: &TestApp, base: &str, secret: &str, expected: &str) -> StdDuration {
    let started = std::time::Instant::now();
    while started.elapsed() < StdDuration::from_secs(5) {
        if code_at(app, base, secret).await == expected {
            return started.elapsed();
        }
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    panic!("{base} never answered {expected}");
}

/// Replicas share a PostgreSQL database and hear each other's changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_changes_reach_another_replica_within_a_second() {
    let Some(db) = TestDb::new(latchkey_tests::Backend::Postgres).await else { return };
    let (app, clock) = clocked(db).await;
    let (replica, _) = app.replica().await;
    let other = replica.url();
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let (id, first, _) = app.generate(token, &s.integration, "Sync").await;
    let second =
        rotate(&app, token, json!({ "id": id, "overlapSeconds": 3600 })).await["secret"].as_str().unwrap().to_owned();
    // Both cached on the other replica.
    assert_eq!(code_at(&app, &other, &first).await, "VALID");
    assert_eq!(code_at(&app, &other, &second).await, "VALID");

    change(&app, token, ops::EXPIRE_PREVIOUS, json!({ "id": id })).await;
    let took = reaches(&app, &other, &first, "EXPIRED").await;
    assert!(took < StdDuration::from_secs(1), "the early end took {took:?}");

    change(&app, token, ops::DISABLE, json!({ "id": id })).await;
    let took = reaches(&app, &other, &second, "DISABLED").await;
    assert!(took < StdDuration::from_secs(1), "disabling took {took:?}");
    change(&app, token, ops::ENABLE, json!({ "id": id })).await;
    assert_eq!(code_at(&app, &other, &second).await, "VALID");

    // A shorter expiry reaches the other replica's cached verification too.
    let soon = app.now() + Duration::minutes(5);
    change(&app, token, ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": iso(soon) } })).await;
    assert_eq!(code_at(&app, &other, &second).await, "VALID");
    clock.advance(Duration::minutes(5));
    let took = reaches(&app, &other, &second, "EXPIRED").await;
    assert!(took < StdDuration::from_secs(1), "expiry took {took:?}");
    replica.stop().await;
    app.stop().await;
}
