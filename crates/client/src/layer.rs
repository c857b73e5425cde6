//! A `tower::Layer` for axum, tonic and hyper services: reads the key
//! (`Authorization: Bearer lk_…`, else `X-Api-Key`), verifies it, and
//! either passes the request on with an `Arc<VerifiedKey>` in its
//! extensions or answers as Latchkey's `/v1/auth` does: 401 (with
//! `WWW-Authenticate`), 403, 429 (with `Retry-After`), each with
//! `X-Latchkey-Code` and the JSON of `/v1/keys/verify`; 503 when Latchkey
//! cannot be asked and the cache may not answer.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use crate::context::RequestContext;
use crate::error::Error;
use crate::verification::{Refusal, RefusalCode, Verification};
use crate::verifier::Verifier;

/// Seconds to wait after `RATE_LIMITED` (a presenter's failures are counted per minute).
const RATE_LIMITED_RETRY_SECONDS: u64 = 60;
/// Seconds to wait after `USAGE_EXCEEDED` (the answer does not say when credits come back).
const USAGE_EXCEEDED_RETRY_SECONDS: u64 = 3600;

type ClientIp = Arc<dyn Fn(&HeaderMap, &http::Extensions) -> Option<IpAddr> + Send + Sync>;

/// Verifies every request's key; see the module documentation.
#[derive(Clone)]
pub struct VerifyLayer {
    /// One allocation: routers clone the service for every request.
    layer: Arc<LayerState>,
}

struct LayerState {
    verifier: Verifier,
    context: RequestContext,
    client_ip: Option<ClientIp>,
}

impl std::fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLayer").field("context", &self.layer.context).finish_non_exhaustive()
    }
}

impl VerifyLayer {
    /// Verifies with `verifier` that each request's key may serve
    /// `context` (the cloud and permissions of the routes it wraps).
    pub fn new(verifier: Verifier, context: RequestContext) -> Self {
        VerifyLayer { layer: Arc::new(LayerState { verifier, context, client_ip: None }) }
    }

    /// Where to find the end client's address (for keys restricted to
    /// networks), e.g. axum's `ConnectInfo` in the extensions.
    pub fn client_ip<F>(self, client_ip: F) -> Self
    where
        F: Fn(&HeaderMap, &http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        let LayerState { verifier, context, .. } = &*self.layer;
        let state =
            LayerState { verifier: verifier.clone(), context: context.clone(), client_ip: Some(Arc::new(client_ip)) };
        VerifyLayer { layer: Arc::new(state) }
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService { inner, layer: self.layer.clone() }
    }
}

/// The service [`VerifyLayer`] wraps around another.
#[derive(Clone)]
pub struct VerifyService<S> {
    inner: S,
    layer: Arc<LayerState>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for VerifyService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyService").field("inner", &self.inner).field("context", &self.layer.context).finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VerifyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let layer = &self.layer;
        let ip = match &layer.client_ip {
            Some(client_ip) => client_ip(request.headers(), request.extensions()),
            None => layer.context.ip,
        };
        let Some(secret) = presented_key(request.headers()) else {
            return ResponseFuture::ready(refused(&Refusal::code(RefusalCode::MissingKey)));
        };
        if let Err(e) = crate::verifier::check(&layer.context) {
            return ResponseFuture::ready(failed(&e));
        }
        // A cached answer is decided here, without a task or a clone of the verifier.
        let digest = match layer.verifier.cached(secret, &layer.context, ip) {
            Ok(Verification::Valid(key)) => {
                request.extensions_mut().insert(key);
                return ResponseFuture::inner(self.inner.call(request));
            }
            Ok(Verification::Refused(refusal)) => return ResponseFuture::ready(refused(&refusal)),
            Err(digest) => digest,
        };
        let secret = secret.to_owned();
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::asking(Box::pin(async move {
            match layer.verifier.ask_and_keep(&secret, &layer.context, ip, digest).await {
                Ok(Verification::Valid(key)) => {
                    request.extensions_mut().insert(key);
                    inner.call(request).await
                }
                Ok(Verification::Refused(refusal)) => Ok(refused(&refusal)),
                Err(e) => Ok(failed(&e)),
            }
        }))
    }
}

pin_project_lite::pin_project! {
    /// What [`VerifyService`] answers with: the inner service's answer, a
    /// refusal, or (when Latchkey is asked) both in turn.
    #[project = Projected]
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        state: State<F, R, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProjected]
    enum State<F, R, E> {
        Inner { #[pin] future: F },
        Ready { response: Option<R> },
        Asking { future: Pin<Box<dyn Future<Output = Result<R, E>> + Send>> },
    }
}

impl<F, R, E> ResponseFuture<F, R, E> {
    fn inner(future: F) -> Self {
        ResponseFuture { state: State::Inner { future } }
    }

    fn ready(response: R) -> Self {
        ResponseFuture { state: State::Ready { response: Some(response) } }
    }

    fn asking(future: Pin<Box<dyn Future<Output = Result<R, E>> + Send>>) -> Self {
        ResponseFuture { state: State::Asking { future } }
    }
}

impl<F, R, E> std::fmt::Debug for ResponseFuture<F, R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, R, E> Future for ResponseFuture<F, R, E>
where
    F: Future<Output = Result<R, E>>,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProjected::Inner { future } => future.poll(cx),
            StateProjected::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending, // polled after completion
            },
            StateProjected::Asking { future } => future.as_mut().poll(cx),
        }
    }
}

/// The answer when no verdict could be had.
fn failed<B: From<String>>(e: &Error) -> Response<B> {
    match e {
        Error::Unavailable(why) => {
            tracing::warn!(reason = %why, "cannot verify: Latchkey unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "Keys cannot be verified now; retry.")
        }
        e => {
            tracing::error!(error = %e, "cannot verify");
            error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "Keys cannot be verified.")
        }
    }
}

/// The key: `Authorization: Bearer …`, else `X-Api-Key`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)).filter(|k| !k.is_empty())
}

/// The answer to a refused key, as `/v1/auth` gives it.
fn refused<B: From<String>>(refusal: &Refusal) -> Response<B> {
    let code = refusal.code.as_str();
    let mut body = serde_json::json!({ "valid": false, "code": code });
    let mut retry_after = None;
    match refusal.code {
        RefusalCode::InsufficientPermissions => body["missing"] = serde_json::json!(refusal.missing),
        RefusalCode::RateLimitExceeded => {
            if let Some(limit) = &refusal.limit {
                body["limit"] = serde_json::json!({
                    "name": limit.name, "limit": limit.limit, "remaining": 0, "resetAt": limit.reset_at,
                });
                let reset = SystemTime::from(limit.reset_at).duration_since(SystemTime::now()).unwrap_or_default();
                retry_after = Some(reset.as_secs_f64().ceil().max(1.0) as u64);
            }
        }
        RefusalCode::UsageExceeded => {
            body["remaining"] = serde_json::json!(refusal.remaining);
            retry_after = Some(USAGE_EXCEEDED_RETRY_SECONDS);
        }
        RefusalCode::RateLimited => retry_after = Some(RATE_LIMITED_RETRY_SECONDS),
        _ => {}
    }
    let status = StatusCode::from_u16(refusal.code.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(code) {
        headers.insert("x-latchkey-code", value);
    }
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="latchkey", error="invalid_token""#),
        );
    }
    if refusal.code == RefusalCode::InsufficientPermissions {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="latchkey", error="insufficient_scope""#),
        );
    }
    if let Some(seconds) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An error answer in Latchkey's REST form.
fn error<B: From<String>>(status: StatusCode, code: &str, message: &str) -> Response<B> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    let mut response = Response::new(B::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
