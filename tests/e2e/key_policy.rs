//! The tenant's key policy through GraphQL: every rule refused with
//! `POLICY` on its field and nothing changed, keys from before the policy
//! flagged but working, a rotation that makes a key comply, hostile input,
//! who may change it, and tenant isolation.

use chrono::{DateTime, Duration as Span, Utc};
use latchkey_domain::NoticeKind;
use latchkey_notify::RecordingNotifier;
use latchkey_tests::{TestApp, TestDb, ops};
use serde_json::{Value, json};

on_both_backends!(
    each_rule_is_refused_with_policy_and_nothing_changes,
    keys_from_before_a_policy_are_flagged_keep_working_and_comply_once_rotated,
    hostile_policy_input_is_refused_and_only_internal_admins_change_it,
    a_policy_over_existing_keys_flags_them_and_mails_each_owner_once,
    unused_keys_are_warned_then_disabled_once_across_replicas_and_restarts,
);

const POLICY_FIELDS: &str =
    "maxLifetimeDays requireExpiry requireRestrictions maxOverlapSeconds disableUnusedAfterDays maxKeysPerOwner";

fn update_op() -> String {
    format!(
        "mutation($input: UpdateTenantKeyPolicyInput!) {{ updateTenantKeyPolicy(input: $input) {{ \
         policy {{ {POLICY_FIELDS} }} userErrors {{ field message code }} }} }}"
    )
}

fn read_op() -> String {
    format!("{{ tenantKeyPolicy {{ {POLICY_FIELDS} }} }}")
}

const KEY: &str = "query($id: ID!) { apiKey(id: $id) { id expiresAt policyViolations restrictions { permissions } } }";

async fn set_policy(app: &TestApp, token: &str, policy: Value) -> Value {
    let body = app.gql(Some(token), &update_op(), json!({ "input": policy })).await;
    let payload = &body["data"]["updateTenantKeyPolicy"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    payload["policy"].clone()
}

/// The one user error of a mutation's payload, as (field, code, message).
fn refusal(body: &Value) -> (Value, String, String) {
    let payload = body["data"].as_object().unwrap_or_else(|| panic!("{body}")).values().next().unwrap();
    let errors = payload["userErrors"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(errors.len(), 1, "{body}");
    let e = &errors[0];
    (e["field"].clone(), e["code"].as_str().unwrap().to_owned(), e["message"].as_str().unwrap().to_owned())
}

fn days(n: i64) -> String {
    (Utc::now() + Span::days(n)).to_rfc3339()
}

async fn each_rule_is_refused_with_policy_and_nothing_changes(app: TestApp) {
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let policy = json!({ "maxLifetimeDays": 30, "requireExpiry": true, "requireRestrictions": true,
        "maxOverlapSeconds": 3600, "maxKeysPerOwner": 2 });
    let set = set_policy(&app, token, policy).await;
    assert_eq!(set["maxLifetimeDays"], 30);
    assert!(set["disableUnusedAfterDays"].is_null(), "omitted is null");
    assert_eq!(app.gql(Some(token), &read_op(), json!({})).await["data"]["tenantKeyPolicy"], set);
    // Every internal admin is mailed the rules before and after.
    let mailed = || {
        let notices = app.notifier.delivered();
        notices.into_iter().filter(|n| n.kind == latchkey_domain::NoticeKind::PolicyChanged).collect::<Vec<_>>()
    };
    for _ in 0..200 {
        if mailed().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let notices = mailed();
    let recipients: std::collections::BTreeSet<_> = notices.iter().map(|n| n.owner_id).collect();
    assert_eq!(recipients, [s.admin.id, s.other_admin.id].into());
    let (before, after) = notices[0].before_after.clone().unwrap();
    assert_eq!(before, "no rules");
    assert!(after.contains("keys expire within 30 days") && after.contains("at most 2 keys per owner"), "{after}");

    let restricted = json!({ "permissions": ["users:read"] });
    let generate = |extra: Value| {
        let mut input = json!({ "ownerId": s.integration.id, "description": "Sync" });
        input.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let app = &app;
        async move { app.gql(Some(token), ops::GENERATE_RESTRICTED, json!({ "input": input })).await }
    };
    for (extra, field, names) in [
        (json!({ "restrictions": restricted }), "expiresAt", "30 days"),
        (json!({ "restrictions": restricted, "expiresAt": days(60) }), "expiresAt", "30 days"),
        (json!({ "expiresAt": days(10) }), "restrictions", "requireRestrictions"),
    ] {
        let body = generate(extra).await;
        let (path, code, message) = refusal(&body);
        assert_eq!(code, "POLICY", "{body}");
        assert_eq!(path[1], field, "{body}");
        assert!(message.contains(names), "{message}");
    }
    assert_eq!(app.db.count("SELECT COUNT(*) FROM api_keys").await, 0, "nothing was made");
    let compliant = json!({ "restrictions": restricted, "expiresAt": days(10) });
    let first = generate(compliant.clone()).await;
    let id = first["data"]["generateApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned();
    generate(compliant.clone()).await;
    let (path, code, message) = refusal(&generate(compliant.clone()).await);
    assert_eq!((path, code.as_str()), (json!(["input", "ownerId"]), "POLICY"));
    assert!(message.contains("at most 2 keys"), "{message}");

    let body = app.gql(Some(token), ops::ROTATE_WITH, json!({ "input": { "id": id, "overlapSeconds": 7200 } })).await;
    let (path, code, message) = refusal(&body);
    assert_eq!((path, code.as_str()), (json!(["input", "overlapSeconds"]), "POLICY"));
    assert!(message.contains("3600"), "{message}");
    let before = app.gql(Some(token), KEY, json!({ "id": id })).await["data"]["apiKey"].clone();
    let body = app.gql(Some(token), ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": null } })).await;
    assert_eq!(refusal(&body).1, "POLICY");
    let body = app.gql(Some(token), ops::SET_EXPIRY, json!({ "input": { "id": id, "expiresAt": days(45) } })).await;
    assert_eq!(refusal(&body).0, json!(["input", "expiresAt"]));
    let open = json!({ "input": { "id": id, "restrictions": {} } });
    let body = app.gql(Some(token), ops::UPDATE_RESTRICTIONS, open).await;
    assert_eq!(refusal(&body), (json!(["input", "restrictions", "permissions"]), "POLICY".into(), refusal(&body).2));
    assert_eq!(app.gql(Some(token), KEY, json!({ "id": id })).await["data"]["apiKey"], before, "nothing changed");

    // The other owner has two keys: a transfer to them breaks the maximum.
    for _ in 0..2 {
        let mut input = compliant.clone();
        input["ownerId"] = json!(s.other_admin.id);
        input["description"] = json!("Theirs");
        let body = app.gql(Some(token), ops::GENERATE_RESTRICTED, json!({ "input": input })).await;
        assert_eq!(body["data"]["generateApiKey"]["userErrors"], json!([]), "{body}");
    }
    let transfer = "mutation($id: ID!, $owner: ID!) { transferApiKey(input: {id: $id, ownerId: $owner}) { \
                    apiKey { id } userErrors { field message code } } }";
    let body = app.gql(Some(token), transfer, json!({ "id": id, "owner": s.other_admin.id })).await;
    assert_eq!(refusal(&body).0, json!(["input", "ownerId"]));
    assert_eq!(refusal(&body).1, "POLICY");
    app.stop().await;
}

async fn keys_from_before_a_policy_are_flagged_keep_working_and_comply_once_rotated(app: TestApp) {
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let (id, secret, _) = app.generate(token, &s.integration, "Legacy sync").await;
    set_policy(&app, token, json!({ "maxLifetimeDays": 90, "requireExpiry": false, "requireRestrictions": true }))
        .await;
    let key = app.gql(Some(token), KEY, json!({ "id": id })).await["data"]["apiKey"].clone();
    assert_eq!(key["policyViolations"], json!(["maxLifetimeDays", "requireRestrictions"]));
    assert_eq!(app.verify(&secret).await["valid"], true, "nothing stops without an admin's action");
    // A rotation without an expiry gets the latest the policy allows.
    let new_secret = app.rotate(token, &id).await;
    let key = app.gql(Some(token), KEY, json!({ "id": id })).await["data"]["apiKey"].clone();
    let expires: DateTime<Utc> = key["expiresAt"].as_str().unwrap().parse().unwrap();
    let lifetime = expires - Utc::now();
    assert!(lifetime > Span::days(89) && lifetime <= Span::days(90), "{lifetime}");
    assert_eq!(key["policyViolations"], json!(["requireRestrictions"]));
    assert_eq!(app.verify(&new_secret).await["valid"], true);
    // Lifted: nothing is flagged.
    set_policy(&app, token, json!({ "requireExpiry": false, "requireRestrictions": false })).await;
    let key = app.gql(Some(token), KEY, json!({ "id": id })).await["data"]["apiKey"].clone();
    assert_eq!(key["policyViolations"], json!([]));
    app.stop().await;
}

async fn hostile_policy_input_is_refused_and_only_internal_admins_change_it(app: TestApp) {
    let a = app.seed("Acme").await;
    let b = app.seed("Globex").await;
    set_policy(
        &app,
        &a.admin_token,
        json!({ "maxLifetimeDays": 30, "requireExpiry": true, "requireRestrictions": false }),
    )
    .await;
    let base = json!({ "requireExpiry": false, "requireRestrictions": false });
    for (field, value) in [
        ("maxLifetimeDays", json!(0)),
        ("maxLifetimeDays", json!(3651)),
        ("maxOverlapSeconds", json!(-1)),
        ("maxOverlapSeconds", json!(604_801)),
        ("disableUnusedAfterDays", json!(29)),
        ("disableUnusedAfterDays", json!(731)),
        ("maxKeysPerOwner", json!(0)),
        ("maxKeysPerOwner", json!(10_001)),
    ] {
        let mut input = base.clone();
        input[field] = value;
        let body = app.gql(Some(&a.admin_token), &update_op(), json!({ "input": input })).await;
        let (path, code, _) = refusal(&body);
        assert_eq!((path, code.as_str()), (json!(["input", field]), "INVALID"), "{body}");
    }
    let body = app.gql(Some(&a.admin_token), &update_op(), json!({ "input": { "maxLifetimeDays": 30 } })).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("requireExpiry"), "required: {body}");
    let kept = app.gql(Some(&a.admin_token), &read_op(), json!({})).await["data"]["tenantKeyPolicy"].clone();
    assert_eq!((kept["maxLifetimeDays"].clone(), kept["requireExpiry"].clone()), (json!(30), json!(true)), "unchanged");

    // Only internal admins in the employee cloud; an API key cannot.
    let academy = app.token(&a.academy_admin, latchkey_domain::Cloud::Customer);
    let (_, key, _) = app.generate(&b.admin_token, &b.integration, "Integration").await;
    for bearer in [academy.as_str(), key.as_str()] {
        let body = app.gql(Some(bearer), &update_op(), json!({ "input": base })).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body}");
        let body = app.gql(Some(bearer), &read_op(), json!({})).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN", "{body}");
    }
    // Another tenant's policy is its own.
    let other = app.gql(Some(&b.admin_token), &read_op(), json!({})).await["data"]["tenantKeyPolicy"].clone();
    assert!(other["maxLifetimeDays"].is_null() && other["requireExpiry"] == false, "{other}");
    app.generate(&b.admin_token, &b.integration, "No expiry needed here").await;
    app.stop().await;
}

/// How many notices of `kind` the notifiers delivered.
fn delivered(notifiers: &[&RecordingNotifier], kind: NoticeKind) -> Vec<latchkey_domain::Notice> {
    notifiers.iter().flat_map(|n| n.delivered()).filter(|e| e.kind == kind).collect()
}

/// Waits until `condition` holds (10 s at most).
async fn until(what: &str, condition: impl AsyncFn() -> bool) {
    for _ in 0..400 {
        if condition().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

const BREAKING: &str = "{ apiKeys(violatesPolicy: true) { totalCount nodes { id policyViolations } } }";

async fn a_policy_over_existing_keys_flags_them_and_mails_each_owner_once(app: TestApp) {
    let s = app.seed("Acme").await;
    let token = &s.admin_token;
    let (open_a, secret, _) = app.generate(token, &s.integration, "Open A").await;
    let (open_b, _, _) = app.generate(token, &s.integration, "Open B").await;
    let (theirs, _, _) = app.generate(token, &s.other_admin, "Theirs").await;
    let restricted = json!({ "ownerId": s.integration.id, "description": "Restricted",
        "restrictions": { "permissions": ["users:read"] } });
    let body = app.gql(Some(token), ops::GENERATE_RESTRICTED, json!({ "input": restricted })).await;
    let complying = body["data"]["generateApiKey"]["apiKey"]["id"].as_str().unwrap().to_owned();
    let body = app.gql(Some(token), BREAKING, json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 0, "no policy, nothing breaks it: {body}");

    set_policy(&app, token, json!({ "requireExpiry": false, "requireRestrictions": true })).await;
    let body = app.gql(Some(token), BREAKING, json!({})).await;
    let page = &body["data"]["apiKeys"];
    assert_eq!(page["totalCount"], 3, "{body}");
    let mut flagged: Vec<&str> = page["nodes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    flagged.sort();
    let mut expected = vec![open_a.as_str(), open_b.as_str(), theirs.as_str()];
    expected.sort();
    assert_eq!(flagged, expected, "the complying key {complying} is not listed");
    assert!(page["nodes"].as_array().unwrap().iter().all(|n| n["policyViolations"] == json!(["requireRestrictions"])));
    assert_eq!(app.verify(&secret).await["valid"], true, "nothing stops");

    // Each owner is mailed once, listing their keys that break it.
    until("the owners' notices", async || delivered(&[&app.notifier], NoticeKind::KeysBreakPolicy).len() >= 2).await;
    let notices = delivered(&[&app.notifier], NoticeKind::KeysBreakPolicy);
    assert_eq!(notices.len(), 2, "{notices:?}");
    let integration = notices.iter().find(|n| n.owner_id == s.integration.id).unwrap();
    let mut listed: Vec<_> = integration.suspension.as_ref().unwrap().keys.iter().map(|(_, d)| d.clone()).collect();
    listed.sort();
    assert_eq!(listed, ["Open A", "Open B"]);
    assert!(notices.iter().any(|n| n.owner_id == s.other_admin.id));
    let settings =
        latchkey_notify::mail::MailSettings::new("Latchkey <keys@latchkey.example>", "https://admin.example").unwrap();
    let message = latchkey_notify::mail::compose(integration, &settings).unwrap().formatted();
    let message = String::from_utf8(message).unwrap();
    assert!(message.contains("2 of your API keys break the new key policy"), "{message}");
    assert!(message.contains("Open A") && message.contains("Open B"), "{message}");

    // Lifted: the filter is empty, and no owner is mailed.
    set_policy(&app, token, json!({ "requireExpiry": false, "requireRestrictions": false })).await;
    let body = app.gql(Some(token), BREAKING, json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 0, "{body}");
    until("the admins' notices of the change", async || {
        delivered(&[&app.notifier], NoticeKind::PolicyChanged).len() >= 4
    })
    .await;
    assert_eq!(delivered(&[&app.notifier], NoticeKind::KeysBreakPolicy).len(), 2, "no more owner mail");
    app.stop().await;
}

/// A key's unused-key state: (status, disabledReason, unusedDisableAt).
async fn unused_state(app: &TestApp, token: &str, id: &str) -> (String, Value, Value) {
    let query = "query($id: ID!) { apiKey(id: $id) { status disabledReason unusedDisableAt } }";
    let key = app.gql(Some(token), query, json!({ "id": id })).await["data"]["apiKey"].clone();
    (
        key["status"].as_str().unwrap_or_else(|| panic!("{key}")).to_owned(),
        key["disabledReason"].clone(),
        key["unusedDisableAt"].clone(),
    )
}

/// Verifies `secret`, and waits until its use is recorded as the key's last.
async fn use_key(app: &TestApp, token: &str, id: &str, secret: &str) {
    assert_eq!(app.verify(secret).await["valid"], true);
    let query = "query($id: ID!) { apiKey(id: $id) { lastUsedAt } }";
    let now = app.now();
    until("the use recorded", async || {
        let key = app.gql(Some(token), query, json!({ "id": id })).await;
        key["data"]["apiKey"]["lastUsedAt"].as_str().and_then(|at| at.parse::<DateTime<Utc>>().ok()) == Some(now)
    })
    .await;
}

async fn unused_keys_are_warned_then_disabled_once_across_replicas_and_restarts(db: TestDb) {
    let (app, clock) = TestApp::start_clocked(db).await;
    let s = app.seed("Acme").await;
    let token = || app.token(&s.admin, latchkey_domain::Cloud::Employee);
    let (used_after_warning, secret_a, _) = app.generate(&token(), &s.integration, "A: used after the warning").await;
    let (used_early, secret_b, _) = app.generate(&token(), &s.integration, "B: used on day 10").await;
    let (re_enabled, _, _) = app.generate(&token(), &s.integration, "C: enabled again").await;
    let (never_used, secret_d, _) = app.generate(&token(), &s.integration, "D: never used").await;
    let start = app.now();
    set_policy(
        &app,
        &token(),
        json!({ "requireExpiry": false, "requireRestrictions": false,
        "disableUnusedAfterDays": 30 }),
    )
    .await;
    let (replica, second) = app.replica().await;
    let warnings = |notifiers: &[&RecordingNotifier]| delivered(notifiers, NoticeKind::UnusedWarning).len();

    clock.advance(Span::days(10));
    use_key(&app, &token(), &used_early, &secret_b).await;
    // A week before 30 days are up: A, C and D are warned, once between the replicas.
    clock.advance(Span::days(13));
    until("three warnings", async || warnings(&[&app.notifier, &second]) == 3).await;
    let (status, reason, disable_at) = unused_state(&app, &token(), &never_used).await;
    assert_eq!((status.as_str(), reason), ("ACTIVE", Value::Null));
    assert_eq!(disable_at.as_str().unwrap().parse::<DateTime<Utc>>().unwrap(), start + Span::days(30));
    assert_eq!(unused_state(&app, &token(), &used_early).await.2, Value::Null, "B is not due yet");
    let warning = delivered(&[&app.notifier, &second], NoticeKind::UnusedWarning)
        .into_iter()
        .find(|n| n.key_id.to_string() == never_used)
        .unwrap();
    let settings =
        latchkey_notify::mail::MailSettings::new("Latchkey <keys@latchkey.example>", "https://admin.example").unwrap();
    let message = String::from_utf8(latchkey_notify::mail::compose(&warning, &settings).unwrap().formatted()).unwrap();
    assert!(message.contains("Subject: Your API key \"D: never used\" will be disabled for going unused"), "{message}");

    // A use restarts A's clock; disabling and enabling restarts C's.
    clock.advance(Span::days(2));
    use_key(&app, &token(), &used_after_warning, &secret_a).await;
    for op in [ops::DISABLE, ops::ENABLE] {
        let body = app.gql(Some(&token()), op, json!({ "id": re_enabled })).await;
        assert!(body["errors"].is_null(), "{body}");
    }
    assert_eq!(unused_state(&app, &token(), &re_enabled).await, ("ACTIVE".into(), Value::Null, Value::Null));
    // A replica restarts; on day 30 only D is disabled, once.
    replica.stop().await;
    let (replica, third) = app.replica().await;
    let all = [&app.notifier, &second, &third];
    clock.advance(Span::days(5));
    until("D disabled", async || delivered(&all, NoticeKind::DisabledUnused).len() == 1).await;
    assert_eq!(unused_state(&app, &token(), &never_used).await, ("DISABLED".into(), json!("UNUSED"), Value::Null));
    assert_eq!(app.verify(&secret_d).await["code"], "DISABLED");
    for id in [&used_after_warning, &re_enabled, &used_early] {
        assert_eq!(unused_state(&app, &token(), id).await.0, "ACTIVE", "{id}");
    }
    let events = app
        .gql(
            Some(&token()),
            "query($k: ID!) { apiKeyEvents(keyId: $k, first: 10) { nodes { action actorName } } }",
            json!({ "k": never_used }),
        )
        .await;
    let actions = events["data"]["apiKeyEvents"]["nodes"].as_array().unwrap().clone();
    assert!(actions.iter().any(|e| e["action"] == "DISABLED" && e["actorName"] == "Latchkey"), "{actions:?}");
    // Day 33: B's warning (10 days + 23); the passes since D's disabling sent nothing again.
    clock.advance(Span::days(3));
    until("B's warning", async || warnings(&all) == 4).await;
    assert_eq!((warnings(&all), delivered(&all, NoticeKind::DisabledUnused).len()), (4, 1));
    // Enabling D starts its clock over: working, no pending warning.
    let body = app.gql(Some(&token()), ops::ENABLE, json!({ "id": never_used })).await;
    assert!(body["errors"].is_null(), "{body}");
    assert_eq!(unused_state(&app, &token(), &never_used).await, ("ACTIVE".into(), Value::Null, Value::Null));
    assert_eq!(app.verify(&secret_d).await["valid"], true);
    replica.stop().await;
    app.stop().await;
}
