//! Keys that rotate themselves (`POST /v1/keys/rotate`) and overlaps that
//! end on the new secret's first use, through HTTP and GraphQL: the happy
//! path, every refusal (not allowed, previous secret, rotated away, the
//! per-minute limit, the policy's overlap, hostile bodies), concurrent
//! rotations of one key, and the end of an overlap reaching another replica.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};
use latchkey_domain::NoticeKind;
use latchkey_tests::{Seeded, TestApp, TestDb, ops};
use serde_json::{Value, json};

on_both_backends!(
    a_key_rotates_itself_within_its_rules,
    concurrent_self_rotations_of_one_key_have_exactly_one_winner,
    the_overlap_ends_when_the_new_secret_is_first_used,
);

/// Generates a key for the integration user allowed to rotate itself (or
/// not), restricted to `users:read`; returns (id, secret).
async fn key(app: &TestApp, s: &Seeded, self_rotation: bool) -> (String, String) {
    let input = json!({ "ownerId": s.integration.id, "description": "Rotates itself", "selfRotation": self_rotation,
        "restrictions": { "permissions": ["users:read"] } });
    let body = app
        .gql(
            Some(&app.token(&s.admin, latchkey_domain::Cloud::Employee)),
            ops::GENERATE_RESTRICTED,
            json!({ "input": input }),
        )
        .await;
    let made = &body["data"]["generateApiKey"];
    assert_eq!(made["userErrors"], json!([]), "{body}");
    (made["apiKey"]["id"].as_str().unwrap().to_owned(), made["secret"].as_str().unwrap().to_owned())
}

/// `POST /v1/keys/rotate` at `base` with `secret` and `body`: (status, Retry-After, body).
async fn rotate_at(app: &TestApp, base: &str, secret: Option<&str>, body: &str) -> (u16, Option<String>, Value) {
    let mut req = app.http.post(format!("{base}/v1/keys/rotate")).header("content-type", "application/json");
    if let Some(secret) = secret {
        req = req.bearer_auth(secret);
    }
    let resp = req.body(body.to_owned()).send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

async fn rotate(app: &TestApp, secret: &str, body: &str) -> (u16, Option<String>, Value) {
    rotate_at(app, &app.url, Some(secret), body).await
}

async fn code_at(app: &TestApp, base: &str, secret: &str) -> String {
    let verdict = app.verify_on(base, secret).await;
    if verdict["valid"] == true { "VALID".into() } else { verdict["code"].as_str().unwrap().to_owned() }
}

async fn a_key_rotates_itself_within_its_rules(db: TestDb) {
    let (app, clock) = TestApp::start_clocked(db).await;
    let s = app.seed("Acme").await;
    let (id, first) = key(&app, &s, true).await;
    let last_four = &first[first.len() - 4..];
    assert_eq!(code_at(&app, &app.url, &first).await, "VALID");

    let (status, _, body) = rotate(&app, &first, r#"{"overlapSeconds": 3600}"#).await;
    assert_eq!(status, 201, "{body}");
    let second = body["key"].as_str().unwrap().to_owned();
    assert!(second.starts_with("lk_") && second != first);
    assert_eq!(body["keyId"], id);
    assert!(body["expiresAt"].is_null(), "no policy: the key keeps never expiring");
    let until: DateTime<Utc> = body["previousSecretExpiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(until, app.now() + Duration::seconds(3600));
    // Both work during the overlap; the new one with the key's restrictions.
    assert_eq!(code_at(&app, &app.url, &first).await, "VALID");
    let verdict = app.verify(&second).await;
    assert_eq!((verdict["valid"].clone(), verdict["permissions"].clone()), (json!(true), json!(["users:read"])));
    // The owner is mailed; the key is the actor.
    let mailed = app.wait_for_deliveries(2).await;
    let rotated = mailed.iter().find(|n| n.kind == NoticeKind::Rotated).expect("a rotation notice");
    assert_eq!(
        (rotated.owner_id, rotated.actor_name.as_str()),
        (s.integration.id, &*format!("API key ending in {last_four}"))
    );
    let token = app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let events = app
        .gql(
            Some(&token),
            "query($k: ID!) { apiKeyEvents(keyId: $k) { nodes { action actorName } } apiKey(id: $k) { selfRotation } }",
            json!({ "k": id }),
        )
        .await;
    assert_eq!(
        events["data"]["apiKeyEvents"]["nodes"][0],
        json!({ "action": "ROTATED", "actorName": format!("API key ending in {last_four}") })
    );
    assert_eq!(events["data"]["apiKey"]["selfRotation"], true);

    // The previous secret, still working, may not rotate; nor may the new one within a minute.
    let (status, _, body) = rotate(&app, &first, "").await;
    assert_eq!((status, body["error"]["code"].clone()), (403, json!("FORBIDDEN")), "{body}");
    let (status, retry, body) = rotate(&app, &second, "{}").await;
    assert_eq!((status, body["error"]["code"].clone()), (429, json!("RATE_LIMIT_EXCEEDED")), "{body}");
    assert_eq!(retry.as_deref(), Some("60"));
    clock.advance(Duration::seconds(45));
    assert_eq!(rotate(&app, &second, "{}").await.1.as_deref(), Some("15"));

    // Hostile bodies and credentials change nothing.
    clock.advance(Duration::seconds(16));
    for bad in [
        r#"{"overlapSeconds": -1}"#,
        r#"{"overlapSeconds": 604801}"#,
        r#"{"overlapSeconds": "x"}"#,
        "[1]",
        r#"{"extra": 1}"#,
    ] {
        let (status, _, body) = rotate(&app, &second, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(!body.to_string().contains("lk_"), "no secret in an error: {body}");
    }
    assert_eq!(rotate_at(&app, &app.url, None, "{}").await.0, 401);
    assert_eq!(rotate(&app, "lk_not_a_key", "{}").await.0, 401);
    // The policy bounds the overlap.
    let policy = json!({ "input": { "requireExpiry": false, "requireRestrictions": false, "maxOverlapSeconds": 600 } });
    let body = app.gql(Some(&token), "mutation($input: UpdateTenantKeyPolicyInput!) { updateTenantKeyPolicy(input: $input) { userErrors { code } } }", policy).await;
    assert_eq!(body["data"]["updateTenantKeyPolicy"]["userErrors"], json!([]), "{body}");
    let (status, _, body) = rotate(&app, &second, r#"{"overlapSeconds": 3600}"#).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("maxOverlapSeconds"), "{body}");
    assert_eq!(code_at(&app, &app.url, &second).await, "VALID", "nothing changed");

    // No overlap: the rotated-away secret stops and cannot rotate again.
    let (status, _, body) = rotate(&app, &second, "").await;
    assert_eq!(status, 201, "{body}");
    let third = body["key"].as_str().unwrap().to_owned();
    assert!(body["previousSecretExpiresAt"].is_null());
    assert_eq!(code_at(&app, &app.url, &second).await, "INVALID");
    clock.advance(Duration::seconds(61));
    assert_eq!(rotate(&app, &second, "").await.0, 401);
    // An admin forbids it: refused, and the key keeps working.
    let forbid = "mutation($id: ID!) { setApiKeySelfRotation(input: {id: $id, selfRotation: false}) { apiKey { selfRotation } userErrors { code } } }";
    let body = app.gql(Some(&app.token(&s.admin, latchkey_domain::Cloud::Employee)), forbid, json!({ "id": id })).await;
    assert_eq!(body["data"]["setApiKeySelfRotation"]["apiKey"]["selfRotation"], false, "{body}");
    let (status, _, body) = rotate(&app, &third, "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("selfRotation"), "{body}");
    // A key never allowed to, likewise.
    let (_, plain) = key(&app, &s, false).await;
    assert_eq!(rotate(&app, &plain, "").await.0, 403);
    assert_eq!(code_at(&app, &app.url, &third).await, "VALID");
    app.stop().await;
}

async fn concurrent_self_rotations_of_one_key_have_exactly_one_winner(app: TestApp) {
    let s = app.seed("Acme").await;
    let (_, secret) = key(&app, &s, true).await;
    let attempts = (0..8).map(|_| rotate(&app, &secret, r#"{"overlapSeconds": 60}"#));
    let answers = futures_util::future::join_all(attempts).await;
    let winners: Vec<&Value> = answers.iter().filter(|(status, ..)| *status == 201).map(|(_, _, body)| body).collect();
    assert_eq!(winners.len(), 1, "{answers:?}");
    for (status, _, body) in answers.iter().filter(|(status, ..)| *status != 201) {
        assert!([403, 429].contains(status), "{status}: {body}");
    }
    let new = winners[0]["key"].as_str().unwrap();
    assert_eq!(code_at(&app, &app.url, new).await, "VALID", "the winner's secret works");
    assert_eq!(code_at(&app, &app.url, &secret).await, "VALID", "the old one in its overlap");
    app.stop().await;
}

async fn the_overlap_ends_when_the_new_secret_is_first_used(app: TestApp) {
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let (id, old, _) = app.generate(token, &s.integration, "Sync").await;
    // Replicas share revocations through PostgreSQL; SQLite serves one process.
    let replica = match app.db.backend {
        latchkey_tests::Backend::Postgres => Some(app.replica().await.0),
        latchkey_tests::Backend::Sqlite => None,
    };
    let other = replica.as_ref().map_or_else(|| app.url.clone(), |r| r.url());
    assert_eq!(code_at(&app, &other, &old).await, "VALID", "cached on the other replica");
    let input = json!({ "input": { "id": id, "overlapSeconds": 3600, "endOverlapOnFirstUse": true } });
    let body = app.gql(Some(token), ops::ROTATE_WITH, input).await;
    let new = body["data"]["rotateApiKey"]["secret"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
    for base in [&app.url, &other] {
        assert_eq!(code_at(&app, base, &old).await, "VALID", "the overlap holds until the new secret is used");
    }
    let used = Instant::now();
    assert_eq!(code_at(&app, &app.url, &new).await, "VALID");
    while code_at(&app, &other, &old).await != "EXPIRED" {
        assert!(used.elapsed() < StdDuration::from_secs(1), "the other replica still accepts the old secret");
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    assert_eq!(code_at(&app, &app.url, &old).await, "EXPIRED");
    assert_eq!(code_at(&app, &other, &new).await, "VALID");
    let events = app
        .gql(
            Some(token),
            "query($k: ID!) { apiKeyEvents(keyId: $k) { nodes { action actorName reason } } }",
            json!({ "k": id }),
        )
        .await;
    let ended: Vec<&Value> = events["data"]["apiKeyEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "PREVIOUS_SECRET_EXPIRED")
        .collect();
    assert_eq!(
        ended,
        [&json!({ "action": "PREVIOUS_SECRET_EXPIRED", "actorName": "Latchkey", "reason": "NEW_SECRET_USED" })]
    );
    if let Some(replica) = replica {
        replica.stop().await;
    }
    app.stop().await;
}
