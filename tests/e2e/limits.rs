//! Rate limits and credits through the public surface: verification (body
//! and forward auth), GraphQL and SCIM requests made with a limited key, the
//! mutations that set them, owner mail, and several replicas sharing one
//! budget.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use latchkey_domain::clock::ManualClock;
use latchkey_domain::{Cloud, NoticeKind};
use latchkey_tests::{AppOptions, Backend, Seeded, TestApp, TestDb, error_code, ops};
use serde_json::{Value, json};

on_both_backends!(
    a_rate_limit_admits_its_limit_per_window_and_refusals_spend_nothing,
    credits_are_spent_by_cost_refilled_at_midnight_and_topped_up,
    owner_limits_are_shared_by_every_key_and_a_transfer_moves_the_budget,
    hostile_limit_input_is_refused_on_its_field_and_changes_nothing,
    forward_auth_spends_its_cost_and_tells_the_tightest_limit,
    graphql_and_scim_requests_spend_one_and_are_refused_with_the_codes,
    concurrent_top_ups_add_up_exactly,
    low_and_spent_credits_are_mailed_once_per_period,
);

/// A server whose clock the test moves, at 10:10:00 UTC of today.
async fn app_with_clock(db: TestDb) -> (TestApp, Arc<ManualClock>) {
    let start = Utc::now().duration_trunc(Span::days(1)).unwrap() + Span::hours(10) + Span::minutes(10);
    let clock = Arc::new(ManualClock::new(start));
    let app = TestApp::start_with(db, AppOptions { clock: Some(clock.clone()), ..AppOptions::default() }).await;
    (app, clock)
}

/// Generates a key for the integration user with `extra` input fields; returns (id, secret).
async fn generate_limited(app: &TestApp, token: &str, s: &Seeded, extra: Value) -> (String, String) {
    let mut input = json!({ "ownerId": s.integration.id, "description": "Limited" });
    input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let body = app.gql(Some(token), ops::GENERATE_LIMITED, json!({ "input": input })).await;
    let payload = &body["data"]["generateApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    (payload["apiKey"]["id"].as_str().unwrap().to_owned(), payload["secret"].as_str().unwrap().to_owned())
}

/// A user error's field as GraphQL gives it: its path in the input.
fn field_path(field: &str) -> Value {
    json!(std::iter::once("input").chain(field.split('.')).collect::<Vec<_>>())
}

/// `POST /v1/keys/verify` with a body; the status and the answer.
async fn verify_with(app: &TestApp, base: &str, body: Value) -> (u16, Value) {
    let resp = app.http.post(format!("{base}/v1/keys/verify")).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn spend(app: &TestApp, key: &str, cost: i64) -> Value {
    let (status, body) = verify_with(app, &app.url, json!({ "key": key, "cost": cost })).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn key_limits(app: &TestApp, token: &str, id: &str) -> Value {
    let body = app.gql(Some(token), ops::GET_KEY_LIMITS, json!({ "id": id })).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["apiKey"].clone()
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn a_rate_limit_admits_its_limit_per_window_and_refusals_spend_nothing(db: TestDb) {
    let (app, clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let limits = json!([{ "name": "burst", "limit": 3, "periodSeconds": 60 }, { "name": "hourly", "limit": 5, "periodSeconds": 3600 }]);
    let (id, key) = generate_limited(&app, &token, &s, json!({ "rateLimits": limits })).await;
    assert_eq!(key_limits(&app, &token, &id).await["rateLimits"], limits);
    let minute_end = rfc3339(app.now().duration_trunc(Span::minutes(1)).unwrap() + Span::minutes(1));

    let first = spend(&app, &key, 1).await;
    assert_eq!(first["valid"], true, "{first}");
    assert_eq!(first["limits"][0], json!({ "name": "burst", "limit": 3, "remaining": 2, "resetAt": minute_end }));
    assert_eq!(first["limits"][1]["remaining"], 4);
    assert!(first.get("credits").is_none(), "no credits, none shown: {first}");
    // A cost of 0 checks without spending; a cost over what is left is refused and spends nothing.
    assert_eq!(spend(&app, &key, 0).await["limits"][0]["remaining"], 2);
    let over = spend(&app, &key, 3).await;
    assert_eq!(over["code"], "RATE_LIMIT_EXCEEDED", "{over}");
    assert_eq!(over["limit"], json!({ "name": "burst", "limit": 3, "remaining": 0, "resetAt": minute_end }));
    assert_eq!(spend(&app, &key, 2).await["limits"][0]["remaining"], 0, "the refusal spent nothing");
    assert_eq!(spend(&app, &key, 1).await["code"], "RATE_LIMIT_EXCEEDED");

    // The next minute the burst limit is whole again; the hourly one has 2 left.
    clock.advance(Span::minutes(1));
    let next = spend(&app, &key, 2).await;
    assert_eq!((next["valid"].clone(), next["limits"][1]["remaining"].clone()), (json!(true), json!(0)), "{next}");
    let hourly = spend(&app, &key, 1).await;
    assert_eq!(
        (hourly["code"].clone(), hourly["limit"]["name"].clone()),
        (json!("RATE_LIMIT_EXCEEDED"), json!("hourly"))
    );

    // Refusals are usage outcomes, and metrics count them by code.
    let usage = "query($id: ID!, $from: DateTime!, $to: DateTime!) { apiKey(id: $id) { usage(from: $from, to: $to, \
        granularity: HOUR) { buckets { byOutcome { outcome count } } } } }";
    let hour = app.now().duration_trunc(Span::hours(1)).unwrap();
    let vars = json!({ "id": id, "from": hour, "to": hour + Span::hours(1) });
    let mut counted = Value::Null;
    for _ in 0..100 {
        let body = app.gql(Some(&token), usage, vars.clone()).await;
        counted = body["data"]["apiKey"]["usage"]["buckets"][0]["byOutcome"].clone();
        if counted
            .as_array()
            .is_some_and(|c| c.iter().any(|o| o["outcome"] == "RATE_LIMIT_EXCEEDED" && o["count"] == 3))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let of = |outcome: &str| {
        counted.as_array().unwrap().iter().find(|o| o["outcome"] == outcome).map(|o| o["count"].clone())
    };
    assert_eq!(of("RATE_LIMIT_EXCEEDED"), Some(json!(3)), "{counted}");
    assert_eq!(of("VALID"), Some(json!(4)), "{counted}");
}

async fn credits_are_spent_by_cost_refilled_at_midnight_and_topped_up(db: TestDb) {
    let (app, clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let credits = json!({ "remaining": 5, "refill": { "amount": 6, "interval": "DAILY" } });
    let (id, key) = generate_limited(&app, &token, &s, json!({ "credits": credits })).await;

    assert_eq!(spend(&app, &key, 2).await["credits"], json!({ "remaining": 3 }));
    let short = spend(&app, &key, 4).await;
    assert_eq!(short, json!({ "valid": false, "code": "USAGE_EXCEEDED", "remaining": 3 }));
    assert_eq!(spend(&app, &key, 3).await["credits"]["remaining"], 0, "the refusal spent nothing");
    assert_eq!(spend(&app, &key, 1).await["code"], "USAGE_EXCEEDED");
    assert_eq!(spend(&app, &key, 0).await["valid"], true, "a check costs nothing");
    assert_eq!(key_limits(&app, &token, &id).await["credits"]["remaining"], 0);

    // A top-up makes it work at once.
    let body = app.gql(Some(&token), ops::ADD_CREDITS, json!({ "id": id, "amount": 2 })).await;
    assert_eq!(body["data"]["addApiKeyCredits"]["apiKey"]["credits"]["remaining"], 2, "{body}");
    assert_eq!(spend(&app, &key, 2).await["credits"]["remaining"], 0);

    // At 00:00 UTC the credits are set to the refill's amount.
    let midnight = app.now().duration_trunc(Span::days(1)).unwrap() + Span::days(1);
    clock.advance(midnight - app.now() - Span::seconds(1));
    assert_eq!(spend(&app, &key, 1).await["code"], "USAGE_EXCEEDED", "not yet");
    clock.advance(Span::seconds(1));
    let token = app.token(&s.admin, Cloud::Employee);
    let seen = key_limits(&app, &token, &id).await;
    assert_eq!(seen["credits"]["remaining"], 6, "{seen}");
    assert_eq!(seen["credits"]["refill"], json!({ "amount": 6, "interval": "DAILY", "day": null }));
    assert_eq!(spend(&app, &key, 4).await["credits"]["remaining"], 2);
    let seen = key_limits(&app, &token, &id).await;
    let refilled_at: DateTime<Utc> = seen["credits"]["lastRefilledAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(refilled_at, midnight, "{seen}");
    assert_eq!(seen["credits"]["remaining"], 2);

    // Replaced through updateApiKeyLimits: a new period with the new credits; null is unlimited.
    let input = json!({ "id": id, "credits": { "remaining": 1 } });
    let body = app.gql(Some(&token), ops::UPDATE_LIMITS, json!({ "input": input })).await;
    assert_eq!(body["data"]["updateApiKeyLimits"]["apiKey"]["credits"]["remaining"], 1, "{body}");
    assert_eq!(spend(&app, &key, 2).await["code"], "USAGE_EXCEEDED");
    let body = app.gql(Some(&token), ops::UPDATE_LIMITS, json!({ "input": { "id": id, "credits": null } })).await;
    assert_eq!(body["data"]["updateApiKeyLimits"]["apiKey"]["credits"], Value::Null, "{body}");
    let free = spend(&app, &key, 1000).await;
    assert_eq!((free["valid"].clone(), free.get("credits")), (json!(true), None), "{free}");
}

async fn owner_limits_are_shared_by_every_key_and_a_transfer_moves_the_budget(db: TestDb) {
    let (app, _clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (first_id, first) = generate_limited(&app, &token, &s, json!({})).await;
    let (_, second) = generate_limited(&app, &token, &s, json!({})).await;
    let limits = json!([{ "name": "shared", "limit": 3, "periodSeconds": 60 }]);
    let input = json!({ "ownerId": s.integration.id, "rateLimits": limits });
    let body = app.gql(Some(&token), ops::SET_OWNER_LIMITS, json!({ "input": input })).await;
    assert_eq!(body["data"]["setOwnerRateLimits"]["user"]["rateLimits"], limits, "{body}");
    let owner = app
        .gql(
            Some(&token),
            "query($id: ID!) { apiKey(id: $id) { owner { rateLimits { name } } } }",
            json!({ "id": first_id }),
        )
        .await;
    assert_eq!(owner["data"]["apiKey"]["owner"]["rateLimits"], json!([{ "name": "shared" }]));

    // Two keys, one budget: three requests in all.
    assert_eq!(spend(&app, &first, 1).await["limits"][0]["remaining"], 2);
    assert_eq!(spend(&app, &second, 1).await["limits"][0]["remaining"], 1);
    assert_eq!(spend(&app, &first, 1).await["valid"], true);
    let refused = spend(&app, &second, 1).await;
    assert_eq!(
        (refused["code"].clone(), refused["limit"]["name"].clone()),
        (json!("RATE_LIMIT_EXCEEDED"), json!("shared"))
    );

    // Given to another owner, the key leaves the shared budget.
    let transfer =
        "mutation($id: ID!, $owner: ID!) { transferApiKey(input: {id: $id, ownerId: $owner}) { userErrors { code } } }";
    let body = app.gql(Some(&token), transfer, json!({ "id": first_id, "owner": s.other_admin.id })).await;
    assert_eq!(body["data"]["transferApiKey"]["userErrors"], json!([]), "{body}");
    let moved = spend(&app, &first, 1).await;
    assert_eq!((moved["valid"].clone(), moved.get("limits")), (json!(true), None), "{moved}");
    assert_eq!(spend(&app, &second, 1).await["code"], "RATE_LIMIT_EXCEEDED", "the old owner's budget is still spent");

    // Cleared, the owner's keys are unlimited again.
    let body = app
        .gql(Some(&token), ops::SET_OWNER_LIMITS, json!({ "input": { "ownerId": s.integration.id, "rateLimits": [] } }))
        .await;
    assert_eq!(body["data"]["setOwnerRateLimits"]["user"]["rateLimits"], json!([]), "{body}");
    assert_eq!(spend(&app, &second, 1).await["valid"], true);
}

async fn hostile_limit_input_is_refused_on_its_field_and_changes_nothing(db: TestDb) {
    let app = TestApp::start_on(db).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let limit = |name: &str, limit: i64, period: i64| json!({ "name": name, "limit": limit, "periodSeconds": period });
    let refusals = [
        (json!({ "rateLimits": [limit("a", 0, 60)] }), "rateLimits.limit"),
        (json!({ "rateLimits": [limit("a", 1_000_000_001, 60)] }), "rateLimits.limit"),
        (json!({ "rateLimits": [limit("a", -5, 60)] }), "rateLimits.limit"),
        (json!({ "rateLimits": [limit("a", 1, 0)] }), "rateLimits.periodSeconds"),
        (json!({ "rateLimits": [limit("a", 1, 86_401)] }), "rateLimits.periodSeconds"),
        (json!({ "rateLimits": [limit("Burst!", 1, 1)] }), "rateLimits.name"),
        (json!({ "rateLimits": [limit("a", 1, 1), limit("a", 2, 2)] }), "rateLimits.name"),
        (json!({ "rateLimits": (0..6).map(|n| limit(&format!("l{n}"), 1, 1)).collect::<Vec<_>>() }), "rateLimits"),
        (json!({ "credits": { "remaining": -1 } }), "credits.remaining"),
        (json!({ "credits": { "remaining": 1_000_000_001 } }), "credits.remaining"),
        (
            json!({ "credits": { "remaining": 1, "refill": { "amount": 5, "interval": "MONTHLY", "day": 0 } } }),
            "credits.refill.day",
        ),
        (
            json!({ "credits": { "remaining": 1, "refill": { "amount": 5, "interval": "MONTHLY", "day": 32 } } }),
            "credits.refill.day",
        ),
        (
            json!({ "credits": { "remaining": 1, "refill": { "amount": 0, "interval": "DAILY" } } }),
            "credits.refill.amount",
        ),
    ];
    for (extra, field) in &refusals {
        let mut input = json!({ "ownerId": s.integration.id, "description": "Hostile" });
        input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let body = app.gql(Some(&token), ops::GENERATE_LIMITED, json!({ "input": input })).await;
        let payload = &body["data"]["generateApiKey"];
        assert_eq!(payload["apiKey"], Value::Null, "{extra}: {body}");
        assert_eq!(payload["userErrors"][0]["field"], field_path(field), "{extra}: {body}");
        assert_eq!(payload["userErrors"][0]["code"], "INVALID", "{extra}: {body}");
    }
    assert_eq!(app.db.count("SELECT count(*) FROM api_keys").await, 0, "nothing was generated");

    // The same refusals on a change leave the key as it was.
    let credits = json!({ "remaining": 10, "refill": { "amount": 10, "interval": "MONTHLY", "day": 31 } });
    let (id, key) =
        generate_limited(&app, &token, &s, json!({ "rateLimits": [limit("burst", 5, 60)], "credits": credits })).await;
    let before = key_limits(&app, &token, &id).await;
    assert_eq!(before["credits"]["refill"], json!({ "amount": 10, "interval": "MONTHLY", "day": 31 }));
    for (extra, field) in &refusals {
        let mut input = json!({ "id": id });
        input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let body = app.gql(Some(&token), ops::UPDATE_LIMITS, json!({ "input": input })).await;
        assert_eq!(body["data"]["updateApiKeyLimits"]["userErrors"][0]["field"], field_path(field), "{extra}: {body}");
        let body = app
            .gql(
                Some(&token),
                ops::SET_OWNER_LIMITS,
                json!({ "input": { "ownerId": s.integration.id, "rateLimits": extra["rateLimits"].clone() } }),
            )
            .await;
        if extra.get("rateLimits").is_some() {
            assert_eq!(
                body["data"]["setOwnerRateLimits"]["userErrors"][0]["field"],
                field_path(field),
                "{extra}: {body}"
            );
        }
    }
    for amount in [0, -1, 1_000_000_001] {
        let body = app.gql(Some(&token), ops::ADD_CREDITS, json!({ "id": id, "amount": amount })).await;
        assert_eq!(
            body["data"]["addApiKeyCredits"]["userErrors"][0]["field"],
            field_path("amount"),
            "{amount}: {body}"
        );
    }
    let (unlimited_id, _) = generate_limited(&app, &token, &s, json!({})).await;
    let body = app.gql(Some(&token), ops::ADD_CREDITS, json!({ "id": unlimited_id, "amount": 5 })).await;
    assert_eq!(body["data"]["addApiKeyCredits"]["userErrors"][0]["field"], field_path("id"), "{body}");
    assert_eq!(key_limits(&app, &token, &id).await, before, "nothing changed");
    let owner = app
        .gql(Some(&token), "query($id: ID!) { apiKey(id: $id) { owner { rateLimits { name } } } }", json!({ "id": id }))
        .await;
    assert_eq!(owner["data"]["apiKey"]["owner"]["rateLimits"], json!([]));

    // A cost that is not an integer from 0 to 1000 is a malformed body, and spends nothing.
    for cost in [json!(-1), json!(1.5), json!("1"), json!(1001), json!(1e20), json!(null), json!([1])] {
        let (status, body) = verify_with(&app, &app.url, json!({ "key": key, "cost": cost })).await;
        if cost.is_null() {
            assert_eq!(status, 200, "null is no cost: {body}");
            continue;
        }
        assert_eq!(status, 400, "{cost}: {body}");
        assert_eq!(body["error"]["code"], "BAD_REQUEST", "{cost}: {body}");
    }
    assert_eq!(spend(&app, &key, 0).await["credits"]["remaining"], 9, "only the null-cost request spent");
}

async fn forward_auth_spends_its_cost_and_tells_the_tightest_limit(db: TestDb) {
    let (app, _clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let limits = json!([{ "name": "burst", "limit": 10, "periodSeconds": 60 }, { "name": "daily", "limit": 1000, "periodSeconds": 86400 }]);
    let (_, key) =
        generate_limited(&app, &token, &s, json!({ "rateLimits": limits, "credits": { "remaining": 100 } })).await;
    let auth = |cost: Option<&str>| {
        let mut request = app.http.get(format!("{}/v1/auth", app.url)).bearer_auth(&key);
        if let Some(cost) = cost {
            request = request.header("x-latchkey-cost", cost);
        }
        request.send()
    };
    let seconds_left = 60 - (app.now().timestamp() % 60);
    let ok = auth(Some("4")).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["ratelimit-policy"], "\"burst\";q=10;w=60");
    assert_eq!(ok.headers()["ratelimit"].to_str().unwrap(), format!("\"burst\";r=6;t={seconds_left}"));
    assert_eq!(
        auth(None).await.unwrap().headers()["ratelimit"].to_str().unwrap(),
        format!("\"burst\";r=5;t={seconds_left}")
    );
    let over = auth(Some("6")).await.unwrap();
    assert_eq!(over.status(), 429);
    assert_eq!(over.headers()["x-latchkey-code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(over.headers()["retry-after"].to_str().unwrap(), seconds_left.to_string());
    assert_eq!(over.headers()["ratelimit"].to_str().unwrap(), format!("\"burst\";r=0;t={seconds_left}"));
    let body: Value = over.json().await.unwrap();
    assert_eq!(body["limit"]["name"], "burst");
    for bad in ["-1", "1.5", "one", "1001", ""] {
        let resp = auth(Some(bad)).await.unwrap();
        assert_eq!(resp.status(), 400, "{bad:?}");
    }
    // Out of credits: 429 too, with Retry-After.
    let body = spend(&app, &key, 5).await;
    assert_eq!(body["credits"]["remaining"], 100 - 4 - 1 - 5, "{body}");
    let (_, poor) = generate_limited(&app, &token, &s, json!({ "credits": { "remaining": 1 } })).await;
    let first = app.http.get(format!("{}/v1/auth", app.url)).bearer_auth(&poor).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("ratelimit").is_none(), "no rate limit, no header");
    let spent = app.http.get(format!("{}/v1/auth", app.url)).bearer_auth(&poor).send().await.unwrap();
    assert_eq!(spent.status(), 429);
    assert_eq!(spent.headers()["x-latchkey-code"], "USAGE_EXCEEDED");
    assert!(spent.headers().contains_key("retry-after"));
}

async fn graphql_and_scim_requests_spend_one_and_are_refused_with_the_codes(db: TestDb) {
    let (app, _clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (_, key) = generate_limited(
        &app,
        &token,
        &s,
        json!({ "rateLimits": [{ "name": "api", "limit": 2, "periodSeconds": 60 }] }),
    )
    .await;
    for _ in 0..2 {
        let body = app.gql(Some(&key), "{ viewer { apiKey { id } } }", json!({})).await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let refused = app.gql(Some(&key), "{ viewer { apiKey { id } } }", json!({})).await;
    assert_eq!(error_code(&refused), "RATE_LIMIT_EXCEEDED", "{refused}");

    let input = json!({ "restrictions": { "permissions": ["scim"] }, "credits": { "remaining": 1 } });
    let (_, idp) = generate_limited(&app, &token, &s, input).await;
    let users = |key: String| app.http.get(format!("{}/scim/v2/Users", app.url)).bearer_auth(key).send();
    assert_eq!(users(idp.clone()).await.unwrap().status(), 200);
    let spent = users(idp.clone()).await.unwrap();
    assert_eq!(spent.status(), 429);
    let body: Value = spent.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("credits"), "{body}");
}

async fn concurrent_top_ups_add_up_exactly(db: TestDb) {
    let app = Arc::new(TestApp::start_on(db).await);
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (id, key) = generate_limited(&app, &token, &s, json!({ "credits": { "remaining": 3 } })).await;
    let mut adds = Vec::new();
    for _ in 0..20 {
        let (app, token, id) = (app.clone(), token.clone(), id.clone());
        adds.push(tokio::spawn(async move {
            let body = app.gql(Some(&token), ops::ADD_CREDITS, json!({ "id": id, "amount": 7 })).await;
            assert_eq!(body["data"]["addApiKeyCredits"]["userErrors"], json!([]), "{body}");
        }));
    }
    for add in adds {
        add.await.unwrap();
    }
    assert_eq!(key_limits(&app, &token, &id).await["credits"]["remaining"], 3 + 20 * 7);
    assert_eq!(spend(&app, &key, 143).await["credits"]["remaining"], 0);
    assert_eq!(app.db.count("SELECT count(*) FROM key_audit WHERE action = 'credits_added'").await, 20);
}

async fn low_and_spent_credits_are_mailed_once_per_period(db: TestDb) {
    let (app, clock) = app_with_clock(db).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let credits = json!({ "remaining": 20, "refill": { "amount": 20, "interval": "DAILY" } });
    let (_, key) = generate_limited(&app, &token, &s, json!({ "credits": credits })).await;
    let credit_notices = |app: &TestApp| {
        app.notifier
            .delivered()
            .into_iter()
            .filter(|n| matches!(n.kind, NoticeKind::CreditsLow | NoticeKind::CreditsExhausted))
            .map(|n| n.kind)
            .collect::<Vec<_>>()
    };
    for _ in 0..20 {
        assert_eq!(spend(&app, &key, 1).await["valid"], true);
    }
    for _ in 0..5 {
        assert_eq!(spend(&app, &key, 1).await["code"], "USAGE_EXCEEDED");
    }
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = credit_notices(&app);
        if seen.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, [NoticeKind::CreditsLow, NoticeKind::CreditsExhausted]);
    // The next day's period tells again, once.
    clock.advance(Span::days(1));
    for _ in 0..22 {
        spend(&app, &key, 1).await;
    }
    for _ in 0..100 {
        seen = credit_notices(&app);
        if seen.len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
    let message = app.notifier.delivered().into_iter().find(|n| n.kind == NoticeKind::CreditsLow).unwrap();
    assert_eq!(message.owner_id, s.integration.id);
}

/// Three replicas on one PostgreSQL database with one clock.
async fn three_replicas() -> Option<(TestApp, Arc<ManualClock>, Vec<latchkey_server::RunningServer>)> {
    let db = TestDb::new(Backend::Postgres).await?;
    let (app, clock) = app_with_clock(db).await;
    let (second, _) = app.replica().await;
    let (third, _) = app.replica().await;
    Some((app, clock, vec![second, third]))
}

/// Sends `requests` verifications of `key` across `bases` as `weights`
/// (percent) say, 8 at a time; returns how many were admitted.
async fn load(app: &TestApp, key: &str, bases: &[String], weights: &[usize], requests: usize) -> usize {
    let mut targets = Vec::new();
    for n in 0..requests {
        let slot = (n * 37) % 100;
        let mut edge = 0;
        let index = weights.iter().position(|w| {
            edge += w;
            slot < edge
        });
        targets.push(bases[index.unwrap_or(0)].clone());
    }
    let mut admitted = 0;
    for batch in targets.chunks(8) {
        let answers =
            futures_util::future::join_all(batch.iter().map(|base| verify_with(app, base, json!({ "key": key }))))
                .await;
        admitted += answers.iter().filter(|(_, body)| body["valid"] == true).count();
    }
    admitted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_admit_between_nine_tenths_of_the_limit_and_the_limit() {
    let Some((app, clock, replicas)) = three_replicas().await else { return };
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let limit = 400;
    let (_, key) = generate_limited(
        &app,
        &token,
        &s,
        json!({ "rateLimits": [{ "name": "window", "limit": limit, "periodSeconds": 60 }] }),
    )
    .await;
    let bases: Vec<String> = std::iter::once(app.url.clone()).chain(replicas.iter().map(|r| r.url())).collect();
    for (traffic, weights) in [("round robin", [34, 33, 33]), ("skewed", [80, 10, 10])] {
        clock.advance(Span::minutes(1));
        let admitted = load(&app, &key, &bases, &weights, 2 * limit).await;
        assert!(admitted <= limit, "{traffic}: {admitted} admitted over the limit of {limit}");
        assert!(admitted * 10 >= limit * 9, "{traffic}: only {admitted} of {limit} admitted");
    }
    // A small limit is exact: every lease is one request.
    let (_, small) = generate_limited(
        &app,
        &token,
        &s,
        json!({ "rateLimits": [{ "name": "small", "limit": 25, "periodSeconds": 60 }] }),
    )
    .await;
    clock.advance(Span::minutes(1));
    assert_eq!(load(&app, &small, &bases, &[80, 10, 10], 60).await, 25);
    for replica in replicas {
        replica.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_limits_applies_on_another_replica_within_a_second() {
    let Some((app, _clock, replicas)) = three_replicas().await else { return };
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (id, key) = generate_limited(&app, &token, &s, json!({ "credits": { "remaining": 1 } })).await;
    let other = replicas[0].url();
    assert_eq!(verify_with(&app, &other, json!({ "key": key })).await.1["valid"], true);
    assert_eq!(verify_with(&app, &other, json!({ "key": key })).await.1["code"], "USAGE_EXCEEDED");
    let input = json!({ "id": id, "credits": { "remaining": 50 }, "rateLimits": [{ "name": "tight", "limit": 2, "periodSeconds": 60 }] });
    let body = app.gql(Some(&token), ops::UPDATE_LIMITS, json!({ "input": input })).await;
    assert_eq!(body["data"]["updateApiKeyLimits"]["userErrors"], json!([]), "{body}");
    let changed = std::time::Instant::now();
    loop {
        let (_, answer) = verify_with(&app, &other, json!({ "key": key })).await;
        if answer["valid"] == true {
            assert_eq!(answer["limits"][0]["name"], "tight", "{answer}");
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "the other replica still refuses: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Owner limits likewise.
    let input =
        json!({ "ownerId": s.integration.id, "rateLimits": [{ "name": "owner", "limit": 1, "periodSeconds": 60 }] });
    app.gql(Some(&token), ops::SET_OWNER_LIMITS, json!({ "input": input })).await;
    let changed = std::time::Instant::now();
    loop {
        let (_, answer) = verify_with(&app, &other, json!({ "key": key, "cost": 0 })).await;
        if answer["limits"].as_array().is_some_and(|l| l.iter().any(|l| l["name"] == "owner")) {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "the owner's limit is not applied: {answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for replica in replicas {
        replica.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_mail_is_sent_once_across_replicas() {
    let Some((app, _clock, replicas)) = three_replicas().await else { return };
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (_, key) = generate_limited(&app, &token, &s, json!({ "credits": { "remaining": 60 } })).await;
    let bases: Vec<String> = std::iter::once(app.url.clone()).chain(replicas.iter().map(|r| r.url())).collect();
    let admitted = load(&app, &key, &bases, &[34, 33, 33], 90).await;
    assert!(admitted <= 60, "{admitted}");
    let credit_mail = || async {
        latchkey_tests::TestDb::count(
            &app.db,
            "SELECT count(*) FROM key_events WHERE kind IN ('credits_low', 'credits_exhausted')",
        )
        .await
    };
    assert_eq!(credit_mail().await, 2, "one low and one spent notice, whichever replica saw it");
    for replica in replicas {
        replica.stop().await;
    }
}
