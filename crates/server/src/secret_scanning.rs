//! GitHub secret scanning (`POST /v1/secret-scanning/github`): GitHub's
//! signed matches, each answered true or false positive.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::answers::{ErrorBody, RestError, rest_error};
use crate::context::ServerContext;

/// Most matches one GitHub request may carry.
const MAX_GITHUB_MATCHES: usize = 10_000;

/// GitHub's label for one match.
#[derive(Serialize, ToSchema)]
pub(crate) struct ScanVerdict {
    /// SHA-256 of the matched string, hex.
    token_hash: String,
    /// The match's `type`, echoed.
    token_type: String,
    /// `true_positive` (a real key, now handled as leaked) or `false_positive`.
    #[schema(example = "true_positive")]
    label: &'static str,
}

/// `POST /v1/secret-scanning/github`: GitHub's secret-scanning partner
/// requests. Only a body signed by one of GitHub's published keys is read;
/// each real key is handled as a leak (see `latchkey_app::leaks`), and the
/// answer labels every match.
#[utoipa::path(
    post, path = "/v1/secret-scanning/github", tag = "leaks", request_body = Vec<crate::github::SecretMatch>,
    params(
        ("Github-Public-Key-Identifier" = String, Header, description = "Which of GitHub's keys signed the body"),
        ("Github-Public-Key-Signature" = String, Header, description = "Base64 ECDSA P-256 signature of the body"),
    ),
    responses(
        (status = 200, description = "A label for every match", body = Vec<ScanVerdict>),
        (status = 400, description = "Not a JSON array of matches", body = ErrorBody),
        (status = 401, description = "Not signed by GitHub", body = ErrorBody),
        (status = 413, description = "More than 10,000 matches", body = ErrorBody),
    )
)]
pub(crate) async fn github_secret_scanning(
    ctx: web::Data<ServerContext>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (identifier, signature) = (header("github-public-key-identifier"), header("github-public-key-signature"));
    if identifier.is_empty() || signature.is_empty() || !ctx.github.verify(identifier, signature, &body).await {
        return RestError::unauthenticated("The request is not signed by one of GitHub's secret-scanning keys.")
            .response();
    }
    let matches: Vec<crate::github::SecretMatch> = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(_) => return RestError::bad_request("Expected a JSON array of matches.").response(),
    };
    if matches.len() > MAX_GITHUB_MATCHES {
        return RestError::payload_too_large("Too many matches in one request.").response();
    }
    let mut verdicts = Vec::with_capacity(matches.len());
    for found in matches {
        let place = latchkey_app::leaks::FoundAt {
            reporter: "GitHub secret scanning".into(),
            url: found.url,
            source: found.source,
        };
        let label = match ctx.app.report_leak(&found.token, &place).await {
            Ok(true) => "true_positive",
            Ok(false) => "false_positive",
            Err(e) => return rest_error(e),
        };
        let token_hash = latchkey_app::leaks::token_hash(&found.token);
        verdicts.push(ScanVerdict { token_hash, token_type: found.token_type, label });
    }
    HttpResponse::Ok().json(verdicts)
}
