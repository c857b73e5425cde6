//! Tenant isolation: an admin of tenant B can neither see nor change tenant
//! A's keys, and A's keys are untouched afterwards.

use latchkey_tests::TestApp;
use serde_json::{Value, json};

on_both_backends!(tenants_cannot_see_or_touch_each_others_keys);

const TABLE: &str = "{ apiKeys { totalCount nodes { id description lastFour lastEditedAt lastEditedBy { id } } } }";

async fn tenants_cannot_see_or_touch_each_others_keys(app: TestApp) {
    let a = app.seed("Tenant A").await;
    let b = app.seed("Tenant B").await;
    let (a_key, a_secret, _) = app.generate(&a.admin_token, &a.integration, "A's key").await;
    let (b_key, _, _) = app.generate(&b.admin_token, &b.integration, "B's key").await;
    let before = app.gql(Some(&a.admin_token), TABLE, json!({})).await;

    // B lists only its own key and cannot read A's, by id or by search.
    let body = app.gql(Some(&b.admin_token), TABLE, json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 1);
    assert_eq!(body["data"]["apiKeys"]["nodes"][0]["id"], b_key);
    let body =
        app.gql(Some(&b.admin_token), "query($id: ID!) { apiKey(id: $id) { id } }", json!({ "id": a_key })).await;
    assert_eq!(body["data"]["apiKey"], Value::Null);
    assert!(body.get("errors").is_none(), "no hint that it exists: {body}");
    let body = app.gql(Some(&b.admin_token), "{ apiKeys(search: \"A's\") { totalCount } }", json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 0);
    let body = app
        .gql(
            Some(&b.admin_token),
            "query($o: ID) { apiKeys(ownerId: $o) { totalCount } }",
            json!({ "o": a.integration.id }),
        )
        .await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 0);
    let body = app.gql(Some(&b.admin_token), "{ apiKeyOwnerCandidates { id } }", json!({})).await;
    assert!(!body.to_string().contains(&a.admin.id.to_string()));

    // B cannot rotate, edit or delete A's key; the answer is the same as for a
    // key that does not exist.
    for (q, name) in [
        ("mutation($id: ID!) { rotateApiKey(input: {id: $id}) { secret userErrors { code field } } }", "rotateApiKey"),
        (
            "mutation($id: ID!) { updateApiKeyDescription(input: {id: $id, description: \"pwned\"}) { apiKey { id } userErrors { code field } } }",
            "updateApiKeyDescription",
        ),
        (
            "mutation($id: ID!) { deleteApiKey(input: {id: $id}) { deletedApiKeyId userErrors { code field } } }",
            "deleteApiKey",
        ),
    ] {
        let body = app.gql(Some(&b.admin_token), q, json!({ "id": a_key })).await;
        let unknown = app.gql(Some(&b.admin_token), q, json!({ "id": uuid::Uuid::now_v7() })).await;
        assert_eq!(body, unknown, "{name}: another tenant's key looks like no key");
        assert_eq!(body["data"][name]["userErrors"][0]["code"], "NOT_FOUND");
    }
    // B cannot give its key to A's user either.
    let body = app
        .gql(
            Some(&b.admin_token),
            latchkey_tests::ops::GENERATE,
            json!({ "input": { "ownerId": a.admin.id, "description": "x" } }),
        )
        .await;
    assert_eq!(body["data"]["generateApiKey"]["userErrors"][0]["code"], "NOT_FOUND");

    // A's key is untouched and still works.
    let after = app.gql(Some(&a.admin_token), TABLE, json!({})).await;
    assert_eq!(before, after);
    assert_eq!(app.verify(&a_secret).await["valid"], true);
    // A's key authenticates as tenant A only.
    let body = app.gql(Some(&a_secret), "{ viewer { tenant { id } } }", json!({})).await;
    assert_eq!(body["data"]["viewer"]["tenant"]["id"], a.tenant.id.to_string());
    // Only the two generate events exist.
    assert_eq!(app.store.list_events(None, 100).await.unwrap().len(), 2);
    app.stop().await;
}
