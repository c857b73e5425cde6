//! A TCP proxy on loopback that a test can cut, restore and point
//! elsewhere: to take the database away from a server without stopping the
//! shared PostgreSQL, or to stand where HAProxy stands in front of a
//! primary and its standby, switched over when the standby is promoted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
#[derive(Clone)]
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    target: Arc<Mutex<SocketAddr>>,
}

impl Proxy {
    /// Proxies a new loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(AtomicU64::new(0));
        let target = Arc::new(Mutex::new(target));
        let (up2, generation2, target2) = (up.clone(), generation.clone(), target.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let my_generation = generation2.load(Ordering::SeqCst);
                let generation = generation2.clone();
                let target = *target2.lock().expect("target");
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let cut = async {
                        while generation.load(Ordering::SeqCst) == my_generation {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut cr, &mut sw) => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Proxy { addr, up, generation, target }
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

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
