//! Usage of keys: every verification that names a key counted per hour and
//! outcome, summed across replicas, kept through a graceful shutdown, read
//! through GraphQL, the key table and the credential report.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, DurationRound, SubsecRound, Utc};
use latchkey_domain::clock::ManualClock;
use latchkey_domain::{Clock, Cloud};
use latchkey_tests::{AppOptions, TestApp, TestDb, error_code, ops, run_latchkey};
use serde_json::{Value, json};

on_both_backends!(
    every_outcome_that_names_a_key_is_counted_in_its_hour,
    replicas_sum_exactly_and_a_graceful_shutdown_loses_nothing,
    the_previous_secret_is_counted_apart_during_an_overlap,
    unused_keys_and_the_usage_order_follow_the_clock,
    the_usage_order_counts_the_window_exactly_with_replicas_flushing,
    hourly_usage_is_dropped_past_its_retention_and_days_remain,
    usage_stays_within_its_tenant_and_its_key,
    hostile_ranges_and_filters_are_refused_with_the_limit_named,
    last_use_keeps_cloud_address_and_a_cut_clean_user_agent,
    the_credential_report_lists_every_key_with_its_usage,
    a_usage_report_is_counted_once_per_idempotency_key_for_a_day,
);

const KEY_USAGE: &str = "query($id: ID!, $from: DateTime!, $to: DateTime!, $g: UsageGranularity!) { \
    apiKey(id: $id) { usage30d usage(from: $from, to: $to, granularity: $g) { valid refused \
    buckets { start valid refused byOutcome { outcome count } } } } }";
const TENANT_USAGE: &str = "query($from: DateTime!, $to: DateTime!, $g: UsageGranularity!) { \
    tenantUsage(from: $from, to: $to, granularity: $g) { valid refused buckets { start valid refused } } }";

/// A server whose clock the test moves, starting at the top of an hour.
async fn app_with_clock(db: TestDb, options: AppOptions) -> (TestApp, Arc<ManualClock>) {
    let start = Utc::now().duration_trunc(Span::hours(1)).unwrap() + Span::minutes(10);
    let clock = Arc::new(ManualClock::new(start));
    let app = TestApp::start_with(db, AppOptions { clock: Some(clock.clone()), ..options }).await;
    (app, clock)
}

fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(Span::hours(1)).unwrap()
}

fn day_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(Span::days(1)).unwrap()
}

/// A key's usage series (`data.apiKey`), as an admin asks for it.
async fn key_usage(app: &TestApp, token: &str, id: &str, from: DateTime<Utc>, to: DateTime<Utc>, g: &str) -> Value {
    let vars = json!({ "id": id, "from": from, "to": to, "g": g });
    let body = app.gql(Some(token), KEY_USAGE, vars).await;
    assert!(body["errors"].is_null(), "{body}");
    body["data"]["apiKey"].clone()
}

/// Waits (flushes run every 300 ms) until the key's usage of the hour holding
/// `at` counts `valid` and `refused`; returns the hour's series.
async fn wait_for_hour(app: &TestApp, token: &str, id: &str, at: DateTime<Utc>, valid: i64, refused: i64) -> Value {
    let (from, to) = (hour_of(at), hour_of(at) + Span::hours(1));
    let mut last = Value::Null;
    for _ in 0..100 {
        last = key_usage(app, token, id, from, to, "HOUR").await;
        let usage = &last["usage"];
        if usage["valid"] == valid && usage["refused"] == refused {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the usage never reached {valid} valid and {refused} refused: {last}");
}

fn outcome_count(bucket: &Value, outcome: &str) -> i64 {
    bucket["byOutcome"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["outcome"] == outcome)
        .map_or(0, |c| c["count"].as_i64().unwrap())
}

async fn generate_restricted(
    app: &TestApp,
    token: &str,
    owner: &latchkey_domain::User,
    restrictions: Value,
) -> (String, String) {
    let input = json!({ "input": { "ownerId": owner.id, "description": "Restricted", "restrictions": restrictions } });
    let body = app.gql(Some(token), ops::GENERATE_RESTRICTED, input).await;
    let payload = &body["data"]["generateApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    (payload["apiKey"]["id"].as_str().unwrap().to_owned(), payload["secret"].as_str().unwrap().to_owned())
}

async fn verify_asking(app: &TestApp, body: Value) -> Value {
    let resp = app.http.post(format!("{}/v1/keys/verify", app.url)).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn every_outcome_that_names_a_key_is_counted_in_its_hour(db: TestDb) {
    let (app, clock) = app_with_clock(db, AppOptions::default()).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (id, secret, _) = app.generate(&token, &s.integration, "Counted").await;

    // Valid: three at the gateway endpoint, one at forward auth, one GraphQL request.
    for _ in 0..3 {
        assert_eq!(app.verify(&secret).await["valid"], true);
    }
    let auth = app.http.get(format!("{}/v1/auth", app.url)).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(auth.status(), 200);
    let viewer = app.gql(Some(&secret), "{ viewer { apiKey { id } } }", json!({})).await;
    assert_eq!(viewer["data"]["viewer"]["apiKey"]["id"], id.as_str());
    // Forbidden: a key limited to one permission asked for another, twice.
    let (limited_id, limited) =
        generate_restricted(&app, &token, &s.integration, json!({ "permissions": ["users:read"] })).await;
    for _ in 0..2 {
        let refused = verify_asking(&app, json!({ "key": limited, "permissions": ["reports:read"] })).await;
        assert_eq!(refused["code"], "INSUFFICIENT_PERMISSIONS");
    }
    // Wrong secrets and unknown keys are nobody's.
    let mut wrong = secret.clone();
    wrong.replace_range(10..12, if &secret[10..12] == "AA" { "BB" } else { "AA" });
    app.verify(&wrong).await;
    app.verify("lk_unknownunknownunknown").await;

    let hour = wait_for_hour(&app, &token, &id, clock.now(), 5, 0).await;
    assert_eq!(hour["usage"]["buckets"].as_array().unwrap().len(), 1);
    assert_eq!(outcome_count(&hour["usage"]["buckets"][0], "VALID"), 5);
    let limited_hour = wait_for_hour(&app, &token, &limited_id, clock.now(), 0, 2).await;
    assert_eq!(outcome_count(&limited_hour["usage"]["buckets"][0], "FORBIDDEN"), 2);

    // Disabled, then expired: refusals of the right secret name the key.
    app.gql(Some(&token), ops::DISABLE, json!({ "id": id })).await;
    for _ in 0..2 {
        assert_eq!(app.verify(&secret).await["code"], "DISABLED");
    }
    app.gql(Some(&token), ops::ENABLE, json!({ "id": id })).await;
    let expires = clock.now() + Span::minutes(5);
    let set = app.gql(Some(&token), ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": expires } })).await;
    assert!(set["errors"].is_null(), "{set}");
    clock.advance(Span::minutes(6));
    assert_eq!(app.verify(&secret).await["code"], "EXPIRED");
    let token = app.token(&s.admin, Cloud::Employee);
    let hour = wait_for_hour(&app, &token, &id, clock.now(), 5, 3).await;
    let bucket = &hour["usage"]["buckets"][0];
    assert_eq!((outcome_count(bucket, "DISABLED"), outcome_count(bucket, "EXPIRED")), (2, 1));
    assert_eq!(hour["usage30d"], 5);

    // A leaked key answers COMPROMISED once the report is processed (in the
    // background): every answer until then is counted as what it was.
    let (leaked_id, leaked, _) = app.generate(&token, &s.admin, "Leaked").await;
    let report = app.http.post(format!("{}/v1/keys/report-leak", app.url)).json(&json!({ "key": leaked })).send();
    assert_eq!(report.await.unwrap().status(), 202);
    let (mut valid, mut compromised) = (0, 0);
    while compromised < 2 {
        match app.verify(&leaked).await["code"].as_str() {
            Some("COMPROMISED") => compromised += 1,
            None => valid += 1,
            Some(other) => panic!("{other}"),
        }
        assert!(valid < 1_000, "the leak report was never processed");
    }
    let leaked_hour = wait_for_hour(&app, &token, &leaked_id, clock.now(), valid, 2).await;
    assert_eq!(outcome_count(&leaked_hour["usage"]["buckets"][0], "COMPROMISED"), 2);
    // A key whose owner was deactivated answers OWNER_INACTIVE.
    let (orphan_id, orphan, _) = app.generate(&token, &s.other_admin, "Orphaned").await;
    let deactivate = "mutation($id: ID!) { setUserActive(input: {id: $id, active: false}) { userErrors { code } } }";
    let body = app.gql(Some(&token), deactivate, json!({ "id": s.other_admin.id })).await;
    assert_eq!(body["data"]["setUserActive"]["userErrors"], json!([]), "{body}");
    assert_eq!(app.verify(&orphan).await["code"], "OWNER_INACTIVE");
    let orphan_hour = wait_for_hour(&app, &token, &orphan_id, clock.now(), 0, 1).await;
    assert_eq!(outcome_count(&orphan_hour["usage"]["buckets"][0], "OWNER_INACTIVE"), 1);

    // Days hold what their hours hold; the tenant holds what its keys hold.
    let day = day_of(clock.now());
    let daily = key_usage(&app, &token, &id, day, day + Span::days(1), "DAY").await;
    assert_eq!((daily["usage"]["valid"].clone(), daily["usage"]["refused"].clone()), (json!(5), json!(3)));
    let tenant =
        app.gql(Some(&token), TENANT_USAGE, json!({ "from": day, "to": day + Span::days(1), "g": "DAY" })).await;
    assert_eq!(tenant["data"]["tenantUsage"]["valid"], 5 + valid, "{tenant}");
    assert_eq!(tenant["data"]["tenantUsage"]["refused"], 5 + 3, "{tenant}");
    app.stop().await;
}

async fn replicas_sum_exactly_and_a_graceful_shutdown_loses_nothing(db: TestDb) {
    // Flushes only at shutdown: whatever is counted was written by it.
    let options = AppOptions { usage_flush_interval: Duration::from_secs(3600), ..AppOptions::default() };
    let app = TestApp::start_with(db, options).await;
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Shared").await;
    let ((one, _), (two, _)) = (app.replica().await, app.replica().await);
    let (a, b) = (one.url(), two.url());
    for _ in 0..7 {
        assert_eq!(app.verify_on(&a, &secret).await["valid"], true);
    }
    for _ in 0..5 {
        assert_eq!(app.verify_on(&b, &secret).await["valid"], true);
    }
    let now = Utc::now();
    let empty = key_usage(&app, &s.admin_token, &id, hour_of(now), hour_of(now) + Span::hours(1), "HOUR").await;
    assert_eq!(empty["usage"]["valid"], 0, "nothing is written before a flush");
    one.stop().await;
    two.stop().await;
    let after = key_usage(&app, &s.admin_token, &id, hour_of(now), hour_of(now) + Span::hours(1), "HOUR").await;
    assert_eq!(after["usage"]["valid"], 12, "{after}");
    app.stop().await;
}

async fn the_previous_secret_is_counted_apart_during_an_overlap(db: TestDb) {
    let (app, clock) = app_with_clock(db, AppOptions::default()).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (id, old, _) = app.generate(&token, &s.integration, "Rotating").await;
    let rotated =
        app.gql(Some(&token), ops::ROTATE_WITH, json!({ "input": { "id": id, "overlapSeconds": 3600 } })).await;
    let new = rotated["data"]["rotateApiKey"]["secret"].as_str().unwrap_or_else(|| panic!("{rotated}")).to_owned();
    for _ in 0..2 {
        assert_eq!(app.verify(&old).await["valid"], true);
    }
    for _ in 0..3 {
        assert_eq!(app.verify(&new).await["valid"], true);
    }
    let hour = wait_for_hour(&app, &token, &id, clock.now(), 5, 0).await;
    let bucket = &hour["usage"]["buckets"][0];
    assert_eq!((outcome_count(bucket, "VALID"), outcome_count(bucket, "VALID_PREVIOUS_SECRET")), (3, 2));
    app.stop().await;
}

async fn unused_keys_and_the_usage_order_follow_the_clock(db: TestDb) {
    let (app, clock) = app_with_clock(db, AppOptions::default()).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (old_use, old_secret, _) = app.generate(&token, &s.integration, "Used long ago").await;
    let (never, _, _) = app.generate(&token, &s.integration, "Never used").await;
    let (busy, busy_secret, _) = app.generate(&token, &s.integration, "Busy").await;
    let (quiet, quiet_secret, _) = app.generate(&token, &s.integration, "Quiet").await;
    app.verify(&old_secret).await;
    wait_for_hour(&app, &token, &old_use, clock.now(), 1, 0).await;

    clock.advance(Span::days(40));
    let token = app.token(&s.admin, Cloud::Employee);
    for _ in 0..3 {
        app.verify(&busy_secret).await;
    }
    app.verify(&quiet_secret).await;
    wait_for_hour(&app, &token, &busy, clock.now(), 3, 0).await;
    wait_for_hour(&app, &token, &quiet, clock.now(), 1, 0).await;
    // Last use is written with the counts; wait for the quiet key's.
    let list = |vars: Value| {
        let token = token.clone();
        let app = &app;
        async move {
            let query = "query($u: Int, $o: ApiKeyOrder, $first: Int, $after: String) { \
                apiKeys(unusedForDays: $u, orderBy: $o, first: $first, after: $after) { \
                nodes { id usage30d } pageInfo { endCursor hasNextPage } } }";
            let body = app.gql(Some(&token), query, vars).await;
            assert!(body["errors"].is_null(), "{body}");
            body["data"]["apiKeys"].clone()
        }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
    };
    let mut unused = Vec::new();
    for _ in 0..50 {
        unused = ids(&list(json!({ "u": 30 })).await);
        if unused.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unused.sort();
    let mut expected = vec![old_use.clone(), never.clone()];
    expected.sort();
    assert_eq!(unused, expected, "used 40 days ago, and never used since creation 40 days ago");
    assert_eq!(ids(&list(json!({ "u": 41 })).await), Vec::<String>::new());

    // By recent usage, most first; ties by id (newest first); one key a page,
    // so the cursor crosses from used keys to unused ones (and back, ascending).
    let walk = |direction: &'static str| {
        let list = &list;
        async move {
            let order = json!({ "field": "USAGE_30D", "direction": direction });
            let (mut seen, mut after, mut counts) = (Vec::new(), Value::Null, Vec::new());
            for _ in 0..10 {
                let page = list(json!({ "o": order, "first": 1, "after": after })).await;
                seen.extend(ids(&page));
                counts.extend(page["nodes"].as_array().unwrap().iter().map(|n| n["usage30d"].as_i64().unwrap()));
                if page["pageInfo"]["hasNextPage"] != true {
                    break;
                }
                after = page["pageInfo"]["endCursor"].clone();
            }
            (seen, counts)
        }
    };
    let (seen, counts) = walk("DESC").await;
    assert_eq!(seen, [busy.clone(), quiet.clone(), never.clone(), old_use.clone()]);
    assert_eq!(counts, [3, 1, 0, 0]);
    let (seen, counts) = walk("ASC").await;
    assert_eq!(seen, [old_use.clone(), never.clone(), quiet.clone(), busy.clone()]);
    assert_eq!(counts, [0, 0, 1, 3]);
    let ascending = list(json!({ "o": { "field": "USAGE_30D", "direction": "ASC" }, "first": 10 })).await;
    assert_eq!(ids(&ascending), [old_use, never, quiet, busy]);
    app.stop().await;
}

/// Waits until the key table in `USAGE_30D` order shows these (key, count)
/// pairs, most used first, and checks each against the key's own sum.
async fn expect_usage_order(app: &TestApp, admin: &latchkey_domain::User, expected: [(&str, i64); 2]) {
    let order = "query { apiKeys(orderBy: { field: USAGE_30D, direction: DESC }) { nodes { id usage30d } } }";
    let single = "query($id: ID!) { apiKey(id: $id) { usage30d } }";
    let token = app.token(admin, Cloud::Employee);
    let mut seen = Value::Null;
    for _ in 0..100 {
        seen = app.gql(Some(&token), order, json!({})).await["data"]["apiKeys"]["nodes"].clone();
        let pairs: Vec<(&str, i64)> = seen
            .as_array()
            .unwrap()
            .iter()
            .map(|n| (n["id"].as_str().unwrap(), n["usage30d"].as_i64().unwrap()))
            .collect();
        if pairs == expected {
            for (id, count) in expected {
                let own = app.gql(Some(&token), single, json!({ "id": id })).await;
                assert_eq!(own["data"]["apiKey"]["usage30d"], count, "{own}");
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the usage order never showed {expected:?}: {seen}");
}

/// The `USAGE_30D` order reads each key's kept sum of the window: with three
/// servers flushing while the window moves, it equals what the key's own
/// `usage30d` sums from the stored days, and a day is taken off when it
/// leaves the window.
async fn the_usage_order_counts_the_window_exactly_with_replicas_flushing(db: TestDb) {
    let (app, clock) = app_with_clock(db, AppOptions::default()).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (once, once_secret, _) = app.generate(&token, &s.integration, "Used on the first day").await;
    let (daily, daily_secret, _) = app.generate(&token, &s.integration, "Used on three days").await;
    let ((one, _), (two, _)) = (app.replica().await, app.replica().await);
    let servers = [app.url.clone(), one.url(), two.url()];
    let use_everywhere = |secret: String, times: usize| {
        let (app, servers) = (&app, &servers);
        async move {
            for server in servers {
                for _ in 0..times {
                    assert_eq!(app.verify_on(server, &secret).await["valid"], true);
                }
            }
        }
    };

    use_everywhere(once_secret, 2).await;
    use_everywhere(daily_secret.clone(), 1).await;
    expect_usage_order(&app, &s.admin, [(&once, 6), (&daily, 3)]).await;
    // The 30th day on: the first day is still in the window.
    clock.advance(Span::days(29));
    use_everywhere(daily_secret.clone(), 1).await;
    expect_usage_order(&app, &s.admin, [(&daily, 6), (&once, 6)]).await;
    // The 31st: the first day has left it, on every server's flush at once.
    clock.advance(Span::days(1));
    use_everywhere(daily_secret, 1).await;
    expect_usage_order(&app, &s.admin, [(&daily, 6), (&once, 0)]).await;
    one.stop().await;
    two.stop().await;
    app.stop().await;
}

async fn hourly_usage_is_dropped_past_its_retention_and_days_remain(db: TestDb) {
    let (app, clock) = app_with_clock(db, AppOptions::default()).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (id, secret, _) = app.generate(&token, &s.integration, "Aging").await;
    let used_at = clock.now();
    for _ in 0..2 {
        app.verify(&secret).await;
    }
    wait_for_hour(&app, &token, &id, used_at, 2, 0).await;
    let hourly_rows = || app.db.count("SELECT COUNT(*) FROM key_usage WHERE bucket_seconds = 3600");
    assert!(hourly_rows().await > 0);

    clock.advance(Span::days(36));
    let token = app.token(&s.admin, Cloud::Employee);
    for _ in 0..100 {
        if hourly_rows().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(hourly_rows().await, 0, "hours older than 35 days are dropped by the flush");
    let vars = json!({ "id": id, "from": hour_of(used_at), "to": hour_of(used_at) + Span::hours(1), "g": "HOUR" });
    let refused = app.gql(Some(&token), KEY_USAGE, vars).await;
    assert_eq!(error_code(&refused), "BAD_USER_INPUT");
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("35 days"), "{refused}");
    let day = day_of(used_at);
    let daily = key_usage(&app, &token, &id, day, day + Span::days(1), "DAY").await;
    assert_eq!(daily["usage"]["valid"], 2, "the day keeps what its hours held");
    app.stop().await;
}

async fn usage_stays_within_its_tenant_and_its_key(app: TestApp) {
    let (acme, other) = (app.seed("Acme").await, app.seed("Other").await);
    let (id, secret, _) = app.generate(&acme.admin_token, &acme.integration, "Acme's").await;
    let (other_id, _, _) = app.generate(&acme.admin_token, &acme.integration, "Acme's second").await;
    app.verify(&secret).await;
    let now = Utc::now();
    let (from, to) = (day_of(now), day_of(now) + Span::days(1));
    wait_for_hour(&app, &acme.admin_token, &id, now, 1, 0).await;

    // Another tenant's admin sees neither the key nor its counts.
    let vars = json!({ "id": id, "from": from, "to": to, "g": "DAY" });
    let foreign = app.gql(Some(&other.admin_token), KEY_USAGE, vars.clone()).await;
    assert_eq!(foreign["data"]["apiKey"], Value::Null, "{foreign}");
    let theirs = app.gql(Some(&other.admin_token), TENANT_USAGE, json!({ "from": from, "to": to, "g": "DAY" })).await;
    assert_eq!(theirs["data"]["tenantUsage"]["valid"], 0, "{theirs}");
    let report = app.gql(Some(&other.admin_token), "{ apiKeyCredentialReport }", json!({})).await;
    let csv = report["data"]["apiKeyCredentialReport"].as_str().unwrap();
    assert!(!csv.contains(&id) && csv.lines().count() == 1, "{csv}");

    // The key reads its own usage through viewer, and nobody else's.
    let own = "query($from: DateTime!, $to: DateTime!) { viewer { apiKey { id usage30d \
               usage(from: $from, to: $to, granularity: DAY) { valid } } } }";
    let mine = app.gql(Some(&secret), own, json!({ "from": from, "to": to })).await;
    assert_eq!(mine["data"]["viewer"]["apiKey"]["usage"]["valid"], 1, "{mine}");
    let other_key =
        app.gql(Some(&secret), KEY_USAGE, json!({ "id": other_id, "from": from, "to": to, "g": "DAY" })).await;
    assert_eq!(error_code(&other_key), "FORBIDDEN", "{other_key}");
    let tenant = app.gql(Some(&secret), TENANT_USAGE, json!({ "from": from, "to": to, "g": "DAY" })).await;
    assert_eq!(error_code(&tenant), "FORBIDDEN", "{tenant}");
    let report = app.gql(Some(&secret), "{ apiKeyCredentialReport }", json!({})).await;
    assert_eq!(error_code(&report), "FORBIDDEN");
    app.stop().await;
}

async fn hostile_ranges_and_filters_are_refused_with_the_limit_named(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, _, _) = app.generate(&s.admin_token, &s.integration, "Probed").await;
    let now = Utc::now().trunc_subsecs(0);
    let far_past = "2000-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
    let cases = [
        (now, now - Span::hours(1), "HOUR", "after"),
        (now, now, "DAY", "after"),
        (now - Span::days(3650), now, "DAY", "400 days"),
        (now - Span::days(32), now, "HOUR", "31 days"),
        (far_past, far_past + Span::days(1), "DAY", "kept for 400 days"),
        (now - Span::days(40), now - Span::days(39), "HOUR", "kept for 35 days"),
    ];
    for (from, to, g, limit) in cases {
        for (query, vars) in [
            (KEY_USAGE, json!({ "id": id, "from": from, "to": to, "g": g })),
            (TENANT_USAGE, json!({ "from": from, "to": to, "g": g })),
        ] {
            let body = app.gql(Some(&s.admin_token), query, vars).await;
            assert_eq!(error_code(&body), "BAD_USER_INPUT", "{from}..{to} {g}: {body}");
            let message = body["errors"][0]["message"].as_str().unwrap();
            assert!(message.contains(limit), "{message} names {limit}");
        }
    }
    for days in [0, -1, 100_000] {
        let body = app
            .gql(
                Some(&s.admin_token),
                "query($u: Int) { apiKeys(unusedForDays: $u) { totalCount } }",
                json!({ "u": days }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{days}: {body}");
    }
    let huge = app.gql(Some(&s.admin_token), "{ apiKeys(first: 1000000) { totalCount } }", json!({})).await;
    assert_ne!(huge["errors"], Value::Null, "{huge}");
    app.stop().await;
}

async fn last_use_keeps_cloud_address_and_a_cut_clean_user_agent(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Traced").await;
    let hostile = format!("evil\u{0}\u{7}\u{1b}[31m{}", "x".repeat(20_000));
    let answer =
        verify_asking(&app, json!({ "key": secret, "cloud": "CUSTOMER", "ip": "203.0.113.9", "userAgent": hostile }))
            .await;
    assert_eq!(answer["valid"], true);
    let query = "query($id: ID!) { apiKey(id: $id) { lastUsedAt lastUsed { at cloud clientAddress userAgent } } }";
    let mut last = Value::Null;
    for _ in 0..100 {
        last = app.gql(Some(&s.admin_token), query, json!({ "id": id })).await["data"]["apiKey"].clone();
        if !last["lastUsed"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let used = &last["lastUsed"];
    assert_eq!(used["at"], last["lastUsedAt"], "{last}");
    assert_eq!((used["cloud"].clone(), used["clientAddress"].clone()), (json!("CUSTOMER"), json!("203.0.113.9")));
    let agent = used["userAgent"].as_str().unwrap();
    assert_eq!(agent.chars().count(), 200);
    assert!(agent.starts_with("evil\u{fffd}\u{fffd}\u{fffd}[31mx"), "{agent:?}");
    assert!(!agent.chars().any(char::is_control));
    app.stop().await;
}

async fn the_credential_report_lists_every_key_with_its_usage(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "=cmd|' /C calc'!A0, \"quoted\"").await;
    let (idle, _, _) = app.generate(&s.admin_token, &s.integration, "Idle").await;
    app.verify(&secret).await;
    app.verify(&secret).await;
    wait_for_hour(&app, &s.admin_token, &id, Utc::now(), 2, 0).await;

    let report = app.gql(Some(&s.admin_token), "{ apiKeyCredentialReport }", json!({})).await;
    let csv = report["data"]["apiKeyCredentialReport"].as_str().unwrap_or_else(|| panic!("{report}")).to_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,last_four,description,owner_name,owner_email,status,restrictions,created_at,last_edited_at,\
         last_used_at,last_used_cloud,last_used_address,expires_at,verifications_30d,refusals_30d"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    let used = lines.iter().find(|l| l.starts_with(&id)).unwrap();
    assert!(used.contains("\"'=cmd|' /C calc'!A0, \"\"quoted\"\"\""), "a formula is defused and quoted: {used}");
    assert!(used.ends_with(",2,0"), "{used}");
    assert!(lines.iter().any(|l| l.starts_with(&idle) && l.ends_with(",0,0")));

    // The operator's command gives the same report, as CSV or JSON.
    let cli = run_latchkey(&app.db, &["keys", "report", "--tenant", &s.tenant.id.to_string()]);
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(String::from_utf8(cli.stdout).unwrap(), csv);
    let json_out = run_latchkey(&app.db, &["keys", "report", "--tenant", &s.tenant.id.to_string(), "--format", "json"]);
    let rows: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    let row = rows.as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert_eq!((row["verifications30d"].clone(), row["ownerEmail"].clone()), (json!(2), json!(s.integration.email)));
    let unknown = run_latchkey(&app.db, &["keys", "report", "--tenant", "0190a0b0-0000-7000-8000-000000000000"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no tenant"));
    app.stop().await;
}

/// Posts a usage report (`POST /v1/verifications/usage`) with `stream_key`:
/// (status, whether it was a replay, body).
async fn report_uses(app: &TestApp, stream_key: &str, idempotency_key: &str, report: &Value) -> (u16, bool, Value) {
    let response = app
        .http
        .post(format!("{}/v1/verifications/usage", app.url))
        .bearer_auth(stream_key)
        .header("Idempotency-Key", idempotency_key)
        .json(report)
        .send()
        .await
        .unwrap();
    let (status, replayed) = (response.status().as_u16(), response.headers().contains_key("idempotent-replayed"));
    (status, replayed, response.json().await.unwrap())
}

async fn a_usage_report_is_counted_once_per_idempotency_key_for_a_day(db: TestDb) {
    let (app, clock) = app_with_clock(db, AppOptions::default()).await;
    let s = app.seed("Acme").await;
    let token = app.token(&s.admin, Cloud::Employee);
    let (id, _, _) = app.generate(&token, &s.integration, "Verified in a service").await;
    let input = json!({ "input": { "ownerId": s.integration.id, "description": "Stream reader",
        "restrictions": { "permissions": ["verify:stream"] } } });
    let body = app.gql(Some(&token), ops::GENERATE_RESTRICTED, input).await;
    let stream_key = body["data"]["generateApiKey"]["secret"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned();
    let report = |count: u64| json!({ "uses": [{ "keyId": id, "count": count, "lastUsedAt": clock.now() }] });
    let total = |token: String| {
        let (app, id) = (&app, id.clone());
        async move {
            let body =
                app.gql(Some(&token), "query($id: ID!) { apiKey(id: $id) { usage30d } }", json!({ "id": id })).await;
            body["data"]["apiKey"]["usage30d"].clone()
        }
    };

    // Stored before the answer: counted at once, and once however often it is sent again.
    let first = report(4);
    for replayed in [false, true, true] {
        let (status, was_replayed, body) = report_uses(&app, &stream_key, "report-1", &first).await;
        assert_eq!((status, was_replayed, &body), (200, replayed, &json!({ "counted": 1, "refused": [] })));
    }
    assert_eq!(total(token.clone()).await, 4);
    // The same key for another report is refused and counts nothing.
    let (status, _, body) = report_uses(&app, &stream_key, "report-1", &report(5)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    let (status, replayed, _) = report_uses(&app, &stream_key, "report-2", &report(5)).await;
    assert_eq!((status, replayed), (200, false));
    assert_eq!(total(token.clone()).await, 9);

    // Receipts are kept for a day: after it, the first report's key counts again.
    clock.advance(Span::hours(25));
    let started = std::time::Instant::now();
    loop {
        let (status, replayed, _) = report_uses(&app, &stream_key, "report-1", &first).await;
        assert_eq!(status, 200);
        if !replayed {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the receipt was kept past a day");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(total(app.token(&s.admin, Cloud::Employee)).await, 13);
}
