//! Integrations authenticate with their key in both clouds; gateways verify
//! keys at `POST /v1/keys/verify`.

use std::time::Duration;

use latchkey_domain::secret::with_checksum;
use latchkey_tests::{TestApp, error_code, ops};
use serde_json::{Value, json};

on_both_backends!(
    keys_work_in_both_clouds_on_both_endpoints,
    rotated_and_deleted_keys_are_refused_at_once_even_when_cached,
    malformed_keys_are_refused_without_the_database,
    a_key_of_one_tenant_grants_nothing_in_another,
    last_used_is_recorded_and_never_moves_backwards,
    repeated_wrong_secrets_are_rate_limited_but_a_valid_key_keeps_working,
);

fn wrong_secret_for(secret: &str) -> String {
    let wrong = with_checksum(&format!("{}{}", &secret[..15], "Z".repeat(34)));
    assert_ne!(wrong, secret);
    wrong
}

async fn keys_work_in_both_clouds_on_both_endpoints(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Gateway").await;
    for _ in 0..3 {
        let verdict = app.verify(&secret).await;
        assert_eq!(
            verdict,
            json!({
                "valid": true,
                "keyId": id,
                "tenantId": s.tenant.id.to_string(),
                "ownerId": s.integration.id.to_string(),
                "clouds": ["EMPLOYEE", "CUSTOMER"],
            })
        );
    }
    let body = app.gql(Some(&secret), "{ viewer { tenant { id } apiKey { id } clouds } }", json!({})).await;
    assert_eq!(body["data"]["viewer"]["clouds"], json!(["EMPLOYEE", "CUSTOMER"]));
    assert_eq!(body["data"]["viewer"]["apiKey"]["id"], id);
    app.stop().await;
}

async fn rotated_and_deleted_keys_are_refused_at_once_even_when_cached(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, old, _) = app.generate(&s.admin_token, &s.integration, "Cached").await;
    assert_eq!(app.verify(&old).await["valid"], true);
    assert_eq!(app.verify(&old).await["valid"], true, "now cached");
    app.gql(Some(&old), "{ viewer { apiKey { id } } }", json!({})).await;

    let new = app.rotate(&s.admin_token, &id).await;
    assert_eq!(app.verify(&old).await, json!({ "valid": false, "code": "INVALID" }), "refused at once");
    let body = app.gql(Some(&old), "{ viewer { apiKey { id } } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_eq!(app.verify(&new).await["valid"], true);
    assert_eq!(app.verify(&new).await["valid"], true, "the new secret is cached");

    app.gql(Some(&s.admin_token), ops::DELETE, json!({ "id": id })).await;
    assert_eq!(app.verify(&new).await, json!({ "valid": false, "code": "INVALID" }), "deleted: refused at once");
    let body = app.gql(Some(&new), "{ viewer { apiKey { id } } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    app.stop().await;
}

async fn malformed_keys_are_refused_without_the_database(app: TestApp) {
    let s = app.seed("Acme").await;
    let (_, secret, _) = app.generate(&s.admin_token, &s.integration, "Shape").await;
    let mut typo = secret.clone().into_bytes();
    typo[30] = if typo[30] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let malformed = vec![
        String::new(),
        "lk_".into(),
        "lk_short".into(),
        format!("sk_{}", &secret[3..]),
        format!("{secret}x"),
        typo,
        secret.replace(&secret[20..21], "-"),
        "ä".repeat(30),
    ];

    // With the key table gone, anything that reaches the database fails...
    app.db.execute("DROP TABLE api_keys").await;
    let resp = app
        .http
        .post(format!("{}/v1/keys/verify", app.url))
        .json(&json!({ "key": wrong_secret_for(&secret) }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "a well-formed key needs the database");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INTERNAL");
    // ...but malformed keys are still refused: they never touch it.
    for key in &malformed {
        assert_eq!(app.verify(key).await, json!({ "valid": false, "code": "MALFORMED" }), "{key:?}");
    }

    for bad_body in ["", "not json", "{}", "{\"key\": 5}", "[\"lk_\"]"] {
        let resp = app
            .http
            .post(format!("{}/v1/keys/verify", app.url))
            .header("content-type", "application/json")
            .body(bad_body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad_body:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "BAD_REQUEST");
    }
    app.stop().await;
}

async fn a_key_of_one_tenant_grants_nothing_in_another(app: TestApp) {
    let a = app.seed("Tenant A").await;
    let b = app.seed("Tenant B").await;
    let (_, a_secret, _) = app.generate(&a.admin_token, &a.integration, "A's").await;
    app.generate(&b.admin_token, &b.integration, "B's").await;
    assert_eq!(app.verify(&a_secret).await["tenantId"], a.tenant.id.to_string());
    let body = app.gql(Some(&a_secret), "{ viewer { tenant { id name } } }", json!({})).await;
    assert_eq!(body["data"]["viewer"]["tenant"]["name"], "Tenant A");
    for query in ["{ apiKeys { totalCount } }", "{ apiKeyOwnerCandidates { id } }"] {
        let body = app.gql(Some(&a_secret), query, json!({})).await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{query}");
    }
    app.stop().await;
}

async fn last_used_is_recorded_and_never_moves_backwards(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, payload) = app.generate(&s.admin_token, &s.integration, "Used").await;
    assert_eq!(payload["apiKey"]["lastUsedAt"], Value::Null);
    let get = "query($id: ID!) { apiKey(id: $id) { lastUsedAt } }";
    let last_used = || async {
        app.gql(Some(&s.admin_token), get, json!({ "id": id })).await["data"]["apiKey"]["lastUsedAt"].clone()
    };

    let before = chrono::Utc::now();
    app.verify(&secret).await;
    let mut first = Value::Null;
    for _ in 0..50 {
        first = last_used().await;
        if !first.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_at: chrono::DateTime<chrono::Utc> = first.as_str().expect("lastUsedAt is set").parse().unwrap();
    assert!(first_at >= before - chrono::Duration::seconds(1) && first_at <= chrono::Utc::now());

    tokio::time::sleep(Duration::from_millis(50)).await;
    app.gql(Some(&secret), "{ viewer { apiKey { id } } }", json!({})).await;
    let mut second_at = first_at;
    for _ in 0..50 {
        second_at = last_used().await.as_str().unwrap().parse().unwrap();
        if second_at > first_at {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(second_at > first_at, "GraphQL use counts too");
    // A late, older report cannot move it back.
    app.store.record_key_use(&[(id.parse().unwrap(), first_at - chrono::Duration::hours(1))]).await.unwrap();
    let after: chrono::DateTime<chrono::Utc> = last_used().await.as_str().unwrap().parse().unwrap();
    assert_eq!(after, second_at);
    app.stop().await;
}

async fn repeated_wrong_secrets_are_rate_limited_but_a_valid_key_keeps_working(app: TestApp) {
    let s = app.seed("Acme").await;
    let (_, secret, _) = app.generate(&s.admin_token, &s.integration, "Target").await;
    assert_eq!(app.verify(&secret).await["valid"], true);
    let wrong = wrong_secret_for(&secret);
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(app.verify(&wrong).await["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(codes[..10], vec!["INVALID"; 10][..], "{codes:?}");
    assert_eq!(codes[10..], ["RATE_LIMITED", "RATE_LIMITED"], "{codes:?}");
    assert_eq!(app.verify(&secret).await["valid"], true, "the valid (cached) key keeps working");
    assert_eq!(app.gql(Some(&secret), "{ viewer { apiKey { id } } }", json!({})).await["errors"], Value::Null);

    // Guessing across many lookup ids from one address hits the per-client limit.
    let mut last = Value::Null;
    for _ in 0..310 {
        let other = latchkey_domain::ApiKeySecret::generate().unwrap();
        last = app.verify(other.expose()).await;
    }
    assert_eq!(last["code"], "RATE_LIMITED");
    assert_eq!(app.verify(&secret).await["valid"], true, "still working");
    app.stop().await;
}
