//! GraphiQL from the demo's printed link, in headless Chromium that can
//! reach nothing but this machine: served by Latchkey itself, signed in
//! through the link's fragment, running the example query.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use latchkey_tests::browser::{Browser, click, js, until};
use latchkey_tests::latchkey_bin;
use serde_json::json;

/// The first line of `out` the demo printed that contains `needle`.
fn line_containing(
    out: impl std::io::Read + Send + 'static,
    needle: &'static str,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains(needle) {
                let _ = tx.send(line.trim().to_owned());
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_works_offline_from_the_demo_link() {
    let Some(browser) = Browser::start_offline().await else { return };
    let c = &browser.client;
    // This browser really is offline: a CDN's name does not resolve.
    c.goto("about:blank").await.unwrap();
    let cdn = c
        .execute_async(
            "const done = arguments[0]; fetch('https://unpkg.com/graphiql/graphiql.min.js').then(() => done('reached'), () => done('unreachable'))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(cdn, json!("unreachable"));

    let dir = tempfile::tempdir().unwrap();
    let mut demo = Command::new(latchkey_bin())
        .args(["demo", "--bind", "127.0.0.1:0", "--demo-database"])
        .arg(dir.path().join("demo.db"))
        .arg("--demo-mail-dir")
        .arg(dir.path().join("mail"))
        .env("RUST_LOG", "info")
        .env_remove("LATCHKEY_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let links = line_containing(demo.stdout.take().unwrap(), "/graphiql#token=");
    let logs = line_containing(demo.stderr.take().unwrap(), "");
    let link = links.recv_timeout(Duration::from_secs(60)).expect("the demo prints a GraphiQL link");
    assert!(link.starts_with("http://127.0.0.1:"), "{link}");
    let origin = link.split("/graphiql").next().unwrap().to_owned();

    c.goto(&link).await.unwrap();
    until(c, "return !!document.querySelector('.graphiql-container .graphiql-execute-button')").await;
    let href = js(c, "return location.href").await;
    assert_eq!(href, json!(format!("{origin}/graphiql")), "the token is dropped from the address bar");

    // The example query is filled in and the link's token is the Authorization header: run it.
    click(c, ".graphiql-execute-button").await;
    let result = "(document.querySelector('.graphiql-response')?.innerText || '')";
    until(c, &format!("return {result}.includes('totalCount')")).await;
    let shown = js(c, &format!("return {result}")).await;
    let shown = shown.as_str().unwrap();
    // The demo's four keys, newest first (the editor renders the lines in view).
    assert!(shown.contains("\"totalCount\": 4"), "the demo's key table: {shown}");
    assert!(shown.contains("\"description\": \"Course catalogue import\""), "{shown}");
    assert!(!shown.contains("UNAUTHENTICATED"), "{shown}");

    // The docs explorer shows the schema.
    click(c, "button[aria-label='Show Documentation Explorer']").await;
    let explorer = "(document.querySelector('.graphiql-doc-explorer')?.innerText || '')";
    until(c, &format!("return {explorer}.includes('QueryRoot') && {explorer}.includes('MutationRoot')")).await;
    js(c, "[...document.querySelectorAll('.graphiql-doc-explorer a')].find(a => a.textContent === 'QueryRoot').click(); return true").await;
    until(c, &format!("return {explorer}.includes('apiKeys')")).await;

    // Everything came from the server itself.
    let origins = js(c, "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)").await;
    let origins: Vec<String> = serde_json::from_value(origins).unwrap();
    assert!(origins.len() >= 5 && origins.iter().all(|o| *o == origin), "{origins:?}");
    if let Ok(path) = std::env::var("LATCHKEY_GRAPHIQL_SCREENSHOT") {
        std::fs::write(path, c.screenshot().await.unwrap()).unwrap();
    }

    demo.kill().unwrap();
    demo.wait().unwrap();
    // The token never reached a log: the demo's request log holds no part of it.
    let token = link.split("#token=").nth(1).unwrap();
    let printed: Vec<String> = logs.try_iter().collect();
    assert!(printed.iter().any(|l| l.contains("/assets/graphiql/start.js")), "requests are logged: {printed:?}");
    assert!(printed.iter().all(|l| !l.contains(&token[token.len() - 20..])), "{printed:?}");
}
