//! Authentication and authorisation: every error code of the contract.

use chrono::Utc;
use latchkey_domain::Cloud;
use latchkey_domain::admin_token::{AdminClaims, AdminTokenKey};
use latchkey_tests::{TestApp, error_code, ops};
use serde_json::{Value, json};

on_both_backends!(
    missing_or_bad_credentials_are_unauthenticated,
    viewer_describes_admins_in_their_cloud,
    only_internal_admins_in_the_employee_cloud_manage_keys,
    key_authenticated_callers_see_their_key_but_cannot_manage_keys,
);

const KEYS: &str = "{ apiKeys { totalCount } }";

async fn missing_or_bad_credentials_are_unauthenticated(app: TestApp) {
    let s = app.seed("Acme").await;
    let now = Utc::now().timestamp();
    let claims =
        |exp: i64| AdminClaims { sub: s.admin.id, tid: s.tenant.id, cloud: Cloud::Employee, exp, iat: now - 7200 };
    let expired = app.token_key.sign(&claims(now - 3600));
    let foreign_key = AdminTokenKey::new(b"some-other-secret-some-other-secret!").unwrap();
    let wrong_signature = foreign_key.sign(&claims(now + 3600));
    // a real user id, but claimed for another tenant
    let other = app.seed("Other").await;
    let wrong_tenant = app.token_key.sign(&AdminClaims {
        sub: s.admin.id,
        tid: other.tenant.id,
        cloud: Cloud::Employee,
        exp: now + 3600,
        iat: now,
    });

    let body = app.gql(None, KEYS, json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    assert_eq!(body["data"], Value::Null);

    for bad in [expired.as_str(), wrong_signature.as_str(), wrong_tenant.as_str(), "garbage", "lk_notakey"] {
        let body = app.gql(Some(bad), KEYS, json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{bad}: {body}");
        let body = app.gql(Some(bad), "{ viewer { tenant { id } } }", json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{bad}: {body}");
    }
    let body = app.gql(Some(&expired), KEYS, json!({})).await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("expired"), "{body}");

    // Token times at the ends of i64, and lifetimes past the 24-hour maximum.
    let forever = app.token_key.sign(&AdminClaims { exp: i64::MAX, iat: now, ..claims(now) });
    let from_the_dawn_of_time = app.token_key.sign(&AdminClaims { exp: now + 60, iat: i64::MIN, ..claims(now) });
    let two_days = app.token_key.sign(&AdminClaims { exp: now + 2 * 86_400, iat: now, ..claims(now) });
    for long in [&forever, &from_the_dawn_of_time, &two_days] {
        let body = app.gql(Some(long), KEYS, json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("lifetime"), "{body}");
    }
    // Signed with the right secret, but for another service (`iss`/`aud`).
    for (issuer, audience) in [("billing", "billing"), ("latchkey", "billing"), ("billing", "latchkey")] {
        let foreign = app.token_key.clone().with_issuer_and_audience(issuer, audience).sign(&claims(now + 3600));
        let body = app.gql(Some(&foreign), KEYS, json!({})).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{issuer}/{audience}: {body}");
        assert!(body["errors"][0]["message"].as_str().unwrap().contains("not issued for this service"), "{body}");
    }
    let day = app.token_key.sign(&AdminClaims { exp: now + 86_400, iat: now, ..claims(now) });
    assert_eq!(app.gql(Some(&day), KEYS, json!({})).await["errors"], Value::Null, "24 hours is allowed");

    // Not a Bearer header at all.
    let resp = app
        .http
        .post(format!("{}/graphql", app.url))
        .header("Authorization", format!("Basic {}", s.admin_token))
        .json(&json!({ "query": KEYS }))
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");

    // Mutations too, and nothing is created.
    let body = app
        .gql(
            Some(&expired),
            latchkey_tests::ops::GENERATE,
            json!({ "input": { "ownerId": s.admin.id, "description": "x" } }),
        )
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    let body = app.gql(Some(&s.admin_token), KEYS, json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 0);
    app.stop().await;
}

async fn viewer_describes_admins_in_their_cloud(app: TestApp) {
    let s = app.seed("Acme").await;
    let q = "{ viewer { tenant { id name } user { id name email role } apiKey { id } clouds } }";
    let body = app.gql(Some(&s.admin_token), q, json!({})).await;
    assert_eq!(
        body["data"]["viewer"],
        json!({
            "tenant": { "id": s.tenant.id.to_string(), "name": "Acme" },
            "user": { "id": s.admin.id.to_string(), "name": s.admin.name, "email": s.admin.email, "role": "INTERNAL_ADMIN" },
            "apiKey": null,
            "clouds": ["EMPLOYEE"],
        })
    );
    let academy = app.token(&s.academy_admin, Cloud::Customer);
    let body = app.gql(Some(&academy), q, json!({})).await;
    assert_eq!(body["data"]["viewer"]["user"]["role"], "ACADEMY_ADMIN");
    assert_eq!(body["data"]["viewer"]["clouds"], json!(["CUSTOMER"]));
    app.stop().await;
}

async fn only_internal_admins_in_the_employee_cloud_manage_keys(app: TestApp) {
    let s = app.seed("Acme").await;
    let (key_id, _, _) = app.generate(&s.admin_token, &s.integration, "Existing").await;
    let forbidden_tokens = [
        app.token(&s.academy_admin, Cloud::Customer),
        app.token(&s.academy_admin, Cloud::Employee),
        app.token(&s.admin, Cloud::Customer),
        app.token(&s.integration, Cloud::Employee),
    ];
    let operations: Vec<(&str, Value)> = vec![
        (KEYS, json!({})),
        ("query($id: ID!) { apiKey(id: $id) { id } }", json!({ "id": key_id })),
        ("{ apiKeyOwnerCandidates { id } }", json!({})),
        (latchkey_tests::ops::GENERATE, json!({ "input": { "ownerId": s.integration.id, "description": "x" } })),
        (ops::ROTATE, json!({ "id": key_id })),
        (ops::UPDATE_DESCRIPTION, json!({ "id": key_id, "d": "hacked" })),
        (ops::DELETE, json!({ "id": key_id })),
    ];
    for token in &forbidden_tokens {
        for (query, vars) in &operations {
            let body = app.gql(Some(token), query, vars.clone()).await;
            assert_eq!(error_code(&body), "FORBIDDEN", "{query}: {body}");
            assert!(body["errors"][0]["message"].as_str().unwrap().contains("internal admins"));
        }
    }
    // Nothing changed.
    let body = app
        .gql(Some(&s.admin_token), "{ apiKeys { totalCount nodes { description lastEditedBy { id } } } }", json!({}))
        .await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 1);
    assert_eq!(body["data"]["apiKeys"]["nodes"][0]["description"], "Existing");
    assert_eq!(app.wait_for_deliveries(1).await.len(), 1, "only the generate event");
    app.stop().await;
}

async fn key_authenticated_callers_see_their_key_but_cannot_manage_keys(app: TestApp) {
    let s = app.seed("Acme").await;
    let (key_id, secret, _) = app.generate(&s.admin_token, &s.integration, "Sync").await;
    let body = app
        .gql(
            Some(&secret),
            "{ viewer { tenant { id } user { id } apiKey { id lastFour owner { id } } clouds } }",
            json!({}),
        )
        .await;
    let viewer = &body["data"]["viewer"];
    assert_eq!(viewer["tenant"]["id"], s.tenant.id.to_string(), "{body}");
    assert_eq!(viewer["user"], Value::Null);
    assert_eq!(viewer["apiKey"]["id"], key_id);
    assert_eq!(viewer["apiKey"]["lastFour"], &secret[secret.len() - 4..]);
    assert_eq!(viewer["apiKey"]["owner"]["id"], s.integration.id.to_string());
    assert_eq!(viewer["clouds"], json!(["EMPLOYEE", "CUSTOMER"]));

    // A key an admin owns, created and edited by an admin: the integration
    // holding it sees its owner's name and role, but no one's email and not
    // who created or edited it.
    let (_, admins_key, _) = app.generate(&s.admin_token, &s.admin, "Reporting").await;
    let body = app
        .gql(
            Some(&admins_key),
            "{ viewer { apiKey { description owner { id name email role } createdBy { email } lastEditedBy { email } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        body["data"]["viewer"]["apiKey"],
        json!({
            "description": "Reporting",
            "owner": { "id": s.admin.id.to_string(), "name": s.admin.name, "email": "", "role": "INTERNAL_ADMIN" },
            "createdBy": null,
            "lastEditedBy": null,
        }),
        "{body}"
    );
    assert!(!body.to_string().contains('@'), "no email reaches an integration: {body}");
    // Admins still see everything.
    let body =
        app.gql(Some(&s.admin_token), "{ apiKeys { nodes { owner { email } createdBy { email } } } }", json!({})).await;
    assert!(body.to_string().contains(&s.admin.email), "{body}");

    let body = app.gql(Some(&secret), KEYS, json!({})).await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    let body = app
        .gql(
            Some(&secret),
            latchkey_tests::ops::GENERATE,
            json!({ "input": { "ownerId": s.integration.id, "description": "x" } }),
        )
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    app.stop().await;
}
