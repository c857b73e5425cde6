//! Admin front ends on their own origin: a page from an allowed origin calls
//! `/graphql` with a bearer token in real Chromium; a page from another
//! origin is blocked by the browser.

use std::time::Duration;

use latchkey_tests::browser::Browser;
use latchkey_tests::{AppOptions, Backend, TestApp, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `page` at every path of a fresh loopback port; returns its origin.
async fn serve_page(page: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_listed_origins_may_call_the_api_from_a_browser() {
    let Some(browser) = Browser::start().await else { return };
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // The allowed page's origin must be known before the server starts: reserve it first.
    let allowed_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let allowed_origin = format!("http://{}", allowed_listener.local_addr().unwrap());
    drop(allowed_listener);
    let options = AppOptions { cors_origins: vec![allowed_origin.clone()], ..AppOptions::default() };
    let app = TestApp::start_with(db, options).await;
    let s = app.seed("Acme").await;

    // Without a browser: preflights and answers carry CORS headers for the listed origin only.
    let preflight = |origin: &str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.url))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization, content-type")
            .send()
    };
    let ok = preflight(&allowed_origin).await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], allowed_origin.as_str());
    assert!(ok.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    assert_eq!(ok.headers()["vary"], "Origin");
    let other = preflight("http://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none(), "no CORS for another origin");

    // In the browser.
    let page = format!(
        "<!doctype html><title>waiting</title><script>\
         fetch('{}/graphql', {{ method: 'POST', headers: {{ 'content-type': 'application/json', authorization: 'Bearer {}' }}, \
         body: JSON.stringify({{ query: '{{ viewer {{ tenant {{ name }} }} }}' }}) }})\
         .then(r => r.json()).then(b => {{ document.title = 'ok:' + b.data.viewer.tenant.name }})\
         .catch(() => {{ document.title = 'blocked' }});</script>",
        app.url, s.admin_token
    );
    // Serve the allowed page on the reserved port, the other anywhere.
    let listener = tokio::net::TcpListener::bind(allowed_origin.trim_start_matches("http://")).await.unwrap();
    let served = page.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{served}",
                served.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    let other_origin = serve_page(page).await;
    let c = &browser.client;
    let title = |c: &fantoccini::Client| {
        let c = c.clone();
        async move { c.title().await.unwrap() }
    };
    c.goto(&allowed_origin).await.unwrap();
    let mut seen = String::new();
    for _ in 0..100 {
        seen = title(c).await;
        if seen != "waiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "ok:Acme", "the listed origin's page gets its answer");
    c.goto(&other_origin).await.unwrap();
    for _ in 0..100 {
        seen = title(c).await;
        if seen != "waiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, "blocked", "another origin's page is blocked by the browser");
    browser.client.clone().close().await.unwrap();
    app.stop().await;
}
