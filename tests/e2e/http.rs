//! The HTTP surface: GET and POST, limits, GraphiQL, health, and the error
//! policy for failures on our side.

use std::time::{Duration, Instant};

use latchkey_server::config::HttpLimits;
use latchkey_tests::{AppOptions, TestApp, TestDb, error_code};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

on_both_backends!(
    http_routes_and_request_limits,
    deep_queries_are_refused_but_graphiql_introspection_works,
    internal_failures_are_generic_and_change_nothing,
    aliases_cannot_multiply_work,
    slow_bodies_are_cut_off_without_starving_anyone,
    answers_over_the_size_ceiling_are_refused,
);

/// Reads what the server sends until it closes the connection; panics if it
/// keeps it open longer than `within`.
async fn read_until_closed(connection: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(within, connection.read_to_end(&mut received))
        .await
        .expect("the server closed the connection in time")
        .unwrap_or_default();
    received
}

async fn slow_bodies_are_cut_off_without_starving_anyone(db: TestDb) {
    let body_read_timeout = Duration::from_secs(3);
    let http = HttpLimits { body_read_timeout, idle_timeout: Duration::from_secs(1), ..HttpLimits::default() };
    let app = TestApp::start_with(db, AppOptions { http, ..AppOptions::default() }).await;
    let s = app.seed("Acme").await;
    let addr = app.url.trim_start_matches("http://").to_owned();

    // A thousand clients each promise 100,000 bytes and send one.
    let opened = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut connection = TcpStream::connect(&addr).await.unwrap();
        connection
            .write_all(
                b"POST /graphql HTTP/1.1\r\nHost: latchkey\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{",
            )
            .await
            .unwrap();
        slow.push(connection);
    }
    // Meanwhile an admin is answered at once, long before any slow body is cut off.
    let asked = Instant::now();
    let body = app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["totalCount"], 0, "{body}");
    assert!(
        opened.elapsed() < body_read_timeout,
        "answered in {:?}, while all 1000 slow bodies were still held",
        asked.elapsed()
    );
    // Every slow body gets 408 and loses its connection (no memory or socket held).
    for connection in &mut slow {
        let received = read_until_closed(connection, Duration::from_secs(30)).await;
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
    }
    assert!(opened.elapsed() >= body_read_timeout, "not cut off before the timeout");

    // An idle keep-alive connection is closed after the idle limit.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: latchkey\r\n\r\n").await.unwrap();
    let received = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(String::from_utf8_lossy(&received).starts_with("HTTP/1.1 200"));
    app.stop().await;
}

async fn answers_over_the_size_ceiling_are_refused(db: TestDb) {
    let http = HttpLimits { max_response_bytes: 2048, ..HttpLimits::default() };
    let app = TestApp::start_with(db, AppOptions { http, ..AppOptions::default() }).await;
    let s = app.seed("Acme").await;
    for i in 0..20 {
        app.generate(&s.admin_token, &s.integration, &format!("Key number {i} with a longish description")).await;
    }
    let query = "{ apiKeys(first: 20) { nodes { id lastFour description owner { name email } } } }";
    let body = app.gql(Some(&s.admin_token), query, json!({})).await;
    assert_eq!(error_code(&body), "RESPONSE_TOO_LARGE", "{body}");
    assert_eq!(body["data"], Value::Null);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("2048 bytes"), "{body}");
    // A smaller page fits.
    let body = app.gql(Some(&s.admin_token), "{ apiKeys(first: 2) { nodes { id } } }", json!({})).await;
    assert_eq!(body["data"]["apiKeys"]["nodes"].as_array().unwrap().len(), 2, "{body}");
    app.stop().await;
}

async fn aliases_cannot_multiply_work(app: TestApp) {
    let s = app.seed("Acme").await;
    let count = || async {
        app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await["data"]["apiKeys"]["totalCount"]
            .clone()
    };
    // Eleven key-generating aliases: refused before any is run (each hashes, writes and mails).
    let generate = |n: usize| {
        let fields: String = (0..n)
            .map(|i| format!("g{i}: generateApiKey(input: {{ownerId: $o, description: \"d{i}\"}}) {{ secret }} "))
            .collect();
        format!("mutation($o: ID!) {{ {fields} }}")
    };
    let body = app.gql(Some(&s.admin_token), &generate(11), json!({ "o": s.integration.id })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("At most 10"), "{body}");
    assert_eq!(count().await, 0, "nothing was generated");
    // Hidden in a fragment, too.
    let fragment = format!(
        "mutation($o: ID!) {{ ...many }} fragment many on MutationRoot {{ {} }}",
        generate(11).trim_start_matches("mutation($o: ID!) { ").trim_end_matches(" }")
    );
    let body = app.gql(Some(&s.admin_token), &fragment, json!({ "o": s.integration.id })).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(count().await, 0);
    let body = app.gql(Some(&s.admin_token), &generate(2), json!({ "o": s.integration.id })).await;
    assert_eq!(body["errors"], Value::Null, "{body}");
    assert_eq!(count().await, 2);

    // Pages cost what they select times `first`: six aliased pages of 100 are too much, one is fine.
    let page =
        "apiKeys(first: 100, search: \"d\") { edges { node { id description lastFour owner { id name email } } } }";
    let pages: String = (0..6).map(|i| format!("p{i}: {page} ")).collect();
    let body = app.gql(Some(&s.admin_token), &format!("{{ {pages} }}"), json!({})).await;
    assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("complex"), "{body}");
    let body = app.gql(Some(&s.admin_token), &format!("{{ {page} }}"), json!({})).await;
    assert_eq!(body["errors"], Value::Null, "{body}");

    // Anonymous callers introspect once per request (what GraphiQL does), not in aliased copies.
    let schema = "__schema { types { name fields { name } } }";
    let body = app.gql(None, &format!("{{ a: {schema} b: {schema} }}"), json!({})).await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert!(body["data"].is_null());
    let body = app.gql(None, &format!("{{ {schema} }}"), json!({})).await;
    assert!(body["data"]["__schema"]["types"].as_array().is_some_and(|t| !t.is_empty()), "{body}");
    let body = app.gql(Some(&s.admin_token), &format!("{{ a: {schema} b: {schema} }}"), json!({})).await;
    assert_eq!(body["errors"], Value::Null, "signed-in callers may");
    app.stop().await;
}

async fn http_routes_and_request_limits(app: TestApp) {
    let s = app.seed("Acme").await;
    let health: Value = app.http.get(format!("{}/healthz", app.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(health, json!({ "status": "ok" }));

    let page = app.http.get(format!("{}/graphiql", app.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self';") && !csp.contains("http"), "no remote origin: {csp}");
    assert!(page.text().await.unwrap().contains("/assets/graphiql/graphiql.min.js"));
    let start = app.http.get(format!("{}/assets/graphiql/start.js", app.url)).send().await.unwrap();
    assert_eq!(start.status(), 200);
    assert!(start.text().await.unwrap().contains("/graphql"));
    let missing = app.http.get(format!("{}/assets/graphiql/../Cargo.toml", app.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // Queries over GET work; mutations over GET are refused.
    let resp = app
        .http
        .get(format!("{}/graphql", app.url))
        .query(&[("query", "{ viewer { tenant { name } } }")])
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["viewer"]["tenant"]["name"], "Acme");
    let mutation = format!(
        "mutation {{ generateApiKey(input: {{ownerId: \"{}\", description: \"via GET\"}}) {{ secret }} }}",
        s.integration.id
    );
    let resp = app
        .http
        .get(format!("{}/graphql", app.url))
        .query(&[("query", mutation.as_str())])
        .bearer_auth(&s.admin_token)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(
        app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await["data"]["apiKeys"]["totalCount"],
        0
    );

    // A body that is not JSON: 400 with a JSON error.
    let resp = app
        .http
        .post(format!("{}/graphql", app.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_REQUEST");

    // Only JSON: a cross-origin "simple" POST (text/plain, form, or no type) never reaches a resolver.
    let mutation = json!({
        "query": latchkey_tests::ops::GENERATE,
        "variables": { "input": { "ownerId": s.integration.id, "description": "smuggled" } },
    })
    .to_string();
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut request = app.http.post(format!("{}/graphql", app.url)).bearer_auth(&s.admin_token);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let resp = request.body(mutation.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 415, "{content_type:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "UNSUPPORTED_MEDIA_TYPE", "{content_type:?}");
    }
    let charset = app
        .http
        .post(format!("{}/graphql", app.url))
        .header("content-type", "Application/JSON; charset=utf-8")
        .body(json!({ "query": "{ __typename }" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(charset.status(), 200, "JSON with parameters is JSON");
    assert_eq!(
        app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await["data"]["apiKeys"]["totalCount"],
        0,
        "nothing was generated"
    );

    // Over 1 MiB: 413, and nothing is created.
    let huge = json!({
        "query": latchkey_tests::ops::GENERATE,
        "variables": { "input": { "ownerId": s.integration.id, "description": "x".repeat(1 << 20) } },
    });
    let resp =
        app.http.post(format!("{}/graphql", app.url)).bearer_auth(&s.admin_token).json(&huge).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(
        app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await["data"]["apiKeys"]["totalCount"],
        0
    );

    // Responses are not cached by intermediaries.
    let resp =
        app.http.post(format!("{}/graphql", app.url)).json(&json!({ "query": "{ __typename }" })).send().await.unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    app.stop().await;
}

const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
}
"#;

async fn deep_queries_are_refused_but_graphiql_introspection_works(app: TestApp) {
    let body = app.gql(None, INTROSPECTION, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let types = body["data"]["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "ApiKeyConnection"));

    // 9 levels passes the parser's recursion limit but not the depth limit;
    // 20 levels is refused while parsing.
    for levels in [9, 20] {
        let mut nested = String::from("__typename");
        for _ in 0..levels {
            nested = format!("fields {{ type {{ {nested} }} }}");
        }
        let absurd = format!("{{ __schema {{ types {{ {nested} }} }} }}");
        let body = app.gql(None, &absurd, json!({})).await;
        assert_eq!(body["data"], Value::Null, "{levels}: {body}");
        assert_eq!(error_code(&body), "GRAPHQL_VALIDATION_FAILED", "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap().to_lowercase();
        assert!(message.contains("deep") || message.contains("depth"), "{body}");
    }
    app.stop().await;
}

async fn internal_failures_are_generic_and_change_nothing(app: TestApp) {
    let s = app.seed("Acme").await;
    // Break the outbox: a key change cannot commit without its event.
    app.db.execute("DROP TABLE key_events").await;
    let body = app
        .gql(
            Some(&s.admin_token),
            latchkey_tests::ops::GENERATE,
            json!({ "input": { "ownerId": s.integration.id, "description": "x" } }),
        )
        .await;
    assert_eq!(error_code(&body), "INTERNAL", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("Internal server error"), "{message}");
    let lower = body.to_string().to_lowercase();
    for leak in ["key_events", "sql", "table", "relation", "insert"] {
        assert!(!lower.contains(leak), "internal detail {leak:?} leaked: {body}");
    }
    assert!(body["data"].is_null());
    // The key was not created: no change without its notice.
    let listed = app.gql(Some(&s.admin_token), "{ apiKeys { totalCount } }", json!({})).await;
    assert_eq!(listed["data"]["apiKeys"]["totalCount"], 0, "{listed}");
    // The detail is in the log, on the line that names the request id the caller got.
    let request_id = body["errors"][0]["extensions"]["requestId"].as_str().expect("INTERNAL carries a requestId");
    let log = latchkey_tests::logs::captured();
    let line = log.lines().find(|l| l.contains(request_id) && l.contains("internal error"));
    assert!(line.is_some_and(|l| l.contains("key_events")), "the log line of {request_id} has the detail");
    app.stop().await;
}
