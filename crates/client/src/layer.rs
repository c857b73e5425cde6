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
    verifier: Verifier,
    context: RequestContext,
    client_ip: Option<ClientIp>,
}

impl std::fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyLayer").field("context", &self.context).finish_non_exhaustive()
    }
}

impl VerifyLayer {
    /// Verifies with `verifier` that each request's key may serve
    /// `context` (the cloud and permissions of the routes it wraps).
    pub fn new(verifier: Verifier, context: RequestContext) -> Self {
        VerifyLayer { verifier, context, client_ip: None }
    }

    /// Where to find the end client's address (for keys restricted to
    /// networks), e.g. axum's `ConnectInfo` in the extensions.
    pub fn client_ip<F>(mut self, client_ip: F) -> Self
    where
        F: Fn(&HeaderMap, &http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.client_ip = Some(Arc::new(client_ip));
        self
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService { inner, layer: self.clone() }
    }
}

/// The service [`VerifyLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct VerifyService<S> {
    inner: S,
    layer: VerifyLayer,
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
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.layer.verifier.clone();
        let mut context = self.layer.context.clone();
        if let Some(client_ip) = &self.layer.client_ip {
            context.ip = client_ip(request.headers(), request.extensions());
        }
        let secret = presented_key(request.headers()).map(str::to_owned);
        Box::pin(async move {
            let Some(secret) = secret else {
                return Ok(refused(&Refusal::code(RefusalCode::MissingKey)));
            };
            match verifier.verify(&secret, &context).await {
                Ok(Verification::Valid(key)) => {
                    request.extensions_mut().insert(key);
                    inner.call(request).await
                }
                Ok(Verification::Refused(refusal)) => Ok(refused(&refusal)),
                Err(Error::Unavailable(why)) => {
                    tracing::warn!(reason = %why, "cannot verify: Latchkey unavailable");
                    Ok(error(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "Keys cannot be verified now; retry."))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot verify");
                    Ok(error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "Keys cannot be verified."))
                }
            }
        })
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
