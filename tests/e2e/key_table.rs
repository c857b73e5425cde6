//! The key table: newest first, cursor paging, search, owner filter, owner
//! candidates, legacy keys, argument errors.

use chrono::Utc;
use latchkey_domain::hashing::hash_secret;
use latchkey_domain::{ApiKeySecret, Description};
use latchkey_store::{NewCredential, NewKey};
use latchkey_tests::{TestApp, error_code};
use serde_json::{Value, json};

on_both_backends!(
    pages_newest_first_with_cursors,
    search_and_owner_filters,
    argument_errors_are_bad_user_input,
    owner_candidates_are_admins_and_integration_users_viewer_first,
    legacy_keys_have_no_last_edit,
);

const PAGE: &str = "query($first: Int, $after: String, $owner: ID, $search: String) { \
    apiKeys(first: $first, after: $after, ownerId: $owner, search: $search) { totalCount totalCountCapped \
    edges { cursor node { id description } } nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }";

fn descriptions(body: &Value) -> Vec<String> {
    body["data"]["apiKeys"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|e| e["node"]["description"].as_str().unwrap().to_owned())
        .collect()
}

async fn pages_newest_first_with_cursors(app: TestApp) {
    let s = app.seed("Acme").await;
    for i in 0..7 {
        app.generate(&s.admin_token, &s.integration, &format!("key {i}")).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let body = app.gql(Some(&s.admin_token), PAGE, json!({ "first": 3, "after": after })).await;
        let conn = &body["data"]["apiKeys"];
        assert_eq!((&conn["totalCount"], &conn["totalCountCapped"]), (&json!(7), &json!(false)), "{body}");
        assert_eq!(conn["nodes"].as_array().unwrap().len(), conn["edges"].as_array().unwrap().len());
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], after.is_some());
        assert_eq!(conn["pageInfo"]["startCursor"], conn["edges"][0]["cursor"]);
        seen.extend(descriptions(&body));
        pages += 1;
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = Some(conn["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..7).rev().map(|i| format!("key {i}")).collect();
    assert_eq!(seen, expected, "newest first, each key once");

    // Default page size is 50 and covers all seven.
    let body = app
        .gql(Some(&s.admin_token), "{ apiKeys { nodes { id } pageInfo { hasNextPage endCursor } } }", json!({}))
        .await;
    assert_eq!(body["data"]["apiKeys"]["nodes"].as_array().unwrap().len(), 7);
    assert_eq!(body["data"]["apiKeys"]["pageInfo"]["hasNextPage"], false);
    // After the last key: an empty page.
    let last = body["data"]["apiKeys"]["pageInfo"]["endCursor"].as_str().unwrap();
    let body = app.gql(Some(&s.admin_token), PAGE, json!({ "after": last })).await;
    assert_eq!(descriptions(&body), Vec::<String>::new());
    assert_eq!(body["data"]["apiKeys"]["pageInfo"]["endCursor"], Value::Null);
    app.stop().await;
}

async fn search_and_owner_filters(app: TestApp) {
    let s = app.seed("Acme").await;
    app.generate(&s.admin_token, &s.integration, "Salesforce SYNC").await;
    app.generate(&s.admin_token, &s.admin, "salesforce backup").await;
    app.generate(&s.admin_token, &s.integration, "Zürich ÄRGER export").await;
    app.generate(&s.admin_token, &s.other_admin, "100% coverage_report").await;
    app.generate(&s.admin_token, &s.other_admin, "1000 coverageXreport").await;

    let search = |term: &str| json!({ "search": term });
    let body = app.gql(Some(&s.admin_token), PAGE, search("SALESforce")).await;
    assert_eq!(descriptions(&body), vec!["salesforce backup", "Salesforce SYNC"]);
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 2);
    let body = app.gql(Some(&s.admin_token), PAGE, search("ärger")).await;
    assert_eq!(descriptions(&body), vec!["Zürich ÄRGER export"], "Unicode case folding on every backend");
    // LIKE wildcards in the term are literal.
    let body = app.gql(Some(&s.admin_token), PAGE, search("0%")).await;
    assert_eq!(descriptions(&body), vec!["100% coverage_report"]);
    let body = app.gql(Some(&s.admin_token), PAGE, search("e_r")).await;
    assert_eq!(descriptions(&body), vec!["100% coverage_report"]);
    let body = app.gql(Some(&s.admin_token), PAGE, search("   ")).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 5, "blank search matches all");
    let body = app.gql(Some(&s.admin_token), PAGE, search("nothing like it")).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 0);

    let body = app.gql(Some(&s.admin_token), PAGE, json!({ "owner": s.integration.id })).await;
    assert_eq!(descriptions(&body), vec!["Zürich ÄRGER export", "Salesforce SYNC"]);
    let body = app.gql(Some(&s.admin_token), PAGE, json!({ "owner": s.integration.id, "search": "sync" })).await;
    assert_eq!(descriptions(&body), vec!["Salesforce SYNC"]);
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 1);
    for unknown in [json!("not-an-id"), json!(uuid::Uuid::now_v7())] {
        let body = app.gql(Some(&s.admin_token), PAGE, json!({ "owner": unknown })).await;
        assert_eq!(body["data"]["apiKeys"]["totalCount"], 0, "{body}");
    }
    app.stop().await;
}

async fn argument_errors_are_bad_user_input(app: TestApp) {
    let s = app.seed("Acme").await;
    for vars in [
        json!({ "first": 0 }),
        json!({ "first": 101 }),
        json!({ "first": -5 }),
        json!({ "after": "not a cursor" }),
        json!({ "after": "a2V5Om5vcGU" }),
        json!({ "search": "s".repeat(256) }),
    ] {
        let body = app.gql(Some(&s.admin_token), PAGE, vars.clone()).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{vars}: {body}");
        assert_eq!(body["data"], Value::Null);
    }
    let body = app.gql(Some(&s.admin_token), PAGE, json!({ "first": 100 })).await;
    assert!(body.get("errors").is_none(), "{body}");
    // A wrongly typed variable is refused by validation, with a code.
    let body = app.gql(Some(&s.admin_token), PAGE, json!({ "first": "ten" })).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let body = app.gql(Some(&s.admin_token), "{ apiKeys { nope } }", json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    app.stop().await;
}

async fn owner_candidates_are_admins_and_integration_users_viewer_first(app: TestApp) {
    let s = app.seed("Acme").await;
    app.seed("Other").await;
    let other_token = app.token(&s.other_admin, latchkey_domain::Cloud::Employee);
    let body = app.gql(Some(&other_token), "{ apiKeyOwnerCandidates { id role } }", json!({})).await;
    let ids: Vec<&str> =
        body["data"]["apiKeyOwnerCandidates"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap()).collect();
    let expected_rest = {
        let mut rest =
            vec![(&s.admin.name, s.admin.id.to_string()), (&s.integration.name, s.integration.id.to_string())];
        rest.sort();
        rest.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
    };
    assert_eq!(ids[0], s.other_admin.id.to_string(), "the viewer first");
    assert_eq!(ids[1..].to_vec(), expected_rest.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!body.to_string().contains("ACADEMY_ADMIN"));
    app.stop().await;
}

async fn legacy_keys_have_no_last_edit(app: TestApp) {
    let s = app.seed("Acme").await;
    let secret = ApiKeySecret::generate().unwrap();
    let credential = NewCredential::new(&secret, hash_secret(&secret));
    let created_at = Utc::now() - chrono::Duration::days(365);
    let new = NewKey::new(s.tenant.id, s.integration.id, Description::parse("Old HR export").unwrap(), credential);
    app.store.import_legacy_key(new, created_at).await.unwrap();
    app.generate(&s.admin_token, &s.integration, "New key").await;
    let body = app
        .gql(
            Some(&s.admin_token),
            "{ apiKeys { nodes { description createdBy { id } lastEditedAt lastEditedBy { id } } } }",
            json!({}),
        )
        .await;
    let nodes = body["data"]["apiKeys"]["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["description"], "New key");
    assert_eq!(
        nodes[1],
        json!({ "description": "Old HR export", "createdBy": null, "lastEditedAt": null, "lastEditedBy": null })
    );
    assert_eq!(app.verify(secret.expose()).await["valid"], true, "legacy keys still work");
    app.stop().await;
}
