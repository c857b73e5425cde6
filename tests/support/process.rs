//! `latchkey serve` as a real process: started, found on its port, killed or
//! stopped with a signal.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::latchkey_bin;

/// A running `latchkey serve`.
pub struct ServerProcess {
    child: Child,
    /// Its base URL.
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Starts `latchkey serve` on a free port with `envs`, and waits until it
    /// listens.
    pub fn spawn(envs: &[(&str, &str)]) -> ServerProcess {
        Self::spawn_many(1, envs).pop().expect("one server")
    }

    /// Starts `count` servers at once (all processes first, then waits for each).
    pub fn spawn_many(count: usize, envs: &[(&str, &str)]) -> Vec<ServerProcess> {
        let started: Vec<_> = (0..count).map(|_| Self::start(envs)).collect();
        started.into_iter().map(|(child, log, rx)| Self::wait_listening(child, log, rx)).collect()
    }

    fn start(envs: &[(&str, &str)]) -> (Child, Arc<Mutex<String>>, std::sync::mpsc::Receiver<String>) {
        let mut cmd = Command::new(latchkey_bin());
        cmd.arg("serve")
            .env("LATCHKEY_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("LATCHKEY_WORKERS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn latchkey serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Text logs say `listening addr=127.0.0.1:PORT`; JSON logs `"addr":"127.0.0.1:PORT"`.
                let announced = line.split_once("listening addr=127.0.0.1:").or_else(|| {
                    line.contains("\"message\":\"listening\"")
                        .then(|| line.split_once("\"addr\":\"127.0.0.1:"))
                        .flatten()
                });
                if let Some((_, port)) = announced {
                    let port: String = port.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port);
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        (child, log, rx)
    }

    fn wait_listening(
        mut child: Child,
        log: Arc<Mutex<String>>,
        rx: std::sync::mpsc::Receiver<String>,
    ) -> ServerProcess {
        let port = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("latchkey serve did not start:\n{}", log.lock().unwrap());
        });
        ServerProcess { child, url: format!("http://127.0.0.1:{port}"), log }
    }

    /// Resident memory in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits (up to 20 s) for it to exit.
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("latchkey serve did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
