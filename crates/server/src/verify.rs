//! Verification for gateways (`POST /v1/keys/verify`) and leak reports
//! from anyone (`POST /v1/keys/report-leak`).

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use latchkey_app::verify::{Allowance, LimitReading, VerifiedKey};
use latchkey_app::{Refusal, RequestContext, VerifyOutcome};
use latchkey_domain::limits::Cost;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::answers::{CloudName, ErrorBody, MAX_ASKED_PERMISSIONS, RestError, client_address, parse_cloud, rest_error};
use crate::context::ServerContext;

/// A verification: the key, and what the request it came with needs.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest<'a> {
    /// The presented key (an `lk_` key, or an imported one).
    #[serde(borrow)]
    #[schema(value_type = String, example = "lk_...")]
    key: std::borrow::Cow<'a, str>,
    /// The cloud the request is for: `EMPLOYEE` or `CUSTOMER` (any case).
    #[schema(value_type = Option<CloudName>, example = "CUSTOMER")]
    cloud: Option<String>,
    /// Permission names the request needs (at most 64).
    #[serde(default)]
    #[schema(example = json!(["users:read"]))]
    permissions: Vec<String>,
    /// The end client's address, as the gateway saw it.
    #[schema(schema_with = ip_address, required = false, example = "203.0.113.7")]
    ip: Option<String>,
    /// The end client's `User-Agent`, kept (its first 200 characters) as the
    /// key's last use; without it, this request's own `User-Agent` is.
    #[serde(rename = "userAgent")]
    #[schema(example = "acme-sync/2.1")]
    user_agent: Option<String>,
    /// What the request spends of the key's rate limits and credits: an
    /// integer from 0 (check without spending) to 1,000; 1 when omitted.
    #[schema(minimum = 0, maximum = 1000, example = 1)]
    cost: Option<i64>,
}

/// An IPv4 or IPv6 address, for the OpenAPI document.
pub(crate) fn ip_address() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let address =
        |format| ObjectBuilder::new().schema_type(Type::String).format(Some(SchemaFormat::KnownFormat(format)));
    OneOfBuilder::new()
        .item(address(KnownFormat::Ipv4))
        .item(address(KnownFormat::Ipv6))
        .description(Some("The end client's address, as the gateway saw it."))
        .build()
        .into()
}

impl VerifyRequest<'_> {
    /// The request context, or what is wrong with it.
    fn context(&self) -> Result<RequestContext, String> {
        let cloud = self.cloud.as_deref().map(parse_cloud).transpose()?;
        if self.permissions.len() > MAX_ASKED_PERMISSIONS {
            return Err(format!("`permissions` may name at most {MAX_ASKED_PERMISSIONS} permissions."));
        }
        let ip = match self.ip.as_deref() {
            None => None,
            Some(raw) => {
                Some(raw.trim().parse::<IpAddr>().map_err(|_| "`ip` must be an IPv4 or IPv6 address.".to_owned())?)
            }
        };
        let mut context = RequestContext::needing(cloud, self.permissions.iter().map(String::as_str), ip);
        if let Some(cost) = self.cost {
            context.cost = Cost::new(cost).ok_or_else(|| "`cost` must be an integer from 0 to 1000.".to_owned())?;
        }
        Ok(context)
    }
}

/// The answer for a valid key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Verified {
    /// Always true.
    valid: bool,
    #[schema(value_type = uuid::Uuid)]
    key_id: String,
    #[schema(value_type = uuid::Uuid)]
    tenant_id: String,
    #[schema(value_type = uuid::Uuid)]
    owner_id: String,
    /// The clouds it works in (`EMPLOYEE`, `CUSTOMER`).
    clouds: Vec<String>,
    /// What the key may do; null when unrestricted.
    permissions: Option<Vec<&'static str>>,
    /// The networks it may be used from (addresses and CIDRs); absent for
    /// any address. With `clouds` and `permissions`, what a client caching
    /// this answer needs to decide other requests as Latchkey would.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(["203.0.113.0/24"]))]
    allowed_ips: Option<Vec<String>>,
    /// When this secret stops working (the key's expiry, or the end of a
    /// rotation's overlap for its previous secret); absent for never. A
    /// cache must not answer for it after then.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    valid_until: Option<chrono::DateTime<chrono::Utc>>,
    /// For a key with credits: what is left after this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    credits: Option<CreditsAnswer>,
    /// For a key with rate limits (its own, then its owner's): what is left
    /// of each after this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    limits: Option<Vec<LimitAnswer>>,
}

/// A key's credits after a request.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreditsAnswer {
    /// Credits left.
    remaining: u64,
}

/// A rate limit's state after a request.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LimitAnswer {
    /// The limit's name.
    name: String,
    /// Units per window.
    limit: u64,
    /// What is left of the window (0 when refused).
    remaining: u64,
    /// When the window ends and the limit is whole again.
    #[schema(value_type = String, format = DateTime)]
    reset_at: chrono::DateTime<chrono::Utc>,
}

impl From<&LimitReading> for LimitAnswer {
    fn from(r: &LimitReading) -> Self {
        LimitAnswer { name: r.name.to_string(), limit: r.limit, remaining: r.remaining, reset_at: r.resets_at }
    }
}

/// The answer for a key that does not work, or may not serve the request.
#[derive(Serialize, ToSchema)]
pub(crate) struct Refused<'a> {
    /// Always false.
    valid: bool,
    #[schema(schema_with = crate::answers::refusal_code)]
    code: &'static str,
    /// For `INSUFFICIENT_PERMISSIONS`: the permissions asked for and not granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    missing: Option<&'a [String]>,
    /// For `RATE_LIMIT_EXCEEDED`: the limit that refused (`remaining` 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<LimitAnswer>,
    /// For `USAGE_EXCEEDED`: the credits left (fewer than the cost).
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<u64>,
}

impl Refused<'_> {
    fn code(code: &'static str) -> Self {
        Refused { valid: false, code, missing: None, limit: None, remaining: None }
    }
}

/// What `/v1/keys/verify` answers with 200.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(crate) enum VerifyAnswer<'a> {
    Verified(Verified),
    #[schema(value_type = Refused)]
    Refused(Refused<'a>),
}

/// The body answering a valid key: rendered once per cached verification
/// and reused for every hit.
fn verified_body(key: &VerifiedKey) -> String {
    key.rendered
        .get_or_init(|| {
            let body = Verified {
                valid: true,
                key_id: key.key_id.to_string(),
                tenant_id: key.tenant_id.to_string(),
                owner_id: key.owner_id.to_string(),
                clouds: latchkey_domain::policy::clouds_of_api_keys()
                    .iter()
                    .filter(|c| key.restrictions.clouds.contains(c))
                    .map(|c| c.as_str().to_ascii_uppercase())
                    .collect(),
                permissions: key
                    .restrictions
                    .permissions
                    .map(|_| key.restrictions.effective_permissions(key.owner_may).names()),
                allowed_ips: (!key.restrictions.allowed_networks.is_empty())
                    .then(|| key.restrictions.allowed_networks.iter().map(ToString::to_string).collect()),
                valid_until: key.valid_until,
                credits: None,
                limits: None,
            };
            serde_json::to_string(&body).unwrap_or_default()
        })
        .clone()
}

/// The body answering a valid key with what its limits and credits have
/// left: the cached body, extended.
fn allowed_body(key: &VerifiedKey, allowance: &Allowance) -> String {
    let mut body = verified_body(key);
    if allowance.credits.is_none() && allowance.limits.is_empty() {
        return body;
    }
    body.pop(); // the closing brace
    if let Some(remaining) = allowance.credits {
        body.push_str(",\"credits\":");
        body.push_str(&serde_json::to_string(&CreditsAnswer { remaining }).unwrap_or_default());
    }
    if !allowance.limits.is_empty() {
        let limits: Vec<LimitAnswer> = allowance.limits.iter().map(LimitAnswer::from).collect();
        body.push_str(",\"limits\":");
        body.push_str(&serde_json::to_string(&limits).unwrap_or_default());
    }
    body.push('}');
    body
}

/// Verifies a key for a gateway or service, with what the request needs.
/// A refusal is a 200 answer with `valid: false` and its code.
#[utoipa::path(
    operation_id = "verify_key",
    post, path = "/v1/keys/verify", tag = "verification", request_body = VerifyRequest,
    responses(
        (status = 200, description = "The verdict", body = VerifyAnswer),
        (status = 400, description = "The body is not a verification", body = ErrorBody),
        (status = 503, description = "Latchkey cannot answer now", body = ErrorBody),
    )
)]
pub(crate) async fn post_verify(ctx: web::Data<ServerContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    // Only a JSON object: serde would also accept `["lk_..."]` for a struct.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let request: VerifyRequest<'_> = match serde_json::from_slice(&body) {
        Ok(r) if is_object => r,
        _ => {
            return RestError::bad_request(
                "The body must be JSON of the form {\"key\": \"lk_...\"}, optionally with \"cloud\", \
                 \"permissions\", \"ip\", \"userAgent\" and \"cost\" (an integer from 0 to 1000).",
            )
            .response();
        }
    };
    let mut context = match request.context() {
        Ok(c) => c,
        Err(message) => return RestError::bad_request(message.clone()).response(),
    };
    context.user_agent = match request.user_agent.as_deref() {
        Some(told) => Some(crate::answers::user_agent_head(told.as_bytes())),
        None => crate::answers::user_agent(&req),
    };
    // The failure limit counts the caller (the gateway), not the address it reports.
    let client = req.peer_addr().map(|a| a.ip());
    let body = match ctx.app.verify_key(&request.key, client, &context).await {
        Ok(VerifyOutcome::Valid(key, allowance)) => allowed_body(&key, &allowance),
        Ok(VerifyOutcome::NotAllowed(refusal)) => {
            let missing = match &refusal {
                Refusal::InsufficientPermissions { missing } => Some(missing.as_slice()),
                _ => None,
            };
            serde_json::to_string(&Refused { missing, ..Refused::code(refusal.code()) }).unwrap_or_default()
        }
        Ok(refused @ (VerifyOutcome::RateLimitExceeded(_) | VerifyOutcome::UsageExceeded { .. })) => {
            let base = Refused::code(refused.code().unwrap_or_default());
            let answer = match &refused {
                VerifyOutcome::RateLimitExceeded(reading) => {
                    Refused { limit: Some(LimitAnswer { remaining: 0, ..LimitAnswer::from(reading) }), ..base }
                }
                VerifyOutcome::UsageExceeded { remaining, .. } => Refused { remaining: Some(*remaining), ..base },
                _ => base,
            };
            serde_json::to_string(&answer).unwrap_or_default()
        }
        Ok(refused) => {
            let code = refused.code().unwrap_or("INVALID");
            serde_json::to_string(&Refused::code(code)).unwrap_or_default()
        }
        Err(e) => return rest_error(e),
    };
    HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// The permission catalogue: every name a verification may ask for.
#[derive(Serialize, ToSchema)]
pub(crate) struct PermissionCatalogue {
    /// In catalogue order (the order of `missing` in a refusal).
    permissions: Vec<PermissionEntry>,
}

/// One permission of the catalogue.
#[derive(Serialize, ToSchema)]
pub(crate) struct PermissionEntry {
    #[schema(example = "users:read")]
    name: &'static str,
    description: &'static str,
    /// The one cloud it applies in; null for both.
    #[schema(value_type = Option<CloudName>)]
    cloud: Option<String>,
}

/// Every permission a key may hold and a verification may ask for, in
/// catalogue order: what a client deciding cached verifications itself
/// needs (a permission of one cloud is never granted in the other).
#[utoipa::path(
    operation_id = "permission_catalogue",
    get, path = "/v1/permissions", tag = "verification",
    responses((status = 200, description = "The catalogue", body = PermissionCatalogue))
)]
pub(crate) async fn permission_catalogue() -> HttpResponse {
    let permissions = latchkey_domain::restrictions::PERMISSIONS
        .iter()
        .map(|p| PermissionEntry {
            name: p.name,
            description: p.description,
            cloud: p.cloud.map(|c| c.as_str().to_ascii_uppercase()),
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(PermissionCatalogue { permissions })
}

/// A report that a key was found exposed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LeakReportRequest {
    /// The key as found.
    key: String,
    /// Where it was found (at most 2048 characters).
    url: Option<String>,
}

/// A leak report was taken.
#[derive(Serialize, ToSchema)]
pub(crate) struct LeakReceived {
    /// Always true, whatever the key.
    received: bool,
}

/// Longest URL a leak report may carry.
const MAX_LEAK_URL: usize = 2048;

/// `POST /v1/keys/report-leak`: anyone who finds a key may report it. The
/// answer is 202 whatever the key (no oracle of validity); the report is
/// handled in the background and acts only on real keys.
#[utoipa::path(
    post, path = "/v1/keys/report-leak", tag = "leaks", request_body = LeakReportRequest,
    responses(
        (status = 202, description = "Taken; handled in the background, whatever the key", body = LeakReceived),
        (status = 400, description = "The body is not a report", body = ErrorBody),
        (status = 429, description = "Too many reports from this address",
         headers(("Retry-After" = u32, description = "Seconds")), body = ErrorBody),
    )
)]
pub(crate) async fn report_leak(ctx: web::Data<ServerContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let report = match serde_json::from_slice::<LeakReportRequest>(&body) {
        Ok(r) if is_object && r.url.as_ref().is_none_or(|u| u.len() <= MAX_LEAK_URL) => r,
        _ => {
            return RestError::bad_request(
                "The body must be JSON of the form {\"key\": \"...\", \"url\": \"where it was found\"} \
                 (the URL at most 2048 characters).",
            )
            .response();
        }
    };
    let client = client_address(&req, &ctx.trusted_proxies);
    if !ctx.app.accept_leak_report(report.key, report.url, client) {
        let mut response = RestError::rate_limited("Too many reports; retry later.").response();
        response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        return response;
    }
    HttpResponse::Accepted().insert_header((header::CACHE_CONTROL, "no-store")).json(LeakReceived { received: true })
}
