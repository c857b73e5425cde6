//! The second hardening read, finding by finding, through the public
//! surface: forwarded addresses, forward-auth headers, leak-report limits
//! behind a proxy, permissions outside their cloud, restriction probing,
//! and GraphQL documents that cost before they are parsed.

use latchkey_tests::{AppOptions, Seeded, TestApp, TestDb, error_code, ops};
use serde_json::{Value, json};

on_both_backends!(
    an_unreadable_forwarded_hop_is_no_client_never_the_proxy,
    forward_auth_refuses_doubled_headers_and_answers_preflights_itself,
    leak_reports_are_limited_per_forwarded_client_and_never_shut_out_newcomers,
    a_permission_of_another_cloud_is_refused,
    probing_a_keys_restrictions_meets_the_failure_limits,
    graphql_documents_are_bounded_before_parsing_and_follow_graphql_over_http,
    scim_and_rest_answer_what_their_specifications_require,
    an_ended_previous_secret_is_forgotten_a_day_later,
    linking_an_unknown_user_to_scim_is_not_found,
);

fn behind_proxy() -> AppOptions {
    AppOptions { trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()], ..AppOptions::default() }
}

async fn restricted(app: &TestApp, s: &Seeded, restrictions: Value) -> String {
    let input =
        json!({ "input": { "ownerId": s.integration.id, "description": "Restricted", "restrictions": restrictions } });
    let body = app.gql(Some(&s.admin_token), ops::GENERATE_RESTRICTED, input).await;
    body["data"]["generateApiKey"]["secret"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
}

async fn an_unreadable_forwarded_hop_is_no_client_never_the_proxy(db: TestDb) {
    let app = TestApp::start_with(db, behind_proxy()).await;
    let s = app.seed("Acme").await;
    // Allowed only from the proxy's own address: a fallback to it would let anyone in.
    let secret = restricted(&app, &s, json!({ "allowedIps": ["127.0.0.1", "8.8.8.8", "2001:db8::1"] })).await;
    let viewer = |forwarded: &'static str| {
        let req = app
            .http
            .post(format!("{}/graphql", app.url))
            .bearer_auth(&secret)
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "query": "{ viewer { clouds } }" }));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    for junk in ["unknown", "junk", "8.8.8.8:99999", "[2001:db8::1", "1.2.3.4.5"] {
        assert_eq!(error_code(&viewer(junk).await), "UNAUTHENTICATED", "{junk}");
    }
    // Ports and brackets as proxies write them are addresses.
    for named in ["8.8.8.8:1234", "[2001:db8::1]", "[2001:db8::1]:443", "2001:db8::1"] {
        assert_eq!(viewer(named).await["errors"], Value::Null, "{named}");
    }

    // Forward auth: a later line that is not text never lets an earlier, client-written hop through.
    let ten = restricted(&app, &s, json!({ "allowedIps": ["10.0.0.0/8"] })).await;
    let response = app
        .http
        .get(format!("{}/v1/auth", app.url))
        .bearer_auth(&ten)
        .header("X-Forwarded-For", "10.1.1.1")
        .header("X-Forwarded-For", reqwest::header::HeaderValue::from_bytes(b"203.0.113.9\xff").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["x-latchkey-code"], "IP_NOT_ALLOWED");
    app.stop().await;
}

async fn forward_auth_refuses_doubled_headers_and_answers_preflights_itself(app: TestApp) {
    let s = app.seed("Acme").await;
    let secret = restricted(&app, &s, json!({ "permissions": ["users:read"] })).await;
    let auth = |headers: &[(&'static str, &'static str)]| {
        let mut req = app.http.get(format!("{}/v1/auth", app.url)).bearer_auth(&secret);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        async move { req.send().await.unwrap() }
    };
    assert_eq!(auth(&[("X-Latchkey-Permissions", "users:read")]).await.status(), 200);
    assert_eq!(auth(&[("X-Latchkey-Permissions", "reports:read")]).await.status(), 403);
    for doubled in [
        [("X-Latchkey-Permissions", ""), ("X-Latchkey-Permissions", "reports:read")],
        [("X-Latchkey-Cloud", "employee"), ("X-Latchkey-Cloud", "customer")],
    ] {
        let response = auth(&doubled).await;
        assert_eq!(response.status(), 400, "{doubled:?}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].as_str().unwrap().contains("more than once"), "{body}");
    }
    // A preflight to /v1/auth is a request to authenticate: no key, no 204.
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/auth/anything", app.url))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 401);
    assert_eq!(preflight.headers()["x-latchkey-code"], "MISSING_KEY");
}

async fn leak_reports_are_limited_per_forwarded_client_and_never_shut_out_newcomers(db: TestDb) {
    let app = TestApp::start_with(db, behind_proxy()).await;
    let report = |forwarded: String| {
        let req = app
            .http
            .post(format!("{}/v1/keys/report-leak", app.url))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({ "key": "lk_not_a_real_key" }));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let statuses: Vec<u16> = futures_util::future::join_all((0..31).map(|_| report("192.0.2.1".into()))).await;
    assert_eq!(statuses.iter().filter(|s| **s == 202).count(), 30, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    assert_eq!(report("192.0.2.2".into()).await, 202, "another forwarded client has its own limit");
    // One host's /64 is one client.
    for n in 0..30 {
        assert_eq!(report(format!("2001:db8:5:6::{n:x}")).await, 202);
    }
    assert_eq!(report("2001:db8:5:6::ffff".into()).await, 429);
    app.stop().await;
}

async fn a_permission_of_another_cloud_is_refused(app: TestApp) {
    let s = app.seed("Acme").await;
    let input = json!({ "input": { "ownerId": s.integration.id, "description": "Mixed", "restrictions": { "clouds": ["EMPLOYEE"], "permissions": ["academies:write"] } } });
    let body = app.gql(Some(&s.admin_token), ops::GENERATE_RESTRICTED, input).await;
    let errors = &body["data"]["generateApiKey"]["userErrors"];
    assert_eq!(errors[0]["code"], "INVALID", "{body}");
    assert_eq!(errors[0]["field"], json!(["input", "restrictions", "permissions"]), "{body}");
    assert_eq!(body["data"]["generateApiKey"]["secret"], Value::Null);
    let count = app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(count["data"]["apiKeys"]["totalCount"], 0, "nothing made");
    // An unrestricted key never gets a customer-cloud permission in the employee cloud.
    let (_, secret, _) = app.generate(&s.admin_token, &s.integration, "Unrestricted").await;
    let ask = |cloud: &str| json!({ "key": secret, "cloud": cloud, "permissions": ["academies:write"] });
    let verify = |body: Value| {
        let req = app.http.post(format!("{}/v1/keys/verify", app.url)).json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(verify(ask("CUSTOMER")).await["valid"], true);
    assert_eq!(verify(ask("EMPLOYEE")).await["code"], "INSUFFICIENT_PERMISSIONS");
}

async fn probing_a_keys_restrictions_meets_the_failure_limits(app: TestApp) {
    let s = app.seed("Acme").await;
    let secret = restricted(&app, &s, json!({ "allowedIps": ["10.0.0.0/8"] })).await;
    let verify = |ip: String| {
        let req = app.http.post(format!("{}/v1/keys/verify", app.url)).json(&json!({ "key": secret, "ip": ip }));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut codes = Vec::new();
    for first in 1..=15 {
        codes.push(verify(format!("{first}.1.2.3")).await["code"].as_str().unwrap_or("VALID").to_owned());
    }
    assert_eq!(codes.iter().filter(|c| *c == "IP_NOT_ALLOWED").count(), 10, "{codes:?}");
    assert_eq!(codes[9], "VALID", "10.1.2.3 is allowed: {codes:?}");
    assert!(codes[11..].iter().all(|c| c == "RATE_LIMITED"), "past the key's limit: {codes:?}");
    assert_eq!(verify("10.1.2.3".into()).await["code"], "RATE_LIMITED", "this client learns nothing more");
    // Another client of the key (a gateway's end client) is not held back.
    let forward = |client: &'static str| {
        let req = app.http.get(format!("{}/v1/auth", app.url)).bearer_auth(&secret).header("X-Forwarded-For", client);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(forward("10.7.7.7").await, 200);
    assert_eq!(forward("11.7.7.7").await, 403);
}

async fn graphql_documents_are_bounded_before_parsing_and_follow_graphql_over_http(app: TestApp) {
    let post = |query: String, accept: &'static str| {
        let req =
            app.http.post(format!("{}/graphql", app.url)).header("Accept", accept).json(&json!({ "query": query }));
        async move {
            let response = req.send().await.unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
            (status, content_type, response.json::<Value>().await.unwrap())
        }
    };
    // Large anonymous documents are refused before any parsing (what they
    // cost a server under load is in scripts/bench-verify.sh).
    let huge = format!("{{ {} }}", "__typename ".repeat(90_000));
    let fragments = format!(
        "{{ ...f0 }} {}",
        (0..700).map(|n| format!("fragment f{n} on Query {{ __typename }} ")).collect::<String>()
    );
    let variables =
        format!("query({}) {{ __typename }}", (0..5_000).map(|n| format!("$v{n}: Int ")).collect::<String>());
    // A body past twice the document ceiling is 413 from its length, unread.
    let (status, _) = {
        let response =
            app.http.post(format!("{}/graphql", app.url)).json(&json!({ "query": huge })).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(status, 413);
    let huge = format!("{{ {} }}", "__typename ".repeat(5_000));
    for document in [huge, fragments, variables] {
        let (status, _, body) = post(document, "application/json").await;
        assert_eq!(status, 200);
        let message = body["errors"][0]["message"].as_str().unwrap_or_else(|| panic!("{body}"));
        assert!(message.contains("at most") || message.contains("more than"), "{message}");
    }
    // Anonymous introspection as a whole: one __schema or __type per request.
    let aliases =
        format!("{{ {} }}", (0..200).map(|n| format!("t{n}: __type(name: \"Query\") {{ name }} ")).collect::<String>());
    let (_, _, body) = post(aliases, "application/json").await;
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("Introspect"), "{body}");
    let (status, _, body) = post("{ __type(name: \"ApiKey\") { name } }".into(), "application/json").await;
    assert_eq!((status, body["data"]["__type"]["name"].as_str()), (200, Some("ApiKey")), "{body}");

    // GraphQL over HTTP: the media type, and 400 without `data` for a request error.
    let graphql_response = "application/graphql-response+json, application/json;q=0.9";
    let (status, content_type, body) = post("{ viewer ".into(), graphql_response).await;
    assert_eq!(status, 400, "{body}");
    assert!(content_type.starts_with("application/graphql-response+json"), "{content_type}");
    assert!(body.get("data").is_none() && body["errors"][0]["message"].is_string(), "{body}");
    let (status, _, body) = post("{ noSuchField }".into(), graphql_response).await;
    assert_eq!(status, 400, "validation failure: {body}");
    assert!(body.get("data").is_none(), "{body}");
    let (status, content_type, body) = post("{ __typename }".into(), graphql_response).await;
    assert!(status == 200 && body["data"]["__typename"].is_string(), "{body}");
    assert!(content_type.starts_with("application/graphql-response+json"), "{content_type}");
    // application/json keeps its behaviour: 200, with `data`.
    let (status, content_type, body) = post("{ viewer ".into(), "application/json").await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert!(body["errors"][0]["message"].is_string(), "{body}");
}

async fn scim_and_rest_answer_what_their_specifications_require(app: TestApp) {
    let s = app.seed("Acme").await;
    let key = restricted(&app, &s, json!({ "permissions": ["scim"] })).await;
    let scim = |method: reqwest::Method, path: &str| {
        let req = app.http.request(method, format!("{}/scim/v2{path}", app.url)).bearer_auth(&key);
        async move {
            let response = req.send().await.unwrap();
            let status = response.status().as_u16();
            let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
            (status, allow, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
    let (status, _, schema) = scim(reqwest::Method::GET, &format!("/Schemas/{USER}")).await;
    assert_eq!((status, schema["id"].as_str()), (200, Some(USER)), "{schema}");
    let roles = schema["attributes"].as_array().unwrap().iter().find(|a| a["name"] == "roles").unwrap();
    assert_eq!(
        roles["subAttributes"][0]["canonicalValues"],
        json!(["internal-admin", "academy-admin", "integration-user"])
    );
    let (status, _, user_type) = scim(reqwest::Method::GET, "/ResourceTypes/User").await;
    assert_eq!((status, user_type["endpoint"].as_str()), (200, Some("/Users")), "{user_type}");
    for unknown in ["/Schemas/urn:nope", "/ResourceTypes/Group", "/Groups", "/Nothing/here"] {
        let (status, _, body) = scim(reqwest::Method::GET, unknown).await;
        assert_eq!(
            (status, body["schemas"][0].as_str(), body["status"].as_str()),
            (404, Some(ERROR), Some("404")),
            "{unknown}: {body}"
        );
    }
    for path in ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas", &format!("/Schemas/{USER}")] {
        for method in [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::PATCH, reqwest::Method::DELETE] {
            let (status, allow, body) = scim(method.clone(), path).await;
            assert_eq!(
                (status, allow.as_deref(), body["schemas"][0].as_str()),
                (405, Some("GET"), Some(ERROR)),
                "{method} {path}"
            );
        }
    }
    let filter = "emails%5Btype%20eq%20%22work%22%5D.value%20eq%20%22nobody%40acme.example%22";
    let (status, _, list) = scim(reqwest::Method::GET, &format!("/Users?filter={filter}")).await;
    assert_eq!((status, list["totalResults"].as_u64()), (200, Some(0)), "{list}");

    // REST: methods the document does not list are 405 with Allow.
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/v1/keys/verify", "POST"),
        (reqwest::Method::TRACE, "/v1/keys/verify", "POST"),
        (reqwest::Method::GET, "/v1/keys/report-leak", "POST"),
        (reqwest::Method::DELETE, "/healthz", "GET"),
    ] {
        let response = app.http.request(method.clone(), format!("{}{path}", app.url)).send().await.unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED", "{body}");
    }
}

async fn an_ended_previous_secret_is_forgotten_a_day_later(db: TestDb) {
    let clock = std::sync::Arc::new(latchkey_domain::clock::ManualClock::new(chrono::Utc::now()));
    let app = TestApp::start_with(db, AppOptions { clock: Some(clock.clone()), ..AppOptions::default() }).await;
    let s = app.seed("Acme").await;
    let (id, old, _) = app.generate(&s.admin_token, &s.integration, "Rotated").await;
    let rotated =
        app.gql(Some(&s.admin_token), ops::ROTATE_WITH, json!({ "input": { "id": id, "overlapSeconds": 3600 } })).await;
    let current = rotated["data"]["rotateApiKey"]["secret"].as_str().unwrap_or_else(|| panic!("{rotated}")).to_owned();
    clock.advance(chrono::Duration::seconds(3601));
    assert_eq!(app.verify(&old).await["code"], "EXPIRED", "just past its overlap: its holder is told to switch");
    // A day after the overlap the expiry scan forgets it: it is any unknown key now.
    clock.advance(latchkey_app::ENDED_SECRET_KEPT);
    let waited = std::time::Instant::now();
    while app.verify(&old).await["code"] != "INVALID" {
        assert!(waited.elapsed() < std::time::Duration::from_secs(10), "never forgotten");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stored =
        app.store.credential_by_lookup_id(&latchkey_domain::ParsedKey::parse(&old).unwrap().lookup_id()).await.unwrap();
    assert!(stored.is_none(), "its lookup id and hash are gone");
    assert_eq!(app.verify(&current).await["valid"], true);
    app.stop().await;
}

async fn linking_an_unknown_user_to_scim_is_not_found(app: TestApp) {
    let s = app.seed("Acme").await;
    let other = app.seed("Other").await;
    let link = "mutation($id: ID!) { setUserScimManaged(input: { id: $id, managed: true }) { user { id } userErrors { field code } } }";
    for id in [json!("not-an-id"), json!(other.admin.id), json!("00000000-0000-7000-8000-000000000000")] {
        let body = app.gql(Some(&s.admin_token), link, json!({ "id": id })).await;
        let payload = &body["data"]["setUserScimManaged"];
        assert_eq!(
            (payload["user"].clone(), payload["userErrors"][0]["code"].clone()),
            (Value::Null, json!("NOT_FOUND")),
            "{id}: {body}"
        );
    }
    // Another tenant's user stays unlinked: its tenant's SCIM key does not see it.
    let key = restricted(&app, &other, json!({ "permissions": ["scim"] })).await;
    let response =
        app.http.get(format!("{}/scim/v2/Users/{}", app.url, other.admin.id)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 404);
    // Only an internal admin links.
    let academy = app.token(&s.academy_admin, latchkey_domain::Cloud::Employee);
    let body = app.gql(Some(&academy), link, json!({ "id": s.integration.id })).await;
    assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
}
