//! What every REST front end answers with, in one place: the error body and
//! its closed set of codes ([`RestError`], mapped from `AppError` once), the
//! client's address under the trusted-proxy rule, and a cloud as gateways
//! name it. It imports no other module of this crate.

use std::net::IpAddr;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use latchkey_app::AppError;
use latchkey_domain::Cloud;
use latchkey_domain::restrictions::Network;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};

/// Every code a REST error carries in `error.code`, each with its status.
/// (Refusals of a key are not errors: they are `VerifyOutcome` codes.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    /// 400: the request is malformed.
    BadRequest,
    /// 400: an argument is out of range (from `AppError::BadUserInput`).
    BadUserInput,
    /// 401: no credentials, or credentials that do not authenticate.
    Unauthenticated,
    /// 403: authenticated, not allowed.
    Forbidden,
    /// 404: no such resource.
    NotFound,
    /// 405: the resource answers other methods (`Allow` says which).
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    RequestTimeout,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 415: the body is not of a type the endpoint reads.
    UnsupportedMediaType,
    /// 429: too many requests from this client.
    RateLimited,
    /// 429: the API key is over one of its rate limits.
    RateLimitExceeded,
    /// 429: the API key has no credits left.
    UsageExceeded,
    /// 503: something Latchkey depends on cannot answer now.
    Unavailable,
    /// 503: Latchkey failed; `requestId` names the log line.
    Internal,
}

impl ErrorCode {
    /// Every code.
    #[cfg(test)]
    const ALL: [ErrorCode; 14] = [
        ErrorCode::BadRequest,
        ErrorCode::BadUserInput,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::RateLimitExceeded,
        ErrorCode::UsageExceeded,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The stable code.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            ErrorCode::UsageExceeded => "USAGE_EXCEEDED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status it is answered with.
    pub(crate) const fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest | ErrorCode::BadUserInput => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::RateLimited | ErrorCode::RateLimitExceeded | ErrorCode::UsageExceeded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ErrorCode::Unavailable | ErrorCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A REST error: a code, a message for people and, for an internal
/// failure, the request id of the log line. Built by the named
/// constructors or from an `AppError`; answered by [`RestError::response`].
#[derive(Clone, Debug)]
pub(crate) struct RestError {
    code: ErrorCode,
    message: String,
    request_id: Option<String>,
}

impl RestError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RestError { code, message: message.into(), request_id: None }
    }

    /// 400 `BAD_REQUEST`.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 401 `UNAUTHENTICATED`.
    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// 404 `NOT_FOUND`.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// 405 `METHOD_NOT_ALLOWED`.
    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MethodNotAllowed, message)
    }

    /// 408 `REQUEST_TIMEOUT`.
    pub(crate) fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RequestTimeout, message)
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    pub(crate) fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PayloadTooLarge, message)
    }

    /// 415 `UNSUPPORTED_MEDIA_TYPE`.
    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedMediaType, message)
    }

    /// 429 `RATE_LIMITED`.
    pub(crate) fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RateLimited, message)
    }

    /// 503 `UNAVAILABLE`.
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// The answer: the status of its code, `{"error": {...}}`,
    /// `X-Request-Id` for an internal failure, and `Retry-After: 1` when
    /// Latchkey cannot answer now (a retry soon is the remedy).
    pub(crate) fn response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        if let Some(id) = &self.request_id {
            response.insert_header((X_REQUEST_ID, id.as_str()));
        }
        if self.code == ErrorCode::Unavailable {
            response.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        let error = ErrorDetail { code: self.code.as_str(), message: self.message, request_id: self.request_id };
        response.json(ErrorBody { error })
    }
}

/// The one mapping from [`AppError`] to a REST error.
impl From<AppError> for RestError {
    fn from(e: AppError) -> Self {
        let code = match e {
            AppError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            AppError::Forbidden(_) => ErrorCode::Forbidden,
            AppError::BadUserInput(_) => ErrorCode::BadUserInput,
            AppError::RateLimitExceeded { .. } => ErrorCode::RateLimitExceeded,
            AppError::UsageExceeded(_) => ErrorCode::UsageExceeded,
            AppError::Unavailable { .. } => ErrorCode::Unavailable,
            AppError::Internal { .. } => ErrorCode::Internal,
        };
        let request_id = e.request_id().map(|id| id.as_str().to_owned());
        RestError { code, message: e.to_string(), request_id }
    }
}

/// The REST answer for an [`AppError`].
pub(crate) fn rest_error(e: AppError) -> HttpResponse {
    RestError::from(e).response()
}

/// The header naming the id of an internal failure.
const X_REQUEST_ID: &str = "x-request-id";

/// Every REST error: `{"error": {"code", "message", "requestId"?}}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorDetail {
    /// Stable: `BAD_REQUEST`, `UNAUTHENTICATED`, `RATE_LIMITED`, `INTERNAL`, …
    #[schema(value_type = String, example = "BAD_REQUEST")]
    code: &'static str,
    /// For people; may change.
    message: String,
    /// Names an internal failure in the server's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

/// The client's `User-Agent`, cut to what a key's last use can keep (so a
/// 20 KB header costs no more than a short one); the verifier cleans it
/// when it records a use, at most once a second per key.
pub fn user_agent(req: &HttpRequest) -> Option<String> {
    req.headers().get(actix_web::http::header::USER_AGENT).map(|v| user_agent_head(v.as_bytes()))
}

/// The start of a user agent as text: the bytes the kept characters can
/// come from, invalid UTF-8 replaced.
pub fn user_agent_head(raw: &[u8]) -> String {
    let head = &raw[..raw.len().min(4 * latchkey_domain::usage::MAX_USER_AGENT_CHARS)];
    String::from_utf8_lossy(head).into_owned()
}

/// The client's address: the peer, or when the peer is a trusted proxy
/// (`LATCHKEY_TRUSTED_PROXIES`), the first untrusted hop of
/// `X-Forwarded-For`, read from the right. An untrusted peer cannot spoof it;
/// an unreadable hop stops the walk at the last trusted address.
pub fn client_address(req: &HttpRequest, trusted: &[Network]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.iter().any(|n| n.contains(peer)) {
        return Some(peer);
    }
    first_untrusted_hop(req, Some(peer), trusted)
}

/// Walks `X-Forwarded-For` from the right, past `nearest` (a trusted hop
/// already passed, if any), to the first hop that is not a trusted proxy.
/// A hop that is not an address (`unknown`, junk, a line that is not text)
/// means the client is not known: `None`, never a proxy's address, so an
/// address-restricted key is refused rather than judged by the proxy.
pub(crate) fn first_untrusted_hop(
    req: &HttpRequest,
    mut nearest: Option<IpAddr>,
    trusted: &[Network],
) -> Option<IpAddr> {
    let mut lines = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        lines.push(value.to_str().ok()?);
    }
    for hop in lines.iter().rev().flat_map(|h| h.rsplit(',')) {
        let ip = forwarded_hop(hop)?;
        if !trusted.iter().any(|n| n.contains(ip)) {
            return Some(ip);
        }
        nearest = Some(ip);
    }
    nearest
}

/// One `X-Forwarded-For` hop as proxies write it (and RFC 7239 node names):
/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:4711`; anything else is no address.
pub(crate) fn forwarded_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok());
        return port_ok.then(|| address.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)).flatten();
    }
    let (address, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Most permissions one verification may ask for.
pub(crate) const MAX_ASKED_PERMISSIONS: usize = 64;

/// A cloud named by a gateway: `EMPLOYEE` or `CUSTOMER`, in any case.
pub(crate) fn parse_cloud(raw: &str) -> Result<Cloud, String> {
    Cloud::ALL
        .iter()
        .copied()
        .find(|c| c.as_str().eq_ignore_ascii_case(raw))
        .ok_or_else(|| "The cloud must be EMPLOYEE or CUSTOMER.".to_owned())
}

/// A cloud, as the OpenAPI document names it (the server also takes any case).
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)] // only described
pub(crate) enum CloudName {
    EMPLOYEE,
    CUSTOMER,
}
/// The schema of a refusal's `code`: every code the verifier gives.
pub(crate) fn refusal_code() -> impl Into<RefOr<Schema>> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(latchkey_app::verify::REFUSAL_CODES.iter().copied().chain(["MISSING_KEY"])))
        .description(Some("Why the key was refused (`MISSING_KEY`: forward auth only, no key sent)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_an_app_error_keeps_its_code() {
        let mut codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        for e in
            [AppError::Unauthenticated("x".into()), AppError::Forbidden("x".into()), AppError::BadUserInput("x".into())]
        {
            assert_eq!(RestError::from(e.clone()).code.as_str(), e.code());
        }
        let internal = RestError::from(AppError::internal(&"boom"));
        assert_eq!((internal.code.as_str(), internal.code.status()), ("INTERNAL", StatusCode::SERVICE_UNAVAILABLE));
        assert!(internal.request_id.is_some() && !internal.message.contains("boom"));
        let unavailable = RestError::from(AppError::unavailable(&"connection reset by 10.0.0.5"));
        assert_eq!(unavailable.code.as_str(), "UNAVAILABLE");
        assert!(unavailable.request_id.is_some() && !unavailable.message.contains("10.0.0.5"));
        let response = unavailable.response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    }
}
