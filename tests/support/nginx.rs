//! A real nginx (Debian's package), started on a free port with a config a
//! test writes, and an upstream that answers with the headers it received.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const NGINX: &str = "/usr/sbin/nginx";

fn required() -> bool {
    std::env::var("LATCHKEY_REQUIRE_NGINX").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A running nginx, stopped on drop.
pub struct Nginx {
    /// Where it listens, as `http://127.0.0.1:port`.
    pub url: String,
    process: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with `http_block` (the inside of its `http { }`, where
    /// `{listen}` stands for the address to listen on); `None` (reported
    /// loudly) when nginx is not installed and not required (`.ci/run`
    /// installs it and sets `LATCHKEY_REQUIRE_NGINX=1`).
    pub async fn start(http_block: &str) -> Option<Nginx> {
        if !std::path::Path::new(NGINX).exists() {
            assert!(!required(), "LATCHKEY_REQUIRE_NGINX=1 but {NGINX} is missing");
            eprintln!("\n*** SKIPPED: nginx test — install Debian's nginx to run it. ***\n");
            return None;
        }
        let dir = tempfile::tempdir().expect("nginx dir");
        let listen = crate::smtp::free_port();
        let d = dir.path().display();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}\n}}\n",
            http_block.replace("{listen}", &listen.to_string())
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config).expect("write nginx.conf");
        let process = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let nginx = Nginx { url: format!("http://{listen}"), process, dir };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                return Some(nginx);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not start listening on {listen}: {}", nginx.error_log());
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// An upstream that answers every request with 200 and a JSON object of the
/// request's headers (lower-case names, every value of each), plus its
/// request line under `":request"`.
pub struct EchoUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoUpstream {
    /// Starts it on a free loopback port.
    pub async fn start() -> EchoUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&request);
                    let mut lines = text.split("\r\n");
                    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    headers.insert(":request".into(), vec![lines.next().unwrap_or_default().to_owned()]);
                    for line in lines.take_while(|l| !l.is_empty()) {
                        if let Some((name, value)) = line.split_once(':') {
                            headers.entry(name.trim().to_ascii_lowercase()).or_default().push(value.trim().to_owned());
                        }
                    }
                    let body = serde_json::to_string(&headers).expect("json");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        EchoUpstream { addr, task }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
