//! The audit trail: every generate, rotate, description change and delete,
//! tenant-scoped, newest first, kept after the key is deleted.

use latchkey_tests::{TestApp, error_code, ops};
use serde_json::{Value, json};

on_both_backends!(audit_trail_records_every_change_and_outlives_the_key);

const EVENTS: &str = "query($key: ID, $first: Int, $after: String) { apiKeyEvents(keyId: $key, first: $first, after: $after) { \
    totalCount pageInfo { hasNextPage endCursor } nodes { action keyId keyDescription keyLastFour actor { id } actorName \
    occurredAt oldDescription newDescription } } }";

async fn audit_trail_records_every_change_and_outlives_the_key(app: TestApp) {
    let s = app.seed("Acme").await;
    let other = app.seed("Other").await;
    let (id, _, _) = app.generate(&s.admin_token, &s.integration, "Audited").await;
    let (other_id, _, _) = app.generate(&s.admin_token, &s.admin, "Another").await;
    app.gql(Some(&s.admin_token), ops::UPDATE_DESCRIPTION, json!({ "id": id, "d": "Renamed" })).await;
    // A refused edit is not audited.
    app.gql(Some(&s.admin_token), ops::UPDATE_DESCRIPTION, json!({ "id": id, "d": "" })).await;
    let rotated = app.gql(Some(&s.admin_token), ops::ROTATE, json!({ "id": id })).await;
    let last_four = rotated["data"]["rotateApiKey"]["apiKey"]["lastFour"].clone();
    app.gql(Some(&s.admin_token), ops::DELETE, json!({ "id": id })).await;

    let body = app.gql(Some(&s.admin_token), EVENTS, json!({ "key": id })).await;
    let conn = &body["data"]["apiKeyEvents"];
    assert_eq!(conn["totalCount"], 4, "{body}");
    let nodes = conn["nodes"].as_array().unwrap();
    let actions: Vec<&str> = nodes.iter().map(|n| n["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["DELETED", "ROTATED", "DESCRIPTION_CHANGED", "GENERATED"], "newest first");
    let edit = &nodes[2];
    assert_eq!(edit["oldDescription"], "Audited");
    assert_eq!(edit["newDescription"], "Renamed");
    assert_eq!(nodes[1]["keyLastFour"], last_four);
    assert_eq!(nodes[0]["keyDescription"], "Renamed");
    for n in nodes {
        assert_eq!(n["keyId"], id);
        assert_eq!(n["actor"]["id"], s.admin.id.to_string());
        assert_eq!(n["actorName"], s.admin.name);
        assert!(n["occurredAt"].is_string());
    }
    assert_eq!(nodes[3]["oldDescription"], Value::Null);

    // The whole tenant's trail, paged.
    let page1 = app.gql(Some(&s.admin_token), EVENTS, json!({ "first": 3 })).await;
    assert_eq!(page1["data"]["apiKeyEvents"]["totalCount"], 5);
    assert_eq!(page1["data"]["apiKeyEvents"]["pageInfo"]["hasNextPage"], true);
    let after = page1["data"]["apiKeyEvents"]["pageInfo"]["endCursor"].clone();
    let page2 = app.gql(Some(&s.admin_token), EVENTS, json!({ "first": 3, "after": after })).await;
    let rest: Vec<&str> = page2["data"]["apiKeyEvents"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["keyId"].as_str().unwrap())
        .collect();
    assert_eq!(rest, [other_id.as_str(), id.as_str()]);

    // Tenant-scoped: another tenant sees nothing of it; bad input is refused.
    let theirs = app.gql(Some(&other.admin_token), EVENTS, json!({ "key": id })).await;
    assert_eq!(theirs["data"]["apiKeyEvents"]["totalCount"], 0);
    assert_eq!(
        app.gql(Some(&s.admin_token), EVENTS, json!({ "key": "nope" })).await["data"]["apiKeyEvents"]["totalCount"],
        0
    );
    assert_eq!(error_code(&app.gql(Some(&s.admin_token), EVENTS, json!({ "first": 0 })).await), "BAD_USER_INPUT");
    assert_eq!(error_code(&app.gql(Some(&s.admin_token), EVENTS, json!({ "after": "junk" })).await), "BAD_USER_INPUT");
    let academy = app.token(&s.academy_admin, latchkey_domain::Cloud::Customer);
    assert_eq!(error_code(&app.gql(Some(&academy), EVENTS, json!({})).await), "FORBIDDEN");
    app.stop().await;
}
