//! Generate, rotate, edit, delete: success, every user error, and the events.

use latchkey_domain::{NoticeKind, secret::KEY_LEN};
use latchkey_tests::TestApp;
use latchkey_tests::ops::GENERATE;
use serde_json::{Value, json};

on_both_backends!(
    generate_returns_the_secret_once_and_lists_the_key,
    generate_refuses_bad_input_and_changes_nothing,
    rotate_replaces_the_secret_and_keeps_the_key,
    update_description_edits_only_the_description,
    delete_removes_the_key_and_its_secret,
    unknown_or_malformed_ids_are_not_found,
    create_rotate_delete_each_emit_one_event_and_edit_none,
);

use latchkey_tests::ops::{DELETE, GET_KEY as GET, ROTATE, UPDATE_DESCRIPTION as UPDATE};

async fn total(app: &TestApp, token: &str) -> i64 {
    let body = app.gql(Some(token), "{ apiKeys { totalCount } }", json!({})).await;
    body["data"]["apiKeys"]["totalCount"].as_i64().unwrap()
}

async fn generate_returns_the_secret_once_and_lists_the_key(app: TestApp) {
    let s = app.seed("Acme").await;
    for owner in [&s.integration, &s.admin, &s.other_admin] {
        let (id, secret, payload) = app.generate(&s.admin_token, owner, "  Salesforce sync  ").await;
        assert_eq!(secret.len(), KEY_LEN);
        assert!(secret.starts_with("lk_") && secret[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        let key = &payload["apiKey"];
        assert_eq!(key["lastFour"], &secret[secret.len() - 4..]);
        assert_eq!(key["description"], "Salesforce sync", "trimmed");
        assert_eq!(key["owner"]["id"], owner.id.to_string());
        assert_eq!(key["createdBy"]["id"], s.admin.id.to_string());
        assert_eq!(key["lastEditedBy"]["id"], s.admin.id.to_string());
        assert_eq!(key["lastEditedAt"], key["createdAt"], "a new key's last edit is its creation");
        assert_eq!(key["lastUsedAt"], Value::Null);

        let body = app.gql(Some(&s.admin_token), GET, json!({ "id": id })).await;
        assert_eq!(body["data"]["apiKey"]["lastFour"], key["lastFour"]);
        assert!(!body.to_string().contains(&secret), "the secret is never returned again");
        // The secret works.
        let verdict = app.verify(&secret).await;
        assert_eq!(verdict["valid"], true, "{verdict}");
        assert_eq!(verdict["keyId"], id);
        assert_eq!(verdict["ownerId"], owner.id.to_string());
    }
    assert_eq!(total(&app, &s.admin_token).await, 3);
    app.stop().await;
}

async fn generate_refuses_bad_input_and_changes_nothing(app: TestApp) {
    let s = app.seed("Acme").await;
    let other = app.seed("Other").await;
    let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
        (json!({ "ownerId": s.integration.id, "description": "" }), vec![("description", "BLANK")]),
        (json!({ "ownerId": s.integration.id, "description": "   \t " }), vec![("description", "BLANK")]),
        // Shows nothing: zero-width spaces, a right-to-left mark, a Hangul filler.
        (json!({ "ownerId": s.integration.id, "description": "\u{200b}\u{200b}" }), vec![("description", "BLANK")]),
        (json!({ "ownerId": s.integration.id, "description": " \u{200f}\u{3164} " }), vec![("description", "BLANK")]),
        (json!({ "ownerId": s.integration.id, "description": "x".repeat(256) }), vec![("description", "TOO_LONG")]),
        (json!({ "ownerId": s.integration.id, "description": "a\r\nBcc: x@evil" }), vec![("description", "INVALID")]),
        (json!({ "ownerId": s.integration.id, "description": "nul\u{0}" }), vec![("description", "INVALID")]),
        (json!({ "ownerId": "not-a-uuid", "description": "ok" }), vec![("ownerId", "NOT_FOUND")]),
        (json!({ "ownerId": uuid::Uuid::now_v7(), "description": "ok" }), vec![("ownerId", "NOT_FOUND")]),
        (json!({ "ownerId": other.integration.id, "description": "ok" }), vec![("ownerId", "NOT_FOUND")]),
        (json!({ "ownerId": s.academy_admin.id, "description": "ok" }), vec![("ownerId", "INVALID_OWNER")]),
        (
            json!({ "ownerId": s.academy_admin.id, "description": "" }),
            vec![("description", "BLANK"), ("ownerId", "INVALID_OWNER")],
        ),
    ];
    for (input, expected) in cases {
        let body = app.gql(Some(&s.admin_token), GENERATE, json!({ "input": input })).await;
        let payload = &body["data"]["generateApiKey"];
        assert_eq!(payload["apiKey"], Value::Null, "{body}");
        assert_eq!(payload["secret"], Value::Null);
        let errors = payload["userErrors"].as_array().unwrap();
        let got: Vec<(String, String)> = errors
            .iter()
            .map(|e| (e["field"][1].as_str().unwrap().to_owned(), e["code"].as_str().unwrap().to_owned()))
            .collect();
        let want: Vec<(String, String)> = expected.iter().map(|(f, c)| (f.to_string(), c.to_string())).collect();
        assert_eq!(got, want, "{input}");
        for e in errors {
            assert_eq!(e["field"][0], "input");
            assert!(!e["message"].as_str().unwrap().is_empty());
        }
    }
    // 255 characters (not bytes) is fine.
    app.generate(&s.admin_token, &s.integration, &"é".repeat(255)).await;
    assert_eq!(total(&app, &s.admin_token).await, 1, "only the valid generate created a key");
    assert_eq!(app.store.list_events(None, 100).await.unwrap().len(), 1, "and only one event");
    app.stop().await;
}

async fn rotate_replaces_the_secret_and_keeps_the_key(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, old_secret, created) = app.generate(&s.admin_token, &s.integration, "Rotating").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let other_token = app.token(&s.other_admin, latchkey_domain::Cloud::Employee);
    let body = app.gql(Some(&other_token), ROTATE, json!({ "id": id })).await;
    let payload = &body["data"]["rotateApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    let new_secret = payload["secret"].as_str().unwrap();
    assert_ne!(new_secret, old_secret);
    assert_eq!(payload["apiKey"]["id"], id, "same key record");
    assert_eq!(payload["apiKey"]["lastFour"], &new_secret[new_secret.len() - 4..]);
    assert_eq!(payload["apiKey"]["createdAt"], created["apiKey"]["createdAt"]);
    assert_eq!(payload["apiKey"]["lastEditedBy"]["id"], s.other_admin.id.to_string());
    assert!(payload["apiKey"]["lastEditedAt"].as_str().unwrap() > created["apiKey"]["lastEditedAt"].as_str().unwrap());
    // The old secret stops working at once; the new one works.
    assert_eq!(app.verify(&old_secret).await["valid"], false);
    assert_eq!(app.verify(new_secret).await["valid"], true);
    assert_eq!(
        app.gql(Some(&old_secret), "{ viewer { tenant { id } } }", json!({})).await["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );
    let listed = app.gql(Some(&s.admin_token), "{ apiKeys { totalCount nodes { id lastFour } } }", json!({})).await;
    assert_eq!(listed["data"]["apiKeys"]["totalCount"], 1);
    assert_eq!(listed["data"]["apiKeys"]["nodes"][0]["lastFour"], &new_secret[new_secret.len() - 4..]);
    assert!(!listed.to_string().contains(new_secret));
    app.stop().await;
}

async fn update_description_edits_only_the_description(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, created) = app.generate(&s.admin_token, &s.integration, "Before").await;
    let other_token = app.token(&s.other_admin, latchkey_domain::Cloud::Employee);
    let body = app.gql(Some(&other_token), UPDATE, json!({ "id": id, "d": "  After  " })).await;
    let payload = &body["data"]["updateApiKeyDescription"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    assert_eq!(payload["apiKey"]["description"], "After");
    assert_eq!(payload["apiKey"]["lastFour"], created["apiKey"]["lastFour"]);
    assert_eq!(payload["apiKey"]["lastEditedBy"]["id"], s.other_admin.id.to_string());
    assert_eq!(app.verify(&secret).await["valid"], true, "the secret is untouched");

    for (d, code) in
        [("", "BLANK"), ("\u{200b}", "BLANK"), (&"y".repeat(256)[..], "TOO_LONG"), ("bad\u{7}bell", "INVALID")]
    {
        let body = app.gql(Some(&s.admin_token), UPDATE, json!({ "id": id, "d": d })).await;
        let payload = &body["data"]["updateApiKeyDescription"];
        assert_eq!(payload["apiKey"], Value::Null);
        assert_eq!(payload["userErrors"][0]["code"], code, "{body}");
        assert_eq!(payload["userErrors"][0]["field"], json!(["input", "description"]));
    }
    let body = app.gql(Some(&s.admin_token), GET, json!({ "id": id })).await;
    assert_eq!(body["data"]["apiKey"]["description"], "After", "refused edits changed nothing");
    assert_eq!(body["data"]["apiKey"]["lastEditedBy"]["id"], s.other_admin.id.to_string());
    app.stop().await;
}

async fn delete_removes_the_key_and_its_secret(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Doomed").await;
    let (keep_id, keep_secret, _) = app.generate(&s.admin_token, &s.integration, "Kept").await;
    let body = app.gql(Some(&s.admin_token), DELETE, json!({ "id": id })).await;
    assert_eq!(body["data"]["deleteApiKey"], json!({ "deletedApiKeyId": id, "userErrors": [] }));
    assert_eq!(app.gql(Some(&s.admin_token), GET, json!({ "id": id })).await["data"]["apiKey"], Value::Null);
    assert_eq!(app.verify(&secret).await["valid"], false);
    let listed = app.gql(Some(&s.admin_token), "{ apiKeys { totalCount nodes { id } } }", json!({})).await;
    assert_eq!(listed["data"]["apiKeys"]["nodes"], json!([{ "id": keep_id }]));
    assert_eq!(app.verify(&keep_secret).await["valid"], true);
    // Deleting again: NOT_FOUND, nothing else happens.
    let body = app.gql(Some(&s.admin_token), DELETE, json!({ "id": id })).await;
    assert_eq!(body["data"]["deleteApiKey"]["deletedApiKeyId"], Value::Null);
    assert_eq!(body["data"]["deleteApiKey"]["userErrors"][0]["code"], "NOT_FOUND");
    assert_eq!(body["data"]["deleteApiKey"]["userErrors"][0]["field"], json!(["input", "id"]));
    app.stop().await;
}

async fn unknown_or_malformed_ids_are_not_found(app: TestApp) {
    let s = app.seed("Acme").await;
    app.generate(&s.admin_token, &s.integration, "Some key").await;
    for id in [json!("nope"), json!(""), json!(uuid::Uuid::now_v7()), json!("00000000-0000-0000-0000-000000000000")] {
        let body = app.gql(Some(&s.admin_token), GET, json!({ "id": id })).await;
        assert_eq!(body["data"]["apiKey"], Value::Null, "{body}");
        assert!(body.get("errors").is_none());
        for (q, name, vars) in [
            (ROTATE, "rotateApiKey", json!({ "id": id })),
            (UPDATE, "updateApiKeyDescription", json!({ "id": id, "d": "x" })),
            (DELETE, "deleteApiKey", json!({ "id": id })),
        ] {
            let body = app.gql(Some(&s.admin_token), q, vars).await;
            let errors = &body["data"][name]["userErrors"];
            assert_eq!(errors[0]["code"], "NOT_FOUND", "{name} {id}: {body}");
            assert_eq!(errors[0]["field"], json!(["input", "id"]));
        }
    }
    assert_eq!(app.store.list_events(None, 100).await.unwrap().len(), 1, "no event for refused mutations");
    app.stop().await;
}

async fn create_rotate_delete_each_emit_one_event_and_edit_none(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, _, _) = app.generate(&s.admin_token, &s.integration, "Evented").await;
    let body = app.gql(Some(&s.admin_token), UPDATE, json!({ "id": id, "d": "Renamed" })).await;
    assert_eq!(body["data"]["updateApiKeyDescription"]["userErrors"], json!([]));
    let rotated = app.gql(Some(&s.admin_token), ROTATE, json!({ "id": id })).await;
    let new_last_four = rotated["data"]["rotateApiKey"]["apiKey"]["lastFour"].as_str().unwrap().to_owned();
    app.gql(Some(&s.admin_token), DELETE, json!({ "id": id })).await;

    let delivered = app.wait_for_deliveries(3).await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let delivered_after = app.notifier.delivered();
    assert_eq!(delivered_after.len(), 3, "exactly three events: {delivered:?}");
    let kinds: Vec<NoticeKind> = delivered_after.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![NoticeKind::Generated, NoticeKind::Rotated, NoticeKind::Deleted]);
    for e in &delivered_after {
        assert_eq!(e.key_id.to_string(), id);
        assert_eq!(e.owner_id, s.integration.id);
        assert_eq!(e.owner_email, s.integration.email);
        assert_eq!(e.actor_id, s.admin.id);
        assert_eq!(e.actor_name, s.admin.name);
        assert_eq!(e.tenant_id, s.tenant.id);
    }
    assert_eq!(delivered_after[0].key_description, "Evented");
    assert_eq!(delivered_after[1].key_description, "Renamed");
    assert_eq!(delivered_after[1].key_last_four, new_last_four, "rotation tells the new last four");
    assert_eq!(delivered_after[2].key_last_four, new_last_four);
    let sent = app.store.list_events(Some(latchkey_domain::EventDelivery::Sent), 10).await.unwrap();
    assert_eq!(sent.len(), 3, "the outbox marks them sent");
    app.stop().await;
}
