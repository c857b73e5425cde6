//! Headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`, started here on a free port).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A browser session and its driver process.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn required() -> bool {
    std::env::var("LATCHKEY_REQUIRE_BROWSER").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

impl Browser {
    /// Starts Chromium; `None` (reported loudly) when it is not installed and
    /// not required (`.ci/run` installs it and sets `LATCHKEY_REQUIRE_BROWSER=1`).
    pub async fn start() -> Option<Browser> {
        Self::start_with(&[]).await
    }

    /// As [`Browser::start`], on a machine without internet access: every
    /// host name but `localhost` fails to resolve (pages are opened at
    /// `127.0.0.1`), so any request to a CDN fails.
    pub async fn start_offline() -> Option<Browser> {
        Self::start_with(&["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"]).await
    }

    async fn start_with(extra_args: &[&str]) -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(CHROMEDRIVER).exists() {
            assert!(!required(), "LATCHKEY_REQUIRE_BROWSER=1 but {CHROMIUM} or {CHROMEDRIVER} is missing");
            eprintln!("\n*** SKIPPED: browser test — install Debian's chromium and chromium-driver to run it. ***\n");
            return None;
        }
        let port = crate::smtp::free_port().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .iter()
        .chain(extra_args)
        .map(|a| (*a).to_owned())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({ "goog:chromeOptions": { "binary": CHROMIUM, "args": args } });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities.clone());
            match builder.connect(&url).await {
                Ok(client) => return Some(Browser { client, driver, _profile: profile }),
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot start a WebDriver session: {last_error}");
    }
}

/// Runs `script` in the page and returns its value.
pub async fn js(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// Waits until `script` returns `true` (10 s at most).
pub async fn until(c: &Client, script: &str) {
    for _ in 0..200 {
        if js(c, script).await == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {script}");
}

/// Clicks the element `css` selects.
pub async fn click(c: &Client, css: &str) {
    c.find(fantoccini::Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
