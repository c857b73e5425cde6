//! The `latchkey-client` example service (`examples/verify_service.rs`) as
//! a real process: an axum service verifying keys in process with the
//! client's tower layer.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running example service.
pub struct ServiceProcess {
    child: Child,
    /// Its base URL.
    pub url: String,
    http: reqwest::Client,
}

/// The example's binary, built by `cargo test --workspace` (or
/// `cargo build -p latchkey-client --examples`).
pub fn service_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir").to_path_buf();
    let bin = dir.join("examples").join(format!("verify_service{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (which builds it) or `cargo build -p latchkey-client --examples` first",
        bin.display()
    );
    bin
}

impl ServiceProcess {
    /// Starts the service against Latchkey at `latchkey_url` with
    /// `stream_key`, and `envs`; waits until it listens.
    pub fn spawn(latchkey_url: &str, stream_key: &str, envs: &[(&str, &str)]) -> ServiceProcess {
        let mut cmd = Command::new(service_bin());
        cmd.env("LATCHKEY_URL", latchkey_url)
            .env("LATCHKEY_STREAM_KEY", stream_key)
            .env("BIND", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the example service");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("the example service did not start");
        };
        ServiceProcess { child, url: format!("http://{addr}"), http: reqwest::Client::new() }
    }

    /// `GET path` with `key` as a bearer token: the status and the body.
    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.url)).bearer_auth(key).send().await.expect("service");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The verifier's counters (`GET /stats`).
    pub async fn stats(&self) -> Value {
        self.http.get(format!("{}/stats", self.url)).send().await.expect("stats").json().await.expect("json")
    }

    /// Waits until the verifier's counters satisfy `done`, within `limit`.
    pub async fn wait_stats(&self, limit: Duration, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = std::time::Instant::now();
        loop {
            let stats = self.stats().await;
            if done(&stats) {
                return stats;
            }
            assert!(started.elapsed() < limit, "{what}: not within {limit:?}: {stats}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
