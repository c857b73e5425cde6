//! Least privilege: restrictions set through GraphQL, decided at
//! verification (REST and Latchkey's own GraphQL), in the documented order.

use std::time::{Duration, Instant};

use latchkey_domain::NoticeKind;
use latchkey_tests::{AppOptions, Backend, Seeded, TestApp, TestDb, error_code, ops};
use serde_json::{Value, json};

on_both_backends!(
    restricted_keys_are_decided_at_verification_in_a_fixed_order,
    hostile_restrictions_are_refused_and_change_nothing,
    trusted_proxies_name_the_client_and_others_cannot_spoof_it,
);

/// `POST /v1/keys/verify` with a context; returns the status and body.
async fn verify_with(app: &TestApp, body: Value) -> (u16, Value) {
    let resp = app.http.post(format!("{}/v1/keys/verify", app.url)).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn generate(app: &TestApp, s: &Seeded, restrictions: Value) -> (String, String, Value) {
    let input =
        json!({ "input": { "ownerId": s.integration.id, "description": "Reports", "restrictions": restrictions } });
    let body = app.gql(Some(&s.admin_token), ops::GENERATE_RESTRICTED, input).await;
    let payload = &body["data"]["generateApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    (
        payload["apiKey"]["id"].as_str().unwrap().to_owned(),
        payload["secret"].as_str().unwrap().to_owned(),
        payload["apiKey"]["restrictions"].clone(),
    )
}

async fn restricted_keys_are_decided_at_verification_in_a_fixed_order(app: TestApp) {
    let s = app.seed("Acme").await;
    let body = app.gql(Some(&s.admin_token), "{ apiKeyPermissions { name description cloud } }", json!({})).await;
    let catalogue = body["data"]["apiKeyPermissions"].as_array().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(catalogue.len(), 13);
    assert!(catalogue.contains(&json!({ "name": "academies:write", "description": "Create, update and delete academies.", "cloud": "CUSTOMER" })));
    assert!(catalogue.iter().any(|p| p["name"] == "scim" && p["cloud"].is_null()));
    assert!(catalogue.iter().any(|p| p["name"] == "verify:stream" && p["cloud"].is_null()));

    let (id, secret, restrictions) = generate(
        &app,
        &s,
        json!({ "permissions": ["users:read", "reports:read"], "clouds": ["CUSTOMER"], "allowedIps": ["10.0.0.0/8", "2001:db8::/32"] }),
    )
    .await;
    assert_eq!(
        restrictions,
        json!({ "permissions": ["users:read", "reports:read"], "clouds": ["CUSTOMER"], "allowedIps": ["10.0.0.0/8", "2001:db8::/32"] })
    );
    let ask = |extra: Value| {
        let mut body = json!({ "key": secret });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let code = |v: &Value| v["code"].as_str().unwrap_or("VALID").to_owned();
    // Without an address a key with an allowlist is refused: never fail open.
    assert_eq!(code(&verify_with(&app, ask(json!({}))).await.1), "IP_NOT_ALLOWED");
    // The order: cloud, then address, then permissions.
    let everything_wrong = json!({ "cloud": "EMPLOYEE", "ip": "8.8.8.8", "permissions": ["users:write"] });
    assert_eq!(code(&verify_with(&app, ask(everything_wrong)).await.1), "CLOUD_NOT_ALLOWED");
    let wrong_place = json!({ "cloud": "CUSTOMER", "ip": "8.8.8.8", "permissions": ["users:write"] });
    let (_, refused) = verify_with(&app, ask(wrong_place)).await;
    assert_eq!(refused, json!({ "valid": false, "code": "IP_NOT_ALLOWED" }), "an outside address learns nothing more");
    let too_much =
        json!({ "cloud": "CUSTOMER", "ip": "10.1.2.3", "permissions": ["users:write", "users:read", "users:delete"] });
    let (_, refused) = verify_with(&app, ask(too_much)).await;
    assert_eq!(
        refused,
        json!({ "valid": false, "code": "INSUFFICIENT_PERMISSIONS", "missing": ["users:write", "users:delete"] })
    );
    // Allowed: IPv4-mapped IPv6 and IPv6 inside the blocks, permissions held.
    for ip in ["::ffff:10.1.2.3", "10.255.255.255", "2001:db8:ffff::1"] {
        let (_, ok) =
            verify_with(&app, ask(json!({ "cloud": "CUSTOMER", "ip": ip, "permissions": ["reports:read"] }))).await;
        assert_eq!(ok["valid"], true, "{ip}: {ok}");
        assert_eq!(ok["permissions"], json!(["users:read", "reports:read"]));
        assert_eq!(ok["clouds"], json!(["CUSTOMER"]));
        assert_eq!(ok["ownerId"], s.integration.id.to_string());
    }
    for ip in ["11.0.0.1", "2001:db9::1", "::ffff:11.0.0.1"] {
        assert_eq!(code(&verify_with(&app, ask(json!({ "ip": ip }))).await.1), "IP_NOT_ALLOWED", "{ip}");
    }
    // A malformed context is a bad request, not a verdict.
    for bad in [
        json!({ "cloud": "MOON" }),
        json!({ "ip": "10.0.0.1/8" }),
        json!({ "ip": 7 }),
        json!({ "scope": "x" }),
        json!({ "permissions": (0..65).map(|i| format!("p{i}")).collect::<Vec<_>>() }),
    ] {
        let (status, body) = verify_with(&app, ask(bad.clone())).await;
        assert_eq!((status, body["error"]["code"].clone()), (400, json!("BAD_REQUEST")), "{bad}: {body}");
    }

    // An unrestricted key (every key from before restrictions) is unchanged.
    let (_, open, _) = app.generate(&s.admin_token, &s.integration, "Full access").await;
    let (_, ok) = verify_with(
        &app,
        json!({ "key": open, "cloud": "EMPLOYEE", "ip": "8.8.8.8", "permissions": ["scim", "users:write"] }),
    )
    .await;
    assert_eq!(
        (ok["valid"].clone(), ok["permissions"].clone(), ok["clouds"].clone()),
        (json!(true), Value::Null, json!(["EMPLOYEE", "CUSTOMER"]))
    );

    // Latchkey's own GraphQL applies the address rule to the peer (127.0.0.1 here).
    let body = app.gql(Some(&secret), "{ viewer { clouds } }", json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("address"), "{body}");

    // A change applies at once (the cached verification is dropped), and is audited and mailed.
    let change = json!({ "input": { "id": id, "restrictions": { "permissions": ["users:read"], "allowedIps": ["127.0.0.1"] } } });
    let body = app.gql(Some(&s.admin_token), ops::UPDATE_RESTRICTIONS, change).await;
    let updated = &body["data"]["updateApiKeyRestrictions"];
    assert_eq!(updated["userErrors"], json!([]), "{body}");
    assert_eq!(
        updated["apiKey"]["restrictions"],
        json!({ "permissions": ["users:read"], "clouds": ["EMPLOYEE", "CUSTOMER"], "allowedIps": ["127.0.0.1"] })
    );
    assert_eq!(code(&verify_with(&app, ask(json!({ "ip": "10.1.2.3" }))).await.1), "IP_NOT_ALLOWED");
    let body = app
        .gql(Some(&secret), "{ viewer { clouds permissions apiKey { restrictions { allowedIps } } } }", json!({}))
        .await;
    assert_eq!(
        body["data"]["viewer"],
        json!({ "clouds": ["EMPLOYEE", "CUSTOMER"], "permissions": ["users:read"], "apiKey": { "restrictions": { "allowedIps": ["127.0.0.1"] } } }),
        "{body}"
    );
    let events = app.wait_for_deliveries(3).await;
    let changed = events.iter().find(|e| e.kind == NoticeKind::RestrictionsChanged).expect("mailed");
    assert_eq!(
        changed.before_after,
        Some((
            "permissions users:read, reports:read; customer cloud only; from 10.0.0.0/8, 2001:db8::/32".into(),
            "permissions users:read; both clouds; from 127.0.0.1".into()
        ))
    );
    let audit = app
        .gql(
            Some(&s.admin_token),
            "query($k: ID!) { apiKeyEvents(keyId: $k) { nodes { action restrictionsBefore restrictionsAfter } } }",
            json!({ "k": id }),
        )
        .await;
    assert_eq!(audit["data"]["apiKeyEvents"]["nodes"][0]["action"], "RESTRICTIONS_CHANGED", "{audit}");
    assert_eq!(
        audit["data"]["apiKeyEvents"]["nodes"][0]["restrictionsAfter"],
        "permissions users:read; both clouds; from 127.0.0.1"
    );

    // Rotation keeps restrictions.
    let rotated = app.rotate(&s.admin_token, &id).await;
    let (_, verdict) =
        verify_with(&app, json!({ "key": rotated, "ip": "127.0.0.1", "permissions": ["users:write"] })).await;
    assert_eq!(verdict["code"], "INSUFFICIENT_PERMISSIONS");
    app.stop().await;
}

async fn hostile_restrictions_are_refused_and_change_nothing(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, before) = generate(&app, &s, json!({ "permissions": ["users:read"] })).await;
    let many: Vec<String> = (0..51).map(|i| format!("10.0.0.{i}")).collect();
    for (restrictions, field, needle) in [
        (json!({ "permissions": ["users:read", "users:delete"] }), "permissions", "users:delete"),
        (json!({ "clouds": [] }), "clouds", "at least one"),
        (json!({ "allowedIps": ["10.0.0.0/33"] }), "allowedIps", "10.0.0.0/33"),
        (json!({ "allowedIps": ["2001:db8::/129"] }), "allowedIps", "2001:db8::/129"),
        (json!({ "allowedIps": ["10.0.0.1\n"] }), "allowedIps", ""),
        (json!({ "allowedIps": ["not-an-ip"] }), "allowedIps", "not-an-ip"),
        (json!({ "allowedIps": many }), "allowedIps", "At most 50"),
    ] {
        let path = json!(["input", "restrictions", field]);
        let update = json!({ "input": { "id": id, "restrictions": restrictions } });
        let body = app.gql(Some(&s.admin_token), ops::UPDATE_RESTRICTIONS, update).await;
        let errors = &body["data"]["updateApiKeyRestrictions"]["userErrors"];
        if field == "allowedIps" && needle.is_empty() {
            // A trailing newline is trimmed: this one is accepted. Put the key back.
            assert_eq!(errors, &json!([]), "{body}");
            let back = json!({ "input": { "id": id, "restrictions": { "permissions": ["users:read"] } } });
            app.gql(Some(&s.admin_token), ops::UPDATE_RESTRICTIONS, back).await;
            continue;
        }
        assert_eq!(errors[0]["field"], path, "{body}");
        assert_eq!(errors[0]["code"], "INVALID");
        assert!(errors[0]["message"].as_str().unwrap().contains(needle), "{body}");
        let input =
            json!({ "input": { "ownerId": s.integration.id, "description": "x", "restrictions": restrictions } });
        let body = app.gql(Some(&s.admin_token), ops::GENERATE_RESTRICTED, input).await;
        assert_eq!(body["data"]["generateApiKey"]["userErrors"][0]["field"], path, "{body}");
    }
    // Wrong types are refused by GraphQL before anything runs.
    let body = app
        .gql(
            Some(&s.admin_token),
            ops::UPDATE_RESTRICTIONS,
            json!({ "input": { "id": id, "restrictions": { "clouds": ["MOON"] } } }),
        )
        .await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    let now = app
        .gql(
            Some(&s.admin_token),
            "query($id: ID!) { apiKey(id: $id) { restrictions { permissions clouds allowedIps } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(now["data"]["apiKey"]["restrictions"], before, "nothing changed");
    let count = app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(count["data"]["apiKeys"]["totalCount"], 1, "no key was generated");
    let (_, verdict) = verify_with(&app, json!({ "key": secret, "permissions": ["users:read"] })).await;
    assert_eq!(verdict["valid"], true);
    app.stop().await;
}

async fn trusted_proxies_name_the_client_and_others_cannot_spoof_it(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let trusted = vec!["127.0.0.1/32".parse().unwrap()];
    let app = TestApp::start_with(db, AppOptions { trusted_proxies: trusted, ..AppOptions::default() }).await;
    let s = app.seed("Acme").await;
    let (_, secret, _) = generate(&app, &s, json!({ "allowedIps": ["203.0.113.7"] })).await;
    let viewer = |forwarded: Option<&'static str>| {
        let mut req = app
            .http
            .post(format!("{}/graphql", app.url))
            .bearer_auth(&secret)
            .json(&json!({ "query": "{ viewer { clouds } }" }));
        if let Some(f) = forwarded {
            req = req.header("X-Forwarded-For", f);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(viewer(Some("203.0.113.7")).await["errors"], Value::Null, "the trusted proxy names the client");
    assert_eq!(
        viewer(Some("198.51.100.1, 203.0.113.7")).await["errors"],
        Value::Null,
        "the first untrusted hop from the right"
    );
    assert_eq!(
        error_code(&viewer(Some("203.0.113.7, 198.51.100.1")).await),
        "UNAUTHENTICATED",
        "a client cannot prepend itself"
    );
    assert_eq!(error_code(&viewer(Some("garbage")).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&viewer(None).await), "UNAUTHENTICATED");
    app.stop().await;

    // Without trusted proxies the peer is the client: the header is ignored.
    let Some(db) = TestDb::new(backend).await else { return };
    let app = TestApp::start_on(db).await;
    let s = app.seed("Acme").await;
    let (_, secret, _) = generate(&app, &s, json!({ "allowedIps": ["203.0.113.7"] })).await;
    let body: Value = app
        .http
        .post(format!("{}/graphql", app.url))
        .bearer_auth(&secret)
        .header("X-Forwarded-For", "203.0.113.7")
        .json(&json!({ "query": "{ viewer { clouds } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "an untrusted peer cannot spoof X-Forwarded-For: {body}");
    app.stop().await;
}

/// A restriction change reaches another replica's cached verification at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restriction_change_reaches_another_replica_within_a_second() {
    let Some(db) = TestDb::new(Backend::Postgres).await else { return };
    let app = TestApp::start_on(db).await;
    let (replica, _) = app.replica().await;
    let other = replica.url();
    let s = app.seed("Acme").await;
    let (id, secret, _) = generate(&app, &s, json!(null)).await;
    let ask = json!({ "key": secret, "permissions": ["users:write"] });
    let on_other = || async {
        let resp = app.http.post(format!("{other}/v1/keys/verify")).json(&ask).send().await.unwrap();
        resp.json::<Value>().await.unwrap()
    };
    assert_eq!(on_other().await["valid"], true, "cached on the other replica");
    let change = json!({ "input": { "id": id, "restrictions": { "permissions": ["users:read"] } } });
    app.gql(Some(&s.admin_token), ops::UPDATE_RESTRICTIONS, change).await;
    let started = Instant::now();
    while on_other().await["code"] != "INSUFFICIENT_PERMISSIONS" {
        assert!(started.elapsed() < Duration::from_secs(5), "never reached the other replica");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    replica.stop().await;
    app.stop().await;
}
