//! SCIM 2.0 service provider (RFC 7643/7644) at `/scim/v2`, for identity
//! providers: Users (create, get, filter and page, replace, patch, delete)
//! and the discovery resources. Authenticated with an API key allowed the
//! `scim` permission; the tenant is the key's (see `latchkey_app::scim`).
//! Every error is a SCIM error with its `status` and `scimType`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use latchkey_app::scim::ScimAdmin;
use latchkey_app::scim::{ScimMatch, ScimUser, ScimUserWrite, ScimWritten};
use latchkey_app::{AppError, Authentication};
use latchkey_domain::Role;
use serde_json::{Map, Value, json};

use crate::answers::client_address;
use crate::context::ServerContext;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_JSON: &str = "application/scim+json";
/// Longest filter accepted.
const MAX_FILTER: usize = 1000;
/// Most operations in one PATCH.
const MAX_OPERATIONS: usize = 100;
/// Largest page.
const MAX_COUNT: u64 = 200;

/// Registers `/scim/v2`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // Each resource answers the methods it has, and 405 with `Allow` and a
    // SCIM error for others; an unknown path is a SCIM 404 (RFC 7644 §3.12).
    let resource = |path: &str, allow: &'static str| {
        web::resource(path).default_service(web::to(move || async move { method_not_allowed(allow) }))
    };
    cfg.service(
        web::scope("/scim/v2")
            .service(resource("/ServiceProviderConfig", "GET").route(web::get().to(service_provider_config)))
            .service(resource("/ResourceTypes", "GET").route(web::get().to(resource_types)))
            .service(resource("/ResourceTypes/{id}", "GET").route(web::get().to(resource_type)))
            .service(resource("/Schemas", "GET").route(web::get().to(schemas)))
            .service(resource("/Schemas/{id}", "GET").route(web::get().to(schema)))
            .service(
                resource("/Users", "GET, POST").route(web::get().to(list_users)).route(web::post().to(create_user)),
            )
            .service(
                resource("/Users/{id}", "GET, PUT, PATCH, DELETE")
                    .route(web::get().to(get_user))
                    .route(web::put().to(replace_user))
                    .route(web::patch().to(patch_user))
                    .route(web::delete().to(delete_user)),
            )
            .default_service(web::to(|| async {
                ScimError::new(StatusCode::NOT_FOUND, None, "No such SCIM endpoint.").response()
            })),
    );
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response =
        ScimError::new(StatusCode::METHOD_NOT_ALLOWED, None, format!("This endpoint answers {allow} only.")).response();
    response.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

/// A SCIM error answer.
struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError { status, scim_type, detail: detail.into() }
    }

    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "No such user.")
    }

    fn response(&self) -> HttpResponse {
        let mut body =
            json!({ "schemas": [ERROR_SCHEMA], "status": self.status.as_u16().to_string(), "detail": self.detail });
        if let Some(t) = self.scim_type {
            body["scimType"] = t.into();
        }
        HttpResponse::build(self.status).content_type(SCIM_JSON).body(body.to_string())
    }
}

impl From<AppError> for ScimError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::Unauthenticated(m) => Self::new(StatusCode::UNAUTHORIZED, None, m),
            AppError::Forbidden(m) => Self::new(StatusCode::FORBIDDEN, None, m),
            AppError::BadUserInput(m) => Self::bad("invalidValue", m),
            AppError::RateLimitExceeded { .. } | AppError::UsageExceeded(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, None, e.to_string())
            }
            AppError::Unavailable { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, None, e.to_string()),
            AppError::Internal { .. } => {
                let id = e.request_id().map(|id| id.as_str().to_owned()).unwrap_or_default();
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    format!("Something failed on our side (request {id})."),
                )
            }
        }
    }
}

type ScimResult = Result<HttpResponse, ScimError>;

fn answer(result: ScimResult) -> HttpResponse {
    result.unwrap_or_else(|e| e.response())
}

fn scim_json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(SCIM_JSON)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body.to_string())
}

/// The caller, authenticated from its `Authorization` header.
async fn authentication(ctx: &ServerContext, req: &HttpRequest) -> Result<Authentication, ScimError> {
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.to_str().unwrap_or(""));
    let client = client_address(req, &ctx.trusted_proxies);
    let auth = ctx.app.authenticate_request(header, client, crate::answers::user_agent(req).as_deref()).await?;
    match auth {
        Authentication::Anonymous => {
            Err(ScimError::new(StatusCode::UNAUTHORIZED, None, "Send `Authorization: Bearer <API key>`."))
        }
        Authentication::Refused(reason) => Err(ScimError::new(StatusCode::UNAUTHORIZED, None, reason)),
        auth => Ok(auth),
    }
}

/// The JSON object of a request body (SCIM or plain JSON).
fn body_object(req: &HttpRequest, body: &[u8]) -> Result<Map<String, Value>, ScimError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media != SCIM_JSON && media != "application/json" {
        return Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("invalidSyntax"),
            "Send the body as application/scim+json (or application/json).",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ScimError::bad("invalidSyntax", "The body must be a JSON object.")),
        Err(_) => Err(ScimError::bad("invalidSyntax", "The body is not valid JSON (or is nested too deeply).")),
    }
}

fn location(req: &HttpRequest, id: &str) -> String {
    let info = req.connection_info();
    format!("{}://{}/scim/v2/Users/{id}", info.scheme(), info.host())
}

fn etag(version: i32) -> String {
    format!("W/\"{version}\"")
}

/// The user as SCIM shows it.
fn resource(req: &HttpRequest, u: &ScimUser) -> Value {
    let id = u.user.id.to_string();
    let mut name = Map::new();
    name.insert("formatted".into(), u.user.name.clone().into());
    if let Some(g) = &u.given_name {
        name.insert("givenName".into(), g.clone().into());
    }
    if let Some(f) = &u.family_name {
        name.insert("familyName".into(), f.clone().into());
    }
    let mut resource = json!({
        "schemas": [USER_SCHEMA],
        "id": id,
        "userName": u.user_name,
        "name": name,
        "displayName": u.user.name,
        "emails": [{ "value": u.user.email, "type": "work", "primary": true }],
        "active": u.user.active,
        "roles": [{ "value": u.user.role.as_str(), "primary": true }],
        "meta": {
            "resourceType": "User",
            "created": u.created_at.to_rfc3339(),
            "lastModified": u.updated_at.to_rfc3339(),
            "location": location(req, &id),
            "version": etag(u.version),
        },
    });
    if let Some(external) = &u.external_id {
        resource["externalId"] = external.clone().into();
    }
    resource
}

/// Which attributes a request asks for (RFC 7644 §3.9): `attributes` (only
/// these, besides `id` and `schemas`, which are always returned) or
/// `excludedAttributes` (all but these), each a comma-separated list of
/// names or `parent.sub` paths, optionally with the User schema's URN.
#[derive(Debug, Default)]
struct Projection {
    only: Vec<(String, Option<String>)>,
    excluded: Vec<(String, Option<String>)>,
}

impl Projection {
    fn of(req: &HttpRequest) -> Self {
        let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string());
        let Ok(query) = query else { return Projection::default() };
        let paths = |name: &str| -> Vec<(String, Option<String>)> {
            let Some((_, list)) = query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) else { return Vec::new() };
            list.split(',')
                .map(|p| p.trim())
                .map(|p| p.strip_prefix(USER_SCHEMA).and_then(|r| r.strip_prefix(':')).unwrap_or(p))
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('.') {
                    Some((parent, sub)) => (parent.to_ascii_lowercase(), Some(sub.to_ascii_lowercase())),
                    None => (p.to_ascii_lowercase(), None),
                })
                .collect()
        };
        Projection { only: paths("attributes"), excluded: paths("excludedAttributes") }
    }

    /// `resource` with only what was asked for.
    fn apply(&self, mut resource: Value) -> Value {
        const ALWAYS: [&str; 2] = ["id", "schemas"];
        let Value::Object(object) = &mut resource else { return resource };
        if !self.only.is_empty() {
            object.retain(|key, value| {
                let key = key.to_ascii_lowercase();
                if ALWAYS.contains(&key.as_str()) {
                    return true;
                }
                let subs: Vec<&str> =
                    self.only.iter().filter(|(p, _)| *p == key).filter_map(|(_, sub)| sub.as_deref()).collect();
                let whole = self.only.iter().any(|(p, sub)| *p == key && sub.is_none());
                if !whole && !subs.is_empty() {
                    keep_subs(value, |sub| subs.contains(&sub));
                }
                whole || !subs.is_empty()
            });
        }
        for (parent, sub) in &self.excluded {
            if ALWAYS.contains(&parent.as_str()) {
                continue;
            }
            match sub {
                None => object.retain(|key, _| !key.eq_ignore_ascii_case(parent)),
                Some(sub) => {
                    if let Some((_, value)) = object.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(parent)) {
                        keep_subs(value, |s| s != sub.as_str());
                    }
                }
            }
        }
        resource
    }
}

/// Keeps, in a complex attribute (or each element of a multi-valued one),
/// the sub-attributes whose lower-cased names pass `keep`.
fn keep_subs(value: &mut Value, keep: impl Fn(&str) -> bool) {
    let keep_in = |object: &mut Map<String, Value>| object.retain(|k, _| keep(&k.to_ascii_lowercase()));
    match value {
        Value::Object(object) => keep_in(object),
        Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).for_each(keep_in),
        _ => {}
    }
}

fn one(req: &HttpRequest, status: StatusCode, u: &ScimUser) -> HttpResponse {
    let mut response = scim_json(status, &Projection::of(req).apply(resource(req, u)));
    if let Ok(value) = header::HeaderValue::from_str(&etag(u.version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// A text attribute: trimmed, 1..=255 characters, no control characters.
fn text(value: &Value, what: &str) -> Result<Option<String>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            if s.chars().count() > 255 || s.chars().any(char::is_control) {
                return Err(ScimError::bad(
                    "invalidValue",
                    format!("{what} must be at most 255 characters, without control characters."),
                ));
            }
            Ok(Some(s.to_owned()))
        }
        _ => Err(ScimError::bad("invalidValue", format!("{what} must be a string."))),
    }
}

/// An attribute of `object`, its name compared without case.
fn attr<'a>(object: &'a Map<String, Value>, name: &str) -> &'a Value {
    object.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map_or(&Value::Null, |(_, v)| v)
}

/// `true`/`false`, also as Entra's strings `"True"`/`"False"`.
fn boolean(value: &Value) -> Result<Option<bool>, ScimError> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        _ => Err(ScimError::bad("invalidValue", "active must be true or false.")),
    }
}

fn parse_role(raw: &str) -> Result<Role, ScimError> {
    let normalized = raw.trim().to_ascii_lowercase().replace(['_', ' '], "-");
    Role::parse(&normalized).ok_or_else(|| {
        ScimError::bad(
            "invalidValue",
            format!("Unknown role {raw:?}: use internal-admin, academy-admin or integration-user."),
        )
    })
}

/// The role from `roles`: the primary one, or the only one; none is an
/// academy admin (never, silently, an internal admin).
fn role(roles: &Value) -> Result<Role, ScimError> {
    let entries = match roles {
        Value::Null => return Ok(Role::AcademyAdmin),
        Value::Array(entries) => entries,
        _ => return Err(ScimError::bad("invalidValue", "roles must be a list.")),
    };
    let value_of = |entry: &Value| -> Result<String, ScimError> {
        match entry {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => match attr(o, "value") {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ScimError::bad("invalidValue", "Each role needs a string value.")),
            },
            _ => Err(ScimError::bad("invalidValue", "Each role must be an object with a value.")),
        }
    };
    let primary: Vec<&Value> = entries
        .iter()
        .filter(|e| e.as_object().is_some_and(|o| boolean(attr(o, "primary")).ok().flatten() == Some(true)))
        .collect();
    match (primary.as_slice(), entries.as_slice()) {
        ([one], _) => parse_role(&value_of(one)?),
        ([], [one]) => parse_role(&value_of(one)?),
        ([], []) => Ok(Role::AcademyAdmin),
        _ => Err(ScimError::bad("invalidValue", "Give one role, or mark exactly one as primary.")),
    }
}

/// What a User resource says the user is.
fn write_from(object: &Map<String, Value>) -> Result<ScimUserWrite, ScimError> {
    if let Value::Array(schemas) = attr(object, "schemas")
        && !schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(USER_SCHEMA)))
    {
        return Err(ScimError::bad("invalidValue", format!("schemas must include {USER_SCHEMA}.")));
    }
    let user_name = text(attr(object, "userName"), "userName")?
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required."))?;
    let emails = match attr(object, "emails") {
        Value::Array(emails) => emails.clone(),
        Value::Null => Vec::new(),
        _ => return Err(ScimError::bad("invalidValue", "emails must be a list.")),
    };
    let email_of = |e: &Value| e.as_object().and_then(|o| attr(o, "value").as_str().map(str::to_owned));
    let primary =
        emails.iter().find(|e| e.as_object().is_some_and(|o| boolean(attr(o, "primary")).ok().flatten() == Some(true)));
    let work = emails.iter().find(|e| {
        e.as_object().is_some_and(|o| attr(o, "type").as_str().is_some_and(|t| t.eq_ignore_ascii_case("work")))
    });
    // Owner notices go to the primary email, else the work one, else the
    // first; without any, to the userName when it is an address.
    let email = primary.or(work).or(emails.first()).and_then(email_of).unwrap_or_else(|| user_name.clone());
    let email = email.trim().to_owned();
    if !latchkey_domain::names::looks_like_email(&email) {
        return Err(ScimError::bad(
            "invalidValue",
            "A user needs an email address (in emails, or a userName that is one): every user may own keys, \
             and notices about them are mailed to it.",
        ));
    }
    let name_object = attr(object, "name").as_object().cloned().unwrap_or_default();
    let given_name = text(attr(&name_object, "givenName"), "name.givenName")?;
    let family_name = text(attr(&name_object, "familyName"), "name.familyName")?;
    let joined = [given_name.clone(), family_name.clone()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let name = text(attr(object, "displayName"), "displayName")?
        .or(text(attr(&name_object, "formatted"), "name.formatted")?)
        .or((!joined.is_empty()).then_some(joined))
        .unwrap_or_else(|| user_name.clone());
    Ok(ScimUserWrite {
        user_name: user_name.clone(),
        email,
        name,
        role: role(attr(object, "roles"))?,
        active: boolean(attr(object, "active"))?.unwrap_or(true),
        external_id: text(attr(object, "externalId"), "externalId")?,
        given_name,
        family_name,
    })
}

/// `If-Match`: the version it names (`W/"3"`, `"3"`), none for absent or `*`.
fn if_match(req: &HttpRequest) -> Result<Option<i32>, ScimError> {
    let Some(raw) = req.headers().get(header::IF_MATCH).map(|v| v.to_str().unwrap_or("")) else { return Ok(None) };
    let raw = raw.trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/").trim_matches('"').parse::<i32>().map(Some).map_err(|_| {
        ScimError::new(StatusCode::PRECONDITION_FAILED, None, "If-Match does not name a version of this user.")
    })
}

fn written(req: &HttpRequest, status: StatusCode, written: ScimWritten) -> ScimResult {
    match written {
        ScimWritten::Done(u) => Ok(one(req, status, &u)),
        ScimWritten::NotFound => Err(ScimError::not_found()),
        ScimWritten::Conflict => Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            "Another user of this tenant has this userName.",
        )),
        ScimWritten::VersionMismatch => Err(ScimError::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "The user changed since that version (If-Match).",
        )),
    }
}

/// Runs `handle` with the SCIM use cases of the caller.
async fn with_scim<F>(ctx: &ServerContext, req: &HttpRequest, handle: F) -> HttpResponse
where
    F: AsyncFnOnce(ScimAdmin<'_>) -> ScimResult,
{
    let auth = match authentication(ctx, req).await {
        Ok(a) => a,
        Err(e) => return e.response(),
    };
    match ctx.app.scim(&auth) {
        Ok(scim) => answer(handle(scim).await),
        Err(e) => ScimError::from(e).response(),
    }
}

async fn get_user(ctx: web::Data<ServerContext>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    with_scim(&ctx, &req, async |scim| match scim.get(&id).await? {
        Some(u) => Ok(one(&req, StatusCode::OK, &u)),
        None => Err(ScimError::not_found()),
    })
    .await
}

/// Parses a filter: `attr eq "value"` terms joined by `and`, on `userName`,
/// `externalId` and `emails.value` (also `emails[type eq "work"].value`).
fn parse_filter(filter: &str) -> Result<Vec<ScimMatch>, ScimError> {
    let invalid = |detail: &str| ScimError::bad("invalidFilter", detail.to_owned());
    if filter.len() > MAX_FILTER {
        return Err(invalid("The filter is too long."));
    }
    let mut terms = Vec::new();
    let mut rest = filter.trim();
    loop {
        // An attribute ends at white space, except inside a value filter
        // (`emails[type eq "work"].value`).
        let split = match (rest.find('['), rest.find(char::is_whitespace)) {
            (Some(open), Some(space)) if open < space => rest[open..]
                .find(']')
                .and_then(|close| rest[open + close..].find(char::is_whitespace).map(|end| open + close + end)),
            (_, space) => space,
        };
        let (attribute, after) =
            split.map(|at| (&rest[..at], &rest[at..])).ok_or_else(|| invalid("Expected `attribute eq \"value\"`."))?;
        let after = after.trim_start();
        let (op, after) =
            after.split_once(char::is_whitespace).ok_or_else(|| invalid("Expected `attribute eq \"value\"`."))?;
        if !op.eq_ignore_ascii_case("eq") {
            return Err(invalid("Only `eq` is supported (joined with `and`)."));
        }
        let after = after.trim_start();
        if !after.starts_with('"') {
            return Err(invalid("The value must be a quoted string."));
        }
        // The end of the JSON string literal: the first unescaped quote.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices().skip(1) {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.ok_or_else(|| invalid("The value's quote is not closed."))?;
        let value: String =
            serde_json::from_str(&after[..=end]).map_err(|_| invalid("The value is not a valid string."))?;
        let attribute = attribute.to_ascii_lowercase().split_whitespace().collect::<Vec<_>>().join(" ");
        terms.push(match attribute.as_str() {
            "username" => ScimMatch::UserName(value),
            "externalid" => ScimMatch::ExternalId(value),
            "emails" | "emails.value" | "emails[type eq \"work\"].value" | "emails[primary eq true].value" => {
                ScimMatch::Email(value)
            }
            _ => return Err(invalid("Filter on userName, externalId or emails.value.")),
        });
        rest = after[end + 1..].trim_start();
        if rest.is_empty() {
            return Ok(terms);
        }
        let (and, next) =
            rest.split_once(char::is_whitespace).ok_or_else(|| invalid("Terms are joined with `and`."))?;
        if !and.eq_ignore_ascii_case("and") {
            return Err(invalid("Terms are joined with `and`."));
        }
        rest = next.trim_start();
    }
}

async fn list_users(ctx: web::Data<ServerContext>, req: HttpRequest) -> HttpResponse {
    let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string());
    with_scim(&ctx, &req, async |scim| {
        let query = query.map_err(|_| ScimError::bad("invalidValue", "The query string is not valid."))?;
        let get = |name: &str| query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
        let terms = get("filter").map(parse_filter).transpose()?.unwrap_or_default();
        let number = |name: &str, default: i64| -> Result<i64, ScimError> {
            get(name).map_or(Ok(default), |v| {
                v.trim().parse::<i64>().map_err(|_| ScimError::bad("invalidValue", format!("{name} must be a number.")))
            })
        };
        let start = number("startIndex", 1)?.max(1);
        let count = u64::try_from(number("count", 100)?.max(0)).unwrap_or(0).min(MAX_COUNT);
        let offset = u64::try_from(start - 1).unwrap_or(0);
        let (total, users) = scim.list(&terms, offset, count).await?;
        let projection = Projection::of(&req);
        let resources: Vec<Value> = users.iter().map(|u| projection.apply(resource(&req, u))).collect();
        Ok(scim_json(
            StatusCode::OK,
            &json!({ "schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start,
                     "itemsPerPage": resources.len(), "Resources": resources }),
        ))
    })
    .await
}

async fn create_user(ctx: web::Data<ServerContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    with_scim(&ctx, &req, async |scim| {
        let write = write_from(&body_object(&req, &body)?)?;
        written(&req, StatusCode::CREATED, scim.create(write).await?)
    })
    .await
}

async fn replace_user(
    ctx: web::Data<ServerContext>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    with_scim(&ctx, &req, async |scim| {
        let expected = if_match(&req)?;
        let write = write_from(&body_object(&req, &body)?)?;
        written(&req, StatusCode::OK, scim.replace(&id, write, expected).await?)
    })
    .await
}

async fn delete_user(ctx: web::Data<ServerContext>, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    with_scim(&ctx, &req, async |scim| {
        let expected = if_match(&req)?;
        let Some(current) = scim.get(&id).await? else { return Err(ScimError::not_found()) };
        if expected.is_some_and(|v| v != current.version) {
            return Err(ScimError::new(
                StatusCode::PRECONDITION_FAILED,
                None,
                "The user changed since that version (If-Match).",
            ));
        }
        if scim.delete(&id).await? { Ok(HttpResponse::NoContent().finish()) } else { Err(ScimError::not_found()) }
    })
    .await
}

/// The attributes a PATCH may name, as the resource spells them.
const ATTRIBUTES: [&str; 8] = ["userName", "name", "displayName", "emails", "active", "roles", "externalId", "title"];
/// Attributes set by Latchkey only.
const READ_ONLY: [&str; 3] = ["id", "meta", "schemas"];

async fn patch_user(
    ctx: web::Data<ServerContext>,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    with_scim(&ctx, &req, async |scim| {
        let expected = if_match(&req)?;
        let patch = body_object(&req, &body)?;
        if let Value::Array(schemas) = attr(&patch, "schemas")
            && !schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_SCHEMA)))
        {
            return Err(ScimError::bad("invalidValue", format!("schemas must include {PATCH_SCHEMA}.")));
        }
        let Value::Array(operations) = attr(&patch, "Operations") else {
            return Err(ScimError::bad("invalidValue", "Operations must be a list."));
        };
        if operations.len() > MAX_OPERATIONS {
            return Err(ScimError::bad("invalidValue", format!("At most {MAX_OPERATIONS} operations per PATCH.")));
        }
        let Some(current) = scim.get(&id).await? else { return Err(ScimError::not_found()) };
        let Value::Object(mut user) = resource(&req, &current) else { return Err(ScimError::not_found()) };
        for operation in operations {
            apply(&mut user, operation)?;
        }
        let write = write_from(&user)?;
        written(&req, StatusCode::OK, scim.replace(&id, write, expected.or(Some(current.version))).await?)
    })
    .await
}

/// Applies one PATCH operation to the user's resource.
fn apply(user: &mut Map<String, Value>, operation: &Value) -> Result<(), ScimError> {
    let Some(operation) = operation.as_object() else {
        return Err(ScimError::bad("invalidValue", "Each operation must be an object."));
    };
    let op = attr(operation, "op").as_str().unwrap_or("").to_ascii_lowercase();
    if !matches!(op.as_str(), "add" | "replace" | "remove") {
        return Err(ScimError::bad("invalidValue", "op must be add, replace or remove."));
    }
    let value = attr(operation, "value").clone();
    let path = match attr(operation, "path") {
        Value::Null => None,
        Value::String(p) if !p.trim().is_empty() => Some(p.trim().to_owned()),
        Value::String(_) => None,
        _ => return Err(ScimError::bad("invalidPath", "path must be a string.")),
    };
    let Some(path) = path else {
        if op == "remove" {
            return Err(ScimError::bad("noTarget", "remove needs a path."));
        }
        let Value::Object(values) = value else {
            return Err(ScimError::bad("invalidValue", "Without a path, value must be an object of attributes."));
        };
        for (name, v) in values {
            set(user, &name, Some(v))?;
        }
        return Ok(());
    };
    set(user, &path, (op != "remove").then_some(value))
}

/// Sets (or with `None` removes) the attribute at `path`.
fn set(user: &mut Map<String, Value>, path: &str, value: Option<Value>) -> Result<(), ScimError> {
    if path.to_ascii_lowercase().starts_with("urn:")
        && !path.to_ascii_lowercase().starts_with(&USER_SCHEMA.to_ascii_lowercase())
    {
        return Ok(()); // an extension's attribute: not kept, not an error
    }
    let path = path.strip_prefix(&format!("{USER_SCHEMA}:")).unwrap_or(path);
    // emails[type eq "work"].value
    if let Some((head, rest)) = path.split_once('[') {
        if !head.eq_ignore_ascii_case("emails") {
            return Err(ScimError::bad("invalidPath", format!("Unsupported path {path:?}.")));
        }
        let (filter, sub) = rest.split_once(']').ok_or_else(|| ScimError::bad("invalidPath", "Unclosed [ in path."))?;
        let filter = filter.trim();
        let wanted = filter
            .get(..7)
            .filter(|start| start.eq_ignore_ascii_case("type eq"))
            .and_then(|_| filter.get(7..))
            .map(|v| v.trim().trim_matches('"').to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ScimError::bad("invalidPath", "Only emails[type eq \"...\"] is supported."))?;
        let sub = sub.trim_start_matches('.');
        let emails = user.entry("emails").or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(list) = emails else { return Err(ScimError::bad("invalidValue", "emails must be a list.")) };
        let position = list
            .iter()
            .position(|e| e.get("type").and_then(Value::as_str).is_some_and(|t| t.eq_ignore_ascii_case(&wanted)));
        return match (position, value) {
            (Some(i), None) => {
                list.remove(i);
                Ok(())
            }
            (None, None) => Err(ScimError::bad("noTarget", format!("No email of type {wanted:?}."))),
            (Some(i), Some(v)) if sub.eq_ignore_ascii_case("value") => {
                list[i]["value"] = v;
                Ok(())
            }
            (None, Some(v)) if sub.eq_ignore_ascii_case("value") => {
                list.push(json!({ "type": wanted, "value": v, "primary": list.is_empty() }));
                Ok(())
            }
            _ => Err(ScimError::bad("invalidPath", "Only the email's value can be set.")),
        };
    }
    let (head, sub) = match path.split_once('.') {
        Some((head, sub)) => (head, Some(sub)),
        None => (path, None),
    };
    if READ_ONLY.iter().any(|r| r.eq_ignore_ascii_case(head)) {
        return Err(ScimError::bad("mutability", format!("{head} cannot be changed.")));
    }
    let Some(canonical) = ATTRIBUTES.iter().find(|a| a.eq_ignore_ascii_case(head)) else {
        return Err(ScimError::bad("invalidPath", format!("Unknown attribute {head:?}.")));
    };
    match (sub, value) {
        (None, Some(v)) => {
            user.insert((*canonical).to_owned(), v);
        }
        (None, None) => {
            user.remove(*canonical);
        }
        (Some(sub), value) => {
            let parent = user.entry((*canonical).to_owned()).or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(parent) = parent else {
                return Err(ScimError::bad("invalidPath", format!("{head} has no sub-attributes.")));
            };
            let key = parent.keys().find(|k| k.eq_ignore_ascii_case(sub)).cloned().unwrap_or_else(|| sub.to_owned());
            match value {
                Some(v) => {
                    parent.insert(key, v);
                }
                None => {
                    parent.remove(&key);
                }
            }
            if *canonical == "name" {
                // The display name follows the parts unless given.
                parent.remove("formatted");
                user.remove("displayName");
            }
        }
    }
    Ok(())
}

async fn service_provider_config() -> HttpResponse {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/latchkey/latchkey#scim",
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_COUNT },
            "changePassword": { "supported": false },
            "sort": { "supported": false },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken", "name": "API key",
                "description": "A Latchkey API key allowed the `scim` permission, as `Authorization: Bearer lk_…`.",
                "primary": true
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig" }
        }),
    )
}

fn user_resource_type() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User", "name": "User", "endpoint": "/Users", "schema": USER_SCHEMA,
        "meta": { "resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/User" }
    })
}

async fn resource_types() -> HttpResponse {
    single_list(user_resource_type())
}

async fn resource_type(id: web::Path<String>) -> HttpResponse {
    match id.as_str() {
        "User" => scim_json(StatusCode::OK, &user_resource_type()),
        _ => ScimError::new(StatusCode::NOT_FOUND, None, "No such resource type.").response(),
    }
}

async fn schema(id: web::Path<String>) -> HttpResponse {
    match id.as_str() {
        USER_SCHEMA => scim_json(StatusCode::OK, &user_schema()),
        _ => ScimError::new(StatusCode::NOT_FOUND, None, "No such schema.").response(),
    }
}

/// A list response of one discovery resource.
fn single_list(resource: Value) -> HttpResponse {
    scim_json(
        StatusCode::OK,
        &json!({ "schemas": [LIST_SCHEMA], "totalResults": 1, "startIndex": 1, "itemsPerPage": 1, "Resources": [resource] }),
    )
}

async fn schemas() -> HttpResponse {
    single_list(user_schema())
}

fn user_schema() -> Value {
    let attribute = |name: &str, kind: &str, required: bool, mutability: &str, uniqueness: &str| {
        json!({ "name": name, "type": kind, "multiValued": false, "required": required, "caseExact": false,
                "mutability": mutability, "returned": "default", "uniqueness": uniqueness })
    };
    let mut role_value = attribute("value", "string", false, "readWrite", "none");
    role_value["canonicalValues"] = json!(["internal-admin", "academy-admin", "integration-user"]);
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA, "name": "User", "description": "A user of the tenant (who may own API keys).",
        "attributes": [
            attribute("userName", "string", true, "readWrite", "server"),
            attribute("displayName", "string", false, "readWrite", "none"),
            attribute("externalId", "string", false, "readWrite", "none"),
            attribute("active", "boolean", false, "readWrite", "none"),
            { "name": "name", "type": "complex", "multiValued": false, "required": false, "mutability": "readWrite",
              "returned": "default", "subAttributes": [
                attribute("givenName", "string", false, "readWrite", "none"),
                attribute("familyName", "string", false, "readWrite", "none"),
                attribute("formatted", "string", false, "readWrite", "none") ] },
            { "name": "emails", "type": "complex", "multiValued": true, "required": false, "mutability": "readWrite",
              "returned": "default", "subAttributes": [
                attribute("value", "string", false, "readWrite", "none"),
                attribute("type", "string", false, "readWrite", "none"),
                attribute("primary", "boolean", false, "readWrite", "none") ] },
            { "name": "roles", "type": "complex", "multiValued": true, "required": false, "mutability": "readWrite",
              "returned": "default", "description": "internal-admin, academy-admin or integration-user (none: academy-admin)",
              "subAttributes": [role_value, attribute("primary", "boolean", false, "readWrite", "none")] }
        ],
        "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{USER_SCHEMA}") }
    })
}
