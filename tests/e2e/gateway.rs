//! Forward authentication (`/v1/auth`): spoken to directly as a gateway
//! would, and through a real nginx running `docs/gateways/nginx.conf`.

use latchkey_domain::secret::with_checksum;
use latchkey_tests::nginx::{EchoUpstream, Nginx};
use latchkey_tests::sse::SseStream;
use latchkey_tests::{Seeded, TestApp, ops};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};

on_both_backends!(
    forward_auth_answers_with_a_status_and_headers_for_the_upstream,
    nginx_lets_only_allowed_keys_through_to_the_upstream,
);

fn auth(app: &TestApp, method: Method) -> RequestBuilder {
    app.http.request(method, format!("{}/v1/auth", app.url))
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

/// The status, `X-Latchkey-Code` and `WWW-Authenticate` of an answer.
async fn refusal(request: RequestBuilder) -> (u16, String, String) {
    let response = request.send().await.unwrap();
    let code = header(&response, "x-latchkey-code").to_owned();
    let challenge = header(&response, "www-authenticate").to_owned();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code.as_str(), "the body says what the header says");
    (status, code, challenge)
}

async fn generate_restricted(app: &TestApp, s: &Seeded, restrictions: Value) -> (String, String) {
    let input =
        json!({ "input": { "ownerId": s.integration.id, "description": "Gateway", "restrictions": restrictions } });
    let body = app.gql(Some(&s.admin_token), ops::GENERATE_RESTRICTED, input).await;
    let payload = &body["data"]["generateApiKey"];
    assert_eq!(payload["userErrors"], json!([]), "{body}");
    (payload["apiKey"]["id"].as_str().unwrap().to_owned(), payload["secret"].as_str().unwrap().to_owned())
}

async fn forward_auth_answers_with_a_status_and_headers_for_the_upstream(app: TestApp) {
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Gateway").await;

    // Any method; the key as a bearer token or in X-Api-Key.
    for method in [Method::GET, Method::POST, Method::DELETE, Method::PATCH] {
        let response = auth(&app, method.clone()).bearer_auth(&secret).send().await.unwrap();
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(header(&response, "x-latchkey-tenant"), s.tenant.id.to_string());
        assert_eq!(header(&response, "x-latchkey-key"), id);
        assert_eq!(header(&response, "x-latchkey-owner"), s.integration.id.to_string());
        let granted = header(&response, "x-latchkey-permissions");
        assert!(granted.split(',').any(|p| p == "users:write") && granted.contains("scim"), "{granted}");
        assert_eq!(header(&response, "cache-control"), "no-store");
    }
    let response = auth(&app, Method::GET).header("X-Api-Key", &secret).send().await.unwrap();
    assert_eq!((response.status().as_u16(), header(&response, "x-latchkey-key")), (200, id.as_str()));
    // Envoy's ext_authz appends the client's path to the prefix.
    let envoy = app.http.put(format!("{}/v1/auth/reports/weekly?x=1", app.url)).bearer_auth(&secret).send().await;
    assert_eq!(envoy.unwrap().status(), 200);

    // 401 with a bearer challenge for every key that does not work.
    let invalid_token = r#"Bearer realm="latchkey", error="invalid_token""#;
    let wrong = with_checksum(&format!("{}{:0>34}", &secret[..15], 7));
    for (request, code) in [
        (auth(&app, Method::GET), "MISSING_KEY"),
        (auth(&app, Method::GET).header("Authorization", "Basic dXNlcjpwYXNz"), "MISSING_KEY"),
        (auth(&app, Method::GET).bearer_auth("lk_nope"), "MALFORMED"),
        (auth(&app, Method::GET).bearer_auth(&wrong), "INVALID"),
        (auth(&app, Method::GET).header("X-Api-Key", &wrong), "INVALID"),
    ] {
        assert_eq!(refusal(request).await, (401, code.to_owned(), invalid_token.to_owned()));
    }
    let body = app.gql(Some(&s.admin_token), ops::DISABLE, json!({ "id": id })).await;
    assert_eq!(body["data"]["disableApiKey"]["apiKey"]["status"], "DISABLED", "{body}");
    let disabled = refusal(auth(&app, Method::GET).bearer_auth(&secret)).await;
    assert_eq!(disabled, (401, "DISABLED".to_owned(), invalid_token.to_owned()));

    // A working key that may not serve the route: 403, decided on the gateway's headers.
    let (_, restricted) = generate_restricted(
        &app,
        &s,
        json!({ "permissions": ["users:read", "reports:read"], "clouds": ["CUSTOMER"], "allowedIps": ["10.0.0.0/8"] }),
    )
    .await;
    let from = |xff: &str, cloud: &str| {
        auth(&app, Method::GET)
            .bearer_auth(&restricted)
            .header("X-Forwarded-For", xff)
            .header("X-Latchkey-Cloud", cloud)
    };
    let allowed =
        from("10.1.2.3", "customer").header("X-Latchkey-Permissions", "users:read, reports:read").send().await.unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(header(&allowed, "x-latchkey-permissions"), "users:read,reports:read");
    assert_eq!(
        refusal(auth(&app, Method::GET).bearer_auth(&restricted)).await.1,
        "IP_NOT_ALLOWED",
        "no address, no entry"
    );
    // A client can prepend hops; only the one the gateway appended counts.
    assert_eq!(
        refusal(from("10.1.2.3, 192.0.2.1", "CUSTOMER")).await,
        (403, "IP_NOT_ALLOWED".to_owned(), String::new())
    );
    assert_eq!(refusal(from("10.1.2.3", "EMPLOYEE")).await.1, "CLOUD_NOT_ALLOWED");
    let response =
        from("10.1.2.3", "CUSTOMER").header("X-Latchkey-Permissions", "users:read,users:write").send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(header(&response, "www-authenticate"), r#"Bearer realm="latchkey", error="insufficient_scope""#);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "valid": false, "code": "INSUFFICIENT_PERMISSIONS", "missing": ["users:write"] }));

    // A gateway misconfigured: 400, so it fails closed and says why.
    let response = from("10.1.2.3", "moon").send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_REQUEST", "{body}");

    // A client failing too often is told when to come back; others are not.
    let mut last = None;
    for n in 0..12 {
        let guess = with_checksum(&format!("{}{:0>34}", &restricted[..15], n));
        let response = auth(&app, Method::GET).bearer_auth(guess).header("X-Forwarded-For", "10.9.9.9").send().await;
        last = Some(response.unwrap());
    }
    let last = last.unwrap();
    assert_eq!((last.status().as_u16(), header(&last, "x-latchkey-code")), (429, "RATE_LIMITED"));
    assert_eq!(header(&last, "retry-after"), "60");
    let holder = from("10.1.2.3", "CUSTOMER").header("X-Latchkey-Permissions", "users:read").send().await.unwrap();
    assert_eq!(holder.status(), 200, "the correct key still works");
    app.stop().await;
}

async fn nginx_lets_only_allowed_keys_through_to_the_upstream(app: TestApp) {
    let upstream = EchoUpstream::start().await;
    let documented =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/gateways/nginx.conf")).unwrap();
    let latchkey = app.url.trim_start_matches("http://");
    let mut config = documented.clone();
    for (from, to) in [
        ("server 127.0.0.1:8080;", format!("server {latchkey};")),
        ("server 127.0.0.1:9000;", format!("server {};", upstream.addr)),
        ("listen 127.0.0.1:8000;", "listen {listen};".to_owned()),
    ] {
        assert!(config.contains(from), "docs/gateways/nginx.conf no longer has `{from}`");
        config = config.replace(from, &to);
    }
    let Some(nginx) = Nginx::start(&config).await else { return };
    let s = app.seed("Acme").await;
    let (id, secret, _) = app.generate(&s.admin_token, &s.integration, "Behind nginx").await;
    let (_, reader) = generate_restricted(&app, &s, json!({ "permissions": ["reports:read"] })).await;
    let get = |path: &str| app.http.get(format!("{}{path}", nginx.url));

    // A valid key reaches the upstream, which sees who it is and never the secret;
    // the client's own X-Latchkey-* headers are replaced, not passed on.
    let response = get("/reports/weekly?format=csv")
        .bearer_auth(&secret)
        .header("X-Latchkey-Tenant", "00000000-0000-0000-0000-000000000000")
        .header("X-Latchkey-Permissions", "everything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", nginx.error_log());
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen[":request"][0], "GET /reports/weekly?format=csv HTTP/1.0");
    assert_eq!(seen["x-latchkey-tenant"], json!([s.tenant.id.to_string()]), "{seen}");
    assert_eq!(seen["x-latchkey-key"], json!([id]));
    assert_eq!(seen["x-latchkey-owner"], json!([s.integration.id.to_string()]));
    assert!(seen["x-latchkey-permissions"][0].as_str().unwrap().contains("reports:read"), "{seen}");
    assert!(seen.get("authorization").is_none(), "the upstream never sees the key: {seen}");
    // The client's method and path are logged with the answer, never its query string.
    let logs = latchkey_tests::logs::captured();
    let line = logs.lines().find(|l| l.contains("forward auth") && l.contains("/reports/weekly")).unwrap_or_default();
    assert!(line.contains("GET") && line.contains("VALID"), "{line}");
    assert!(!logs.contains("format=csv"), "no query string is logged");

    // The route's needs are decided: the reader may read reports, not write academies.
    let response = get("/reports/daily").header("X-Api-Key", &reader).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen: Value = response.json().await.unwrap();
    assert_eq!(seen["x-latchkey-permissions"], json!(["reports:read"]));
    assert!(seen.get("x-api-key").is_none(), "{seen}");
    let response = get("/academies/1").header("X-Api-Key", &reader).send().await.unwrap();
    assert_eq!(response.status(), 403, "a key without academies:write is refused");
    // A client cannot lower what the route needs by sending the gateway's headers.
    let response = get("/academies/1")
        .header("X-Api-Key", &reader)
        .header("X-Latchkey-Permissions", "reports:read")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Refusals reach the client with their challenge; nothing reaches the upstream.
    let wrong = with_checksum(&format!("{}{:0>34}", &secret[..15], 1));
    for request in [get("/reports/weekly"), get("/reports/weekly").bearer_auth(&wrong)] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="latchkey", error="invalid_token""#));
        assert!(!response.text().await.unwrap().contains("x-latchkey"), "the upstream was not called");
    }

    // The verification stream passes through unbuffered: a revocation arrives as it happens.
    let (_, streamer) = generate_restricted(&app, &s, json!({ "permissions": ["verify:stream"] })).await;
    let mut stream = SseStream::open(&app.http, &nginx.url, &streamer, None)
        .await
        .unwrap_or_else(|r| panic!("no stream through nginx: {} {}", r.status(), nginx.error_log()));
    let started = std::time::Instant::now();
    app.gql(Some(&s.admin_token), ops::DELETE, json!({ "id": id })).await;
    let event = stream.next_signal_within(std::time::Duration::from_secs(5)).await.expect("the revocation");
    assert_eq!((event.event.as_str(), event.data["keyId"].as_str()), ("revoked", Some(id.as_str())), "{event:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "through nginx in {:?}", started.elapsed());
    app.stop().await;
}
