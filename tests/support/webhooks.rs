//! A webhook receiver on a loopback port, answering as each test scripts
//! it, and signature checks with the reference Standard Webhooks library
//! (`standardwebhooks` from PyPI).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// This status, with a short body.
    Status(u16),
    /// 200, after this long (longer than the attempt timeout: cut).
    Slow(Duration),
    /// 200 with a body this large (over 1 MB: cut).
    Huge(usize),
    /// 302 to another place (never followed).
    Redirect,
    /// Never answers, holding the connection (a receiver that hangs).
    Hang,
}

/// One request received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Lower-case header names.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: String,
    /// When it arrived.
    pub at: Instant,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("webhook bodies are JSON")
    }

    /// The `webhook-id` header.
    pub fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Answer>,
    received: Vec<Received>,
}

/// The receiver. Answers 200 unless scripted otherwise.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, shared.clone()));
            }
        });
        Receiver { addr, state, task }
    }

    /// Its URL (`http`, allowed by the tests' `LATCHKEY_WEBHOOK_ALLOW_HOSTS`).
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Answers the next requests with `answers`, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits (up to `timeout`) until at least `count` requests arrived.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            assert!(Instant::now() < deadline, "{count} webhooks expected, {} received: {got:#?}", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one connection: requests answered with a status keep it open
/// (as a real receiver would), any other answer closes it.
async fn serve(mut socket: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        let mut headers = BTreeMap::new();
        for line in head.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        while pending.len() < head_end + length {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        let body = String::from_utf8_lossy(&pending[head_end..head_end + length]).into_owned();
        pending.drain(..head_end + length);
        let answer = {
            let mut state = state.lock().unwrap();
            state.received.push(Received { headers, body, at: Instant::now() });
            state.script.pop_front().unwrap_or(Answer::Status(200))
        };
        let respond = |status: u16, extra: &str, body: &str| {
            format!(
                "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{extra}\r\n{body}",
                body.len()
            )
        };
        match answer {
            Answer::Status(status) => {
                if socket.write_all(respond(status, "", &format!("answered {status}")).as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            Answer::Slow(wait) => {
                tokio::time::sleep(wait).await;
                let _ = socket.write_all(respond(200, "Connection: close\r\n", "late").as_bytes()).await;
            }
            Answer::Redirect => {
                let extra = "Location: http://127.0.0.1:9/elsewhere\r\nConnection: close\r\n";
                let _ = socket.write_all(respond(302, extra, "moved").as_bytes()).await;
            }
            Answer::Huge(size) => {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n");
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut sent = 0;
                while sent < size {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    sent += chunk.len();
                }
            }
            Answer::Hang => {
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
        }
        let _ = socket.shutdown().await;
        return;
    }
}

/// Whether the reference library is installed; a test that needs it and
/// finds it missing fails when `LATCHKEY_REQUIRE_WEBHOOK_LIB` is set (as
/// `.ci/run` sets it) and is skipped loudly otherwise.
pub fn reference_library() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("LATCHKEY_REQUIRE_WEBHOOK_LIB").is_none(),
            "the standardwebhooks package is required: python3 -m pip install standardwebhooks"
        );
        eprintln!("SKIPPED: python3 -m pip install standardwebhooks to verify signatures with the reference library");
    }
    found
}

/// What the reference library says of each request verified with `secret`:
/// `Ok` or its error message. It also checks the timestamp is within 5
/// minutes of now.
pub fn verify_with_reference_library(secret: &str, received: &[Received]) -> Vec<Result<(), String>> {
    let cases: Vec<Value> = received
        .iter()
        .map(|r| {
            json!({
                "secret": secret,
                "body": r.body,
                "headers": {
                    "webhook-id": r.headers.get("webhook-id"),
                    "webhook-timestamp": r.headers.get("webhook-timestamp"),
                    "webhook-signature": r.headers.get("webhook-signature"),
                },
            })
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/webhooks/verify.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(serde_json::to_string(&cases).unwrap().as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "verify.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let verdicts: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    verdicts.into_iter().map(|v| if v == Value::Bool(true) { Ok(()) } else { Err(v.to_string()) }).collect()
}
