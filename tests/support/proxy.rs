//! A TCP proxy on loopback that a test can cut, restore and point
//! elsewhere: to take the database away from a server without stopping the
//! shared PostgreSQL, or to stand where HAProxy stands in front of a
//! primary and its standby, switched over when the standby is promoted.
//! It can also lose answers: a request sent meanwhile reaches the server,
//! and its connection is closed instead of answered (a response lost on
//! the way back).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    losing_answers: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    target: Arc<Mutex<SocketAddr>>,
}

impl Proxy {
    /// Proxies a new loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let losing_answers = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let target = Arc::new(Mutex::new(target));
        let (up2, generation2, target2) = (up.clone(), generation.clone(), target.clone());
        let losing2 = losing_answers.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let my_generation = generation2.load(Ordering::SeqCst);
                let generation = generation2.clone();
                let target = *target2.lock().expect("target");
                let losing = losing2.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let cut = async {
                        while generation.load(Ordering::SeqCst) == my_generation {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    // Set when this connection carried a request while answers are lost.
                    let asked_while_losing = AtomicBool::new(false);
                    let requests = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if losing.load(Ordering::SeqCst) {
                                asked_while_losing.store(true, Ordering::SeqCst);
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let answers = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if asked_while_losing.load(Ordering::SeqCst) || cw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        () = requests => {}
                        () = answers => {}
                        () = cut => {}
                    }
                });
            }
        });
        Proxy { addr, up, losing_answers, generation, target }
    }

    /// Cuts every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Cuts every connection and sends new ones to `target` (a failover).
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().expect("target") = target;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// From now on, a request reaches the server but its connection is
    /// closed when the answer comes (until [`Proxy::deliver_answers`]).
    pub fn lose_answers(&self) {
        self.losing_answers.store(true, Ordering::SeqCst);
    }

    /// Answers reach the client again.
    pub fn deliver_answers(&self) {
        self.losing_answers.store(false, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
