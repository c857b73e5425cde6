//! Forward authentication for gateways: `/v1/auth`, for nginx's
//! `auth_request`, Traefik's `forwardAuth` and Envoy's HTTP `ext_authz`.
//!
//! The gateway sends the client's request headers (no body) and learns from
//! the status alone whether to let the request through:
//! * 200: a working key allowed for this request; `X-Latchkey-Tenant`,
//!   `-Key`, `-Owner` and `-Permissions` are for the gateway to pass upstream
//!   (it must set them itself, overwriting whatever the client sent);
//! * 401 with `WWW-Authenticate: Bearer error="invalid_token"`: no key, or
//!   one that is malformed, unknown, expired, disabled, compromised or
//!   suspended (its owner was deactivated);
//! * 403: a working key that may not serve this request (cloud, address,
//!   permissions);
//! * 429 with `Retry-After`: this client failed too often (`RATE_LIMITED`),
//!   or the key is over a rate limit (`RATE_LIMIT_EXCEEDED`) or out of
//!   credits (`USAGE_EXCEEDED`);
//! * 400: the gateway's own headers are wrong (a configuration error);
//! * 503: Latchkey cannot answer.
//!
//! The request's cost is `X-Latchkey-Cost` (0 to 1000; 1 when absent). For
//! a key with rate limits, a 200 and a 429 carry the IETF `RateLimit-Policy`
//! and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) for the
//! tightest limit, e.g. `RateLimit-Policy: "burst";q=100;w=60` and
//! `RateLimit: "burst";r=42;t=17`.
//!
//! Every refusal also carries `X-Latchkey-Code` and the JSON body of
//! `/v1/keys/verify`. It is the same verification, cache included. The
//! client's method and path (`X-Forwarded-Method`, `X-Forwarded-Uri` or
//! `X-Original-URI`, never the query string) are logged at debug level with
//! the answer's code.

use std::net::IpAddr;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use chrono::{DateTime, Utc};
use latchkey_app::verify::{Allowance, LimitReading, VerifiedKey};
use latchkey_app::{Refusal, RequestContext, VerifyOutcome};
use latchkey_domain::limits::{Cost, seconds_until};
use latchkey_domain::restrictions::Network;

use crate::answers::{MAX_ASKED_PERMISSIONS, RestError, first_untrusted_hop, parse_cloud, rest_error};
use crate::context::ServerContext;

/// The cloud the gateway's route is for (`EMPLOYEE` or `CUSTOMER`).
pub const CLOUD_HEADER: &str = "x-latchkey-cloud";
/// The permissions the gateway's route needs, comma- or space-separated.
pub const PERMISSIONS_HEADER: &str = "x-latchkey-permissions";
/// What the request spends of the key's limits and credits (0 to 1000).
pub const COST_HEADER: &str = "x-latchkey-cost";
/// Seconds to wait after `USAGE_EXCEEDED` for a key whose credits are never
/// refilled (an admin has to add some).
const NO_REFILL_RETRY_SECONDS: i64 = 3600;
/// The header with the key, for clients that cannot send `Authorization`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// What a refusal says in `WWW-Authenticate` (RFC 6750).
const INVALID_TOKEN: &str = r#"Bearer realm="latchkey", error="invalid_token""#;

/// Forward authentication: answers a gateway's subrequest with a status (any
/// method is accepted; no body is read). The gateway passes the
/// `X-Latchkey-*` headers of a 200 to its upstream, setting them itself.
#[utoipa::path(
    get, path = "/v1/auth", tag = "verification",
    security(("bearer" = []), ("apiKeyHeader" = [])),
    params(
        ("X-Forwarded-For" = Option<String>, Header, nullable = false,
         description = "The client's address as the gateway saw it (its last hop counts; further left only past LATCHKEY_TRUSTED_PROXIES)"),
        ("X-Latchkey-Cloud" = Option<crate::answers::CloudName>, Header, nullable = false, description = "The cloud the route is for: EMPLOYEE or CUSTOMER"),
        ("X-Latchkey-Permissions" = Option<String>, Header, nullable = false, description = "Permissions the route needs, comma- or space-separated (at most 64)"),
        ("X-Latchkey-Cost" = Option<u32>, Header, nullable = false, description = "What the request spends of the key's rate limits and credits: 0 to 1000 (default 1)"),
        ("X-Forwarded-Method" = Option<String>, Header, nullable = false, description = "The client's method (logged at debug level)"),
        ("X-Original-URI" = Option<String>, Header, nullable = false, description = "The client's URI (logged at debug level without its query string; X-Forwarded-Uri is also read)"),
    ),
    responses(
        (status = 200, description = "A working key allowed for this request",
         headers(
             ("X-Latchkey-Tenant" = String, description = "The key's tenant id"),
             ("X-Latchkey-Key" = String, description = "The key's id"),
             ("X-Latchkey-Owner" = String, description = "The key owner's user id"),
             ("X-Latchkey-Permissions" = String, description = "What the key may do, comma-separated"),
             ("RateLimit-Policy" = String, description = "For a key with rate limits: the tightest, e.g. \"burst\";q=100;w=60"),
             ("RateLimit" = String, description = "For a key with rate limits: what is left of it, e.g. \"burst\";r=42;t=17"),
         )),
        (status = 401, description = "No key, or one that is malformed, unknown, expired, disabled, compromised or suspended",
         headers(
             ("WWW-Authenticate" = String, description = "Bearer realm=\"latchkey\", error=\"invalid_token\""),
             ("X-Latchkey-Code" = String, description = "MISSING_KEY or the refusal code"),
         ),
         body = crate::verify::Refused),
        (status = 403, description = "A working key that may not serve this request (cloud, address, permissions)",
         headers(("X-Latchkey-Code" = String, description = "CLOUD_NOT_ALLOWED, IP_NOT_ALLOWED or INSUFFICIENT_PERMISSIONS")),
         body = crate::verify::Refused),
        (status = 429, description = "This client failed too often, or the key is over a rate limit or out of credits",
         headers(
             ("Retry-After" = u32, description = "Seconds"),
             ("X-Latchkey-Code" = String, description = "RATE_LIMITED, RATE_LIMIT_EXCEEDED or USAGE_EXCEEDED"),
             ("RateLimit-Policy" = String, description = "For RATE_LIMIT_EXCEEDED: the limit, e.g. \"burst\";q=100;w=60"),
             ("RateLimit" = String, description = "For RATE_LIMIT_EXCEEDED: what is left, e.g. \"burst\";r=0;t=17"),
         ),
         body = crate::verify::Refused),
        (status = 400, description = "The gateway's own headers are wrong (a configuration error)", body = crate::answers::ErrorBody),
        (status = 503, description = "Latchkey cannot answer now", body = crate::answers::ErrorBody),
    )
)]
pub async fn forward_auth(ctx: web::Data<ServerContext>, req: HttpRequest) -> HttpResponse {
    let context = match request_context(&req, &ctx.trusted_proxies) {
        Ok(c) => c,
        Err(message) => return RestError::bad_request(message).response(),
    };
    let Some(presented) = presented_key(&req) else {
        return refusal(StatusCode::UNAUTHORIZED, "MISSING_KEY")
            .insert_header((header::WWW_AUTHENTICATE, INVALID_TOKEN))
            .body(r#"{"valid":false,"code":"MISSING_KEY"}"#);
    };
    // Failures count against the end client when the gateway says who it is.
    let client = context.ip.or_else(|| req.peer_addr().map(|a| a.ip()));
    let outcome = match ctx.app.verify_key(presented, client, &context).await {
        Ok(o) => o,
        Err(e) => return rest_error(e),
    };
    if tracing::enabled!(tracing::Level::DEBUG) {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let uri = [header("x-forwarded-uri"), header("x-original-uri")].into_iter().find(|u| !u.is_empty());
        let path = uri.unwrap_or("").split(['?', '#']).next().unwrap_or("");
        let code = outcome.code().unwrap_or("VALID");
        tracing::debug!(forwarded_method = header("x-forwarded-method"), forwarded_path = path, code, "forward auth");
    }
    let now = ctx.app.now();
    let code = match &outcome {
        VerifyOutcome::Valid(key, allowance) => return allowed(key, allowance, now),
        refused => refused.code().unwrap_or("INVALID"),
    };
    let body = format!(r#"{{"valid":false,"code":"{code}"}}"#);
    match outcome {
        VerifyOutcome::NotAllowed(Refusal::InsufficientPermissions { missing }) => {
            let body = serde_json::json!({ "valid": false, "code": code, "missing": missing });
            refusal(StatusCode::FORBIDDEN, code)
                .insert_header((header::WWW_AUTHENTICATE, r#"Bearer realm="latchkey", error="insufficient_scope""#))
                .json(body)
        }
        VerifyOutcome::NotAllowed(_) => refusal(StatusCode::FORBIDDEN, code).body(body),
        VerifyOutcome::RateLimited => {
            let seconds = ctx.app.verifier().retry_after().as_secs().max(1);
            refusal(StatusCode::TOO_MANY_REQUESTS, code).insert_header((header::RETRY_AFTER, seconds)).body(body)
        }
        VerifyOutcome::RateLimitExceeded(reading) => {
            let mut response = refusal(StatusCode::TOO_MANY_REQUESTS, code);
            let reading = LimitReading { remaining: 0, ..reading };
            let seconds = rate_limit_headers(&mut response, &reading, now);
            let body = serde_json::json!({ "valid": false, "code": code, "limit": {
                "name": &*reading.name, "limit": reading.limit, "remaining": 0, "resetAt": reading.resets_at,
            }});
            response.insert_header((header::RETRY_AFTER, seconds)).json(body)
        }
        VerifyOutcome::UsageExceeded { remaining, refills_at } => {
            let seconds = refills_at.map_or(NO_REFILL_RETRY_SECONDS, |at| seconds_until(at, now));
            let body = serde_json::json!({ "valid": false, "code": code, "remaining": remaining });
            refusal(StatusCode::TOO_MANY_REQUESTS, code).insert_header((header::RETRY_AFTER, seconds)).json(body)
        }
        _ => {
            refusal(StatusCode::UNAUTHORIZED, code).insert_header((header::WWW_AUTHENTICATE, INVALID_TOKEN)).body(body)
        }
    }
}

/// The key: `Authorization: Bearer …`, else `X-Api-Key`.
fn presented_key(req: &HttpRequest) -> Option<&str> {
    let text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    text(header::AUTHORIZATION)
        .and_then(latchkey_app::auth::bearer_token)
        .or_else(|| text(header::HeaderName::from_static(API_KEY_HEADER)).map(str::trim))
        .filter(|k| !k.is_empty())
}

/// What the gateway says about the request: its cloud and permissions (set
/// per route), and the client's address (see [`forwarded_client`]).
fn request_context(req: &HttpRequest, trusted: &[Network]) -> Result<RequestContext, String> {
    // A gateway sets each of its headers once; two lines of one are a
    // client's addition the gateway did not strip, and which one counts
    // would be a guess.
    for name in req.headers().keys().filter(|n| n.as_str().starts_with("x-latchkey-")) {
        if req.headers().get_all(name).nth(1).is_some() {
            return Err(format!("The {name} header is given more than once; a gateway sets it once."));
        }
    }
    let text = |name: &str| -> Result<Option<&str>, String> {
        req.headers()
            .get(name)
            .map(|v| v.to_str().map_err(|_| format!("The {name} header is not valid text.")))
            .transpose()
    };
    let cloud = text(CLOUD_HEADER)?.map(|raw| parse_cloud(raw.trim())).transpose()?;
    let permissions: Vec<&str> = text(PERMISSIONS_HEADER)?
        .unwrap_or_default()
        .split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if permissions.len() > MAX_ASKED_PERMISSIONS {
        return Err(format!("{PERMISSIONS_HEADER} may name at most {MAX_ASKED_PERMISSIONS} permissions."));
    }
    let mut context = RequestContext::needing(cloud, permissions, forwarded_client(req, trusted));
    context.user_agent = crate::answers::user_agent(req);
    if let Some(raw) = text(COST_HEADER)? {
        context.cost = raw
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(Cost::new)
            .ok_or_else(|| format!("{COST_HEADER} must be an integer from 0 to 1000."))?;
    }
    Ok(context)
}

/// The end client's address: the last hop of `X-Forwarded-For` (the address
/// the gateway itself saw; clients can only prepend), and further left only
/// past proxies in `LATCHKEY_TRUSTED_PROXIES`. None when the gateway does not
/// say.
fn forwarded_client(req: &HttpRequest, trusted: &[Network]) -> Option<IpAddr> {
    first_untrusted_hop(req, None, trusted)
}

fn refusal(status: StatusCode, code: &str) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response
        .content_type(header::ContentType::json())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("x-latchkey-code", code.to_owned()));
    response
}

/// What a 200 tells the gateway, in the order [`allowed`] renders them.
const ALLOWED_HEADERS: [HeaderName; 4] = [
    HeaderName::from_static("x-latchkey-tenant"),
    HeaderName::from_static("x-latchkey-key"),
    HeaderName::from_static("x-latchkey-owner"),
    HeaderName::from_static("x-latchkey-permissions"),
];

/// Writes the IETF `RateLimit-Policy` and `RateLimit` headers of `limit`;
/// returns the seconds until its window resets.
fn rate_limit_headers(response: &mut HttpResponseBuilder, limit: &LimitReading, now: DateTime<Utc>) -> i64 {
    let seconds = seconds_until(limit.resets_at, now);
    // A name is [a-z0-9_-]: a valid sf-string as it is.
    let name = &*limit.name;
    response.insert_header(("ratelimit-policy", format!("\"{name}\";q={};w={}", limit.limit, limit.period_seconds)));
    response.insert_header(("ratelimit", format!("\"{name}\";r={};t={seconds}", limit.remaining)));
    seconds
}

/// The tightest of a key's limits: the least left, then the soonest reset.
fn tightest(limits: &[LimitReading]) -> Option<&LimitReading> {
    limits.iter().min_by_key(|l| (l.remaining, l.resets_at))
}

/// 200 with the headers the gateway passes upstream (rendered once per
/// cached verification), and the key's tightest rate limit.
fn allowed(key: &VerifiedKey, allowance: &Allowance, now: DateTime<Utc>) -> HttpResponse {
    let values = key.rendered_headers.get_or_init(|| {
        vec![
            key.tenant_id.to_string(),
            key.key_id.to_string(),
            key.owner_id.to_string(),
            key.restrictions.effective_permissions(key.owner_may).names().join(","),
        ]
    });
    let mut response = HttpResponse::Ok();
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
    for (name, value) in ALLOWED_HEADERS.iter().zip(values) {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.insert_header((name.clone(), value));
        }
    }
    if let Some(limit) = tightest(&allowance.limits) {
        rate_limit_headers(&mut response, limit, now);
    }
    response.finish()
}
