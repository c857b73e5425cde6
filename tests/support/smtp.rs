//! A real SMTP server on loopback (mailin-embedded), recording what it
//! receives, and able to refuse mail temporarily or permanently on demand.

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::response::{INTERNAL_ERROR, OK};
use mailin_embedded::{Handler, Response, Server};

/// How the server answers RCPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 250: accepted.
    Accept,
    /// 451: try again later.
    RefuseTemporarily,
    /// 554: permanent failure.
    RefusePermanently,
}

/// One received message.
#[derive(Clone, Debug)]
pub struct Received {
    /// Envelope sender.
    pub from: String,
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The raw message (headers and body, as sent).
    pub data: Vec<u8>,
}

impl Received {
    /// Parses the message as MIME.
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default().parse(&self.data).expect("a MIME message")
    }

    /// The raw message as text.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

#[derive(Clone)]
struct Recorder {
    mode: Arc<Mutex<Mode>>,
    received: Arc<Mutex<Vec<Received>>>,
    current: Option<Received>,
}

impl Handler for Recorder {
    // Refusals are given at RCPT, as real servers do for unknown or
    // greylisted recipients.
    fn rcpt(&mut self, _to: &str) -> Response {
        match *self.mode.lock().unwrap() {
            Mode::Accept => OK,
            Mode::RefuseTemporarily => INTERNAL_ERROR,
            Mode::RefusePermanently => Response::custom(554, "5.7.1 Recipient refused by policy".to_owned()),
        }
    }

    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current = Some(Received { from: from.to_owned(), to: to.to_vec(), data: Vec::new() });
        OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if let Some(current) = self.current.as_mut() {
            current.data.extend_from_slice(buf);
        }
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if let Some(m) = self.current.take() {
            self.received.lock().unwrap().push(m);
        }
        OK
    }
}

/// A running SMTP server. It runs until the test process ends.
#[derive(Clone)]
pub struct SmtpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> SmtpServer {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"))
    }

    fn start_on(listener: TcpListener) -> SmtpServer {
        let addr = listener.local_addr().expect("addr");
        let mode = Arc::new(Mutex::new(Mode::Accept));
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler = Recorder { mode: mode.clone(), received: received.clone(), current: None };
        std::thread::spawn(move || {
            let mut server = Server::new(handler);
            server.with_name("smtp.test").with_num_threads(64).with_tcp_listener(listener);
            let _ = server.serve();
        });
        SmtpServer { addr, mode, received }
    }

    /// `smtp://127.0.0.1:PORT` (plain SMTP, as for a local relay).
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Changes how DATA is answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Everything accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` messages were accepted (or `timeout`).
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= count || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A loopback address with a port nobody listens on right now (for "the
/// SMTP server is down").
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}
