//! Webhook requests leave here: one signed `POST` per attempt, to an address
//! checked against the address rule at every connection (so a name that
//! resolves elsewhere after the endpoint was checked is still refused), with
//! no redirects followed, a time limit, and the response read up to a cap.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_domain::webhook_events::{MAX_RESPONSE_BYTES, kept_body};
use latchkey_domain::webhooks::{AllowedHosts, is_forbidden_address, refused_addresses};

/// One attempt to send.
#[derive(Clone, Debug)]
pub struct WebhookRequest {
    /// Where.
    pub url: String,
    /// `webhook-id`.
    pub message_id: String,
    /// `webhook-timestamp` (Unix seconds).
    pub timestamp: i64,
    /// `webhook-signature`.
    pub signature: String,
    /// The JSON body.
    pub body: String,
}

/// What the receiver did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendOutcome {
    /// Its HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// The start of its response body, as text.
    pub response_body: String,
    /// Why the attempt failed, when it did before or beyond the status.
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration: Duration,
}

/// A boxed future returned by [`WebhookSender::send`].
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = SendOutcome> + Send + 'a>>;

/// Sends one webhook request.
pub trait WebhookSender: Send + Sync + std::fmt::Debug {
    /// Sends `request` and reports what came back.
    fn send<'a>(&'a self, request: &'a WebhookRequest) -> SendFuture<'a>;

    /// Why `host` may not be sent to (resolving it now), if it may not.
    fn refusal<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;
}

/// Resolves names for the HTTP client, dropping any address the rule
/// forbids: a name whose addresses are all internal fails to connect.
#[derive(Debug)]
struct CheckedResolver {
    allowed: Arc<AllowedHosts>,
}

async fn resolve(host: &str) -> std::io::Result<Vec<IpAddr>> {
    Ok(tokio::net::lookup_host((host, 0)).await?.map(|a| a.ip()).collect())
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = Arc::clone(&self.allowed);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found = resolve(&host).await?;
            if let Some(reason) = refused_addresses(&host, &found, &allowed) {
                return Err(reason.into());
            }
            let addrs: Vec<SocketAddr> = found.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The real sender: `reqwest` over rustls, through [`CheckedResolver`].
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    client: reqwest::Client,
    allowed: Arc<AllowedHosts>,
    timeout: Duration,
}

impl HttpWebhookSender {
    /// A sender that lets through only public addresses and those `allowed`,
    /// giving each attempt `timeout` (the contract's is
    /// [`latchkey_domain::webhook_events::ATTEMPT_TIMEOUT`]).
    pub fn new(allowed: AllowedHosts, timeout: Duration) -> Result<Self, reqwest::Error> {
        let allowed = Arc::new(allowed);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .pool_max_idle_per_host(8)
            .user_agent(concat!("Latchkey-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(CheckedResolver { allowed: Arc::clone(&allowed) }))
            .build()?;
        Ok(HttpWebhookSender { client, allowed, timeout })
    }

    async fn attempt(&self, request: &WebhookRequest) -> Result<(u16, String, Option<String>), String> {
        let url = reqwest::Url::parse(&request.url).map_err(|_| "the endpoint URL is not valid".to_owned())?;
        // Address literals never reach the resolver: check them here.
        if let Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) = url.host() {
            let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = host.parse::<IpAddr>()
                && is_forbidden_address(ip)
                && !self.allowed.allows_host(host)
            {
                return Err(format!("{ip} is an internal address; not sent"));
            }
        }
        let mut response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &request.message_id)
            .header("webhook-timestamp", request.timestamp.to_string())
            .header("webhook-signature", &request.signature)
            .body(request.body.clone())
            .send()
            .await
            .map_err(describe_error)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let mut cut = None;
        while let Some(chunk) = response.chunk().await.map_err(describe_error)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                cut = Some(format!("the response was larger than {} MB; it was cut", MAX_RESPONSE_BYTES >> 20));
                break;
            }
            body.extend_from_slice(&chunk);
        }
        if (300..400).contains(&status) && cut.is_none() {
            cut = Some(format!("the receiver redirected ({status}); redirects are not followed"));
        }
        Ok((status, kept_body(&body), cut))
    }
}

/// An error of the HTTP client as an attempt records it (no URL, which the
/// admin already knows, and nothing of the request).
fn describe_error(e: reqwest::Error) -> String {
    use std::error::Error;
    if e.is_timeout() {
        return "no answer in time".to_owned();
    }
    let mut reason = if e.is_connect() { "could not connect".to_owned() } else { "the request failed".to_owned() };
    let mut source = e.source();
    while let Some(inner) = source {
        reason = format!("{reason}: {inner}");
        source = inner.source();
    }
    reason
}

impl WebhookSender for HttpWebhookSender {
    fn send<'a>(&'a self, request: &'a WebhookRequest) -> SendFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(self.timeout, self.attempt(request)).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs_f64())),
            };
            let duration = started.elapsed();
            match result {
                Ok((status, response_body, error)) => {
                    SendOutcome { http_status: Some(status), response_body, error, duration }
                }
                Err(error) => {
                    SendOutcome { http_status: None, response_body: String::new(), error: Some(error), duration }
                }
            }
        })
    }

    fn refusal<'a>(&'a self, host: &'a str) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(async move {
            if self.allowed.allows_host(host) {
                return None;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                return refused_addresses(host, &[ip], &self.allowed);
            }
            match resolve(host).await {
                Ok(found) => refused_addresses(host, &found, &self.allowed),
                Err(_) => Some(format!("{host} does not resolve to any address.")),
            }
        })
    }
}
