//! `POST /v1/keys/rotate`: a key allowed to (`selfRotation`) rotates itself.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use latchkey_app::AppError;
use latchkey_app::self_rotation::SelfRotate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::answers::{ErrorBody, RestError, client_address, rest_error};
use crate::context::ServerContext;

/// What the key asks of its rotation (the body may be empty: no overlap).
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SelfRotateRequest {
    /// How long the presented secret keeps working beside the new one, in
    /// seconds: 0 (the default: it stops at once) to 604800, and at most the
    /// tenant's key policy's `maxOverlapSeconds`.
    #[schema(minimum = 0, maximum = 604_800, example = 3600)]
    overlap_seconds: Option<i64>,
    /// Stop the presented secret as soon as the new one verifies once, on
    /// any replica (or at the overlap's end, whichever comes first).
    end_overlap_on_first_use: Option<bool>,
}

/// The key, rotated: its new secret, shown this once.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SelfRotatedAnswer {
    /// The new secret. Store it now: it cannot be retrieved later.
    #[schema(example = "lk_...")]
    key: String,
    #[schema(value_type = uuid::Uuid)]
    key_id: String,
    /// When the key stops working; null for never.
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Until when the presented secret keeps working; null when it stopped.
    #[schema(value_type = Option<String>, format = DateTime)]
    previous_secret_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A key rotates itself, with its current secret as the bearer token. Its
/// owner, restrictions and limits stay; its expiry too, unless the tenant's
/// key policy asks for a shorter one. Audited with the key as actor, the
/// owner emailed, the old secret dropped on every replica within a second.
#[utoipa::path(
    operation_id = "rotate_key_itself",
    post, path = "/v1/keys/rotate", tag = "rotation", request_body(content = SelfRotateRequest, description = "Optional"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Rotated; the new secret, once", body = SelfRotatedAnswer),
        (status = 400, description = "The body is not a rotation, or the overlap is out of range or beyond the key policy", body = ErrorBody),
        (status = 401, description = "No key, or a key that does not verify", body = ErrorBody),
        (status = 403, description = "The key may not rotate itself, or this is not its current secret", body = ErrorBody),
        (status = 429, description = "The key rotated itself less than a minute ago",
         headers(("Retry-After" = u32, description = "Seconds")), body = ErrorBody),
        (status = 503, description = "Latchkey cannot answer now", body = ErrorBody),
    )
)]
pub(crate) async fn rotate_itself(ctx: web::Data<ServerContext>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(secret) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(latchkey_app::auth::bearer_token)
    else {
        return RestError::unauthenticated("Present the key to rotate as `Authorization: Bearer lk_...`.").response();
    };
    let empty = body.iter().all(u8::is_ascii_whitespace);
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let request = match serde_json::from_slice::<SelfRotateRequest>(&body) {
        _ if empty => SelfRotateRequest::default(),
        Ok(r) if is_object => r,
        _ => {
            return RestError::bad_request(
                "The body must be empty or JSON of the form {\"overlapSeconds\": 3600, \"endOverlapOnFirstUse\": true}.",
            )
            .response();
        }
    };
    let command = SelfRotate {
        overlap_seconds: request.overlap_seconds,
        end_overlap_on_first_use: request.end_overlap_on_first_use.unwrap_or(false),
    };
    let client = client_address(&req, &ctx.trusted_proxies);
    let user_agent = crate::answers::user_agent(&req);
    match ctx.app.self_rotate(secret, client, user_agent.as_deref(), command).await {
        Ok(rotated) => {
            HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(SelfRotatedAnswer {
                key: rotated.secret.expose().to_owned(),
                key_id: rotated.key_id.to_string(),
                expires_at: rotated.expires_at,
                previous_secret_expires_at: rotated.previous_secret_expires_at,
            })
        }
        Err(e @ AppError::RateLimitExceeded { retry_after_secs, .. }) => {
            let mut response = rest_error(e);
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after_secs.max(1)));
            response
        }
        Err(e) => rest_error(e),
    }
}
