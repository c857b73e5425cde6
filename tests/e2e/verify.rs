//! Integrations authenticate with their key in both clouds; gateways verify
//! keys at `POST /v1/keys/verify`.

use std::time::Duration;

use latchkey_domain::secret::with_checksum;
use latchkey_tests::{TestApp, error_code};
use serde_json::{Value, json};

on_both_backends!(
    keys_work_in_both_clouds_on_both_endpoints,
    rotated_and_deleted_keys_are_refused_at_once_even_when_cached,
    malformed_keys_are_refused_without_the_database,
    a_key_of_one_tenant_grants_nothing_in_another,
    last_used_is_recorded_and_never_moves_backwards,
    repeated_wrong_secrets_are_rate_limited_but_a_valid_key_keeps_working,
    random_keys_from_a_shared_address_do_not_shut_out_correct_keys,
    wrong_secrets_with_a_leaked_prefix_do_not_lock_out_the_key,
    concurrent_guesses_at_a_legacy_key_run_at_most_its_budget_of_hashes,
    unknown_and_wrong_secret_answers_take_the_same_time,
    legacy_keys_verify_and_are_upgraded_on_first_use,
);

async fn verify_from(app: &TestApp, key: &str) -> Value {
    app.verify(key).await
}

/// The answer of GraphQL `viewer` to a key: its id, or the error code.
async fn viewer_with(app: &TestApp, key: &str) -> String {
    let body = app.gql(Some(key), "{ viewer { apiKey { id } } }", json!({})).await;
    body["data"]["viewer"]["apiKey"]["id"].as_str().map_or_else(|| error_code(&body).to_owned(), str::to_owned)
}

async fn random_keys_from_a_shared_address_do_not_shut_out_correct_keys(app: TestApp) {
    let s = app.seed("Acme").await;
    // Keys made before the flood and never verified: nothing is cached.
    let (id_a, a, _) = app.generate(&s.admin_token, &s.integration, "Integration A").await;
    let (id_b, b, _) = app.generate(&s.admin_token, &s.integration, "Integration B").await;
    // Every request comes from 127.0.0.1, as behind a gateway.
    let mut last = Value::Null;
    for _ in 0..310 {
        last = verify_from(&app, latchkey_domain::ApiKeySecret::generate().unwrap().expose()).await;
    }
    assert_eq!(last["code"], "RATE_LIMITED", "the failing presenter is told to back off");
    assert_eq!(verify_from(&app, &a).await["keyId"], id_a, "a correct cold key still verifies");
    assert_eq!(viewer_with(&app, &b).await, id_b, "and authenticates GraphQL");
    app.stop().await;
}

async fn wrong_secrets_with_a_leaked_prefix_do_not_lock_out_the_key(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Leaked prefix").await;
    let mut codes = Vec::new();
    for n in 0..12 {
        let wrong = with_checksum(&format!("{}{:0>34}", &secret[..15], n));
        codes.push(verify_from(&app, &wrong).await["code"].as_str().unwrap().to_owned());
    }
    assert_eq!(codes[..10], vec!["INVALID"; 10][..], "{codes:?}");
    assert_eq!(codes[10..], ["RATE_LIMITED", "RATE_LIMITED"], "{codes:?}");
    let wrong = with_checksum(&format!("{}{:0>34}", &secret[..15], 99));
    assert_eq!(viewer_with(&app, &wrong).await, "UNAUTHENTICATED");
    assert_eq!(viewer_with(&app, &secret).await, id, "the holder's (cold) key works on GraphQL");
    assert_eq!(verify_from(&app, &secret).await["keyId"], id, "and on REST");
    app.stop().await;
}

/// Imports a key stored the way keys were before the current scheme.
async fn legacy_key(app: &TestApp, s: &latchkey_tests::Seeded) -> (String, String) {
    let secret = latchkey_domain::ApiKeySecret::generate().unwrap();
    let hash = latchkey_domain::hashing::legacy_argon2id_hash(&secret).unwrap();
    let credential = latchkey_store::NewCredential::new(&secret, hash);
    let description = latchkey_domain::Description::parse("From the old admin").unwrap();
    let new = latchkey_store::NewKey::new(s.tenant.id, s.integration.id, description, credential);
    let key = app.store.import_legacy_key(new, chrono::Utc::now() - chrono::Duration::days(400)).await.unwrap();
    (key.id.to_string(), secret.expose().to_owned())
}

async fn concurrent_guesses_at_a_legacy_key_run_at_most_its_budget_of_hashes(app: TestApp) {
    let s = app.seed("Acme").await;
    let (_, secret) = legacy_key(&app, &s).await;
    let guesses: Vec<String> = (0..150).map(|n| with_checksum(&format!("{}{:0>34}", &secret[..15], n))).collect();
    let answers = futures_util::future::join_all(guesses.iter().map(|g| verify_from(&app, g))).await;
    let codes: Vec<&str> = answers.iter().map(|a| a["code"].as_str().unwrap()).collect();
    // INVALID is only ever answered after the hash ran.
    let hashed = codes.iter().filter(|c| **c == "INVALID").count();
    assert!(hashed <= 10, "{hashed} hashes ran for a budget of 10");
    assert_eq!(hashed + codes.iter().filter(|c| **c == "RATE_LIMITED").count(), 150, "{codes:?}");
    app.stop().await;
}

async fn unknown_and_wrong_secret_answers_take_the_same_time(app: TestApp) {
    let s = app.seed("Acme").await;
    let mut known = Vec::new();
    for n in 0..5 {
        known.push(app.generate(&s.admin_token, &s.integration, &format!("Known {n}")).await.1);
    }
    async fn median(app: &TestApp, keys: &[String]) -> Duration {
        let mut times = Vec::new();
        for key in keys {
            let started = std::time::Instant::now();
            assert_eq!(app.verify(key).await["valid"], false);
            times.push(started.elapsed());
        }
        times.sort();
        times[times.len() / 2]
    }
    // 8 wrong secrets per known lookup id stay under its limit of 10.
    let wrong: Vec<String> = (0..40).map(|n| with_checksum(&format!("{}{:0>34}", &known[n % 5][..15], n))).collect();
    let unknown: Vec<String> =
        (0..40).map(|_| latchkey_domain::ApiKeySecret::generate().unwrap().expose().to_owned()).collect();
    median(&app, &unknown[..5]).await; // warm up connections
    let (unknown, wrong) = (median(&app, &unknown[5..]).await, median(&app, &wrong).await);
    let ratio = wrong.as_secs_f64() / unknown.as_secs_f64();
    eprintln!("median answer: unknown lookup id {unknown:?}, wrong secret {wrong:?} (ratio {ratio:.2})");
    assert!((1.0 / 3.0..3.0).contains(&ratio), "timing tells them apart: {unknown:?} vs {wrong:?}");
    app.stop().await;
}

async fn legacy_keys_verify_and_are_upgraded_on_first_use(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret) = legacy_key(&app, &s).await;
    let key_id: latchkey_domain::ApiKeyId = id.parse().unwrap();
    let stored = || async { app.store.credential_hash(s.tenant.id, key_id).await.unwrap().unwrap() };
    assert!(stored().await.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "stored as before");
    assert_eq!(verify_from(&app, &secret).await["keyId"], id, "today's keys keep working");
    assert!(stored().await.starts_with("$sha256$v=1$"), "re-hashed on first success");
    assert_eq!(viewer_with(&app, &secret).await, id, "and keep working after the upgrade");
    // A rotation still replaces it whole.
    let new = app.rotate(&s.admin_token, &id).await;
    assert_eq!(verify_from(&app, &secret).await["code"], "INVALID");
    assert_eq!(verify_from(&app, &new).await["keyId"], id);
    app.stop().await;
}

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
                "permissions": null,
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

    app.delete(&s.admin_token, &id).await;
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
        // Not `lk_`, and not a key another system could have made (imported keys are 8 to
        // 256 visible ASCII characters, e.g. `sk_…`, which are looked up).
        format!("sk {}", &secret[3..]),
        "x".repeat(257),
        "short".into(),
        format!("{secret}x"),
        typo,
        format!("{}-{}", &secret[..20], &secret[21..]),
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
    let header = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INTERNAL");
    assert_eq!(body["error"]["requestId"], header, "the body names the request id of the header");
    assert!(
        latchkey_tests::logs::captured().lines().any(|l| l.contains(&header) && l.contains("internal error")),
        "the failure is logged under the request id"
    );
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

    // Use is kept to the second: the next use counts once the second has turned.
    while chrono::Utc::now().timestamp() <= first_at.timestamp() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let older = latchkey_domain::usage::LastUse {
        at: first_at - chrono::Duration::hours(1),
        cloud: None,
        client_address: None,
        user_agent: None,
    };
    let late = latchkey_store::UsageBatch { counts: Vec::new(), last_uses: vec![(id.parse().unwrap(), older)] };
    app.store.record_usage(&late).await.unwrap();
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
