//! What wraps every request: reading bodies within a deadline, CORS for
//! admin front ends, and the request log (which records the HTTP metrics).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::answers::RestError;
use crate::context::ServerContext;

/// Largest request body accepted (larger gets 413).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads the whole request body, at most [`MAX_BODY_BYTES`], within
/// `timeout` before any handler runs. A client that sends it slower gets 408
/// and loses the connection, so slow bodies hold neither connections nor
/// memory for long.
pub async fn read_body_within(
    timeout: std::time::Duration,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    use actix_web::HttpMessage;
    use futures_util::StreamExt;
    let mut payload = req.take_payload();
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let refusal = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(body)) => {
            req.set_payload(actix_web::dev::Payload::from(body));
            return Ok(next.call(req).await?.map_into_left_body());
        }
        Ok(Err(StatusCode::PAYLOAD_TOO_LARGE)) => {
            RestError::payload_too_large(format!("The request body is larger than {MAX_BODY_BYTES} bytes.")).response()
        }
        Ok(Err(_)) => RestError::bad_request("The request body could not be read.").response(),
        Err(_) => {
            RestError::request_timeout(format!("The request body did not arrive within {} s.", timeout.as_secs_f64()))
                .response()
        }
    };
    let mut refusal = refusal;
    refusal.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
    Ok(req.into_response(refusal).map_into_right_body())
}

/// Admin front ends on their own origin (`LATCHKEY_CORS_ORIGINS`, exact
/// origins, none by default, never `*`): a preflight from a listed origin
/// is answered with what GraphQL needs, and its requests get
/// `Access-Control-Allow-Origin`; any other origin gets no CORS header, so
/// browsers keep its pages out. `Vary: Origin` always.
pub async fn cors(
    origins: std::sync::Arc<Vec<String>>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let allowed = origin.filter(|o| origins.iter().any(|allowed| allowed == o));
    // Forward auth is for gateways, never browsers: it answers every
    // method itself (a preflight there is a request to authenticate).
    let forward_auth = req.path() == "/v1/auth" || req.path().starts_with("/v1/auth/");
    if req.method() == actix_web::http::Method::OPTIONS
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && !forward_auth
    {
        let mut preflight = HttpResponse::NoContent();
        preflight.insert_header((header::VARY, "Origin"));
        if let Some(origin) = &allowed {
            preflight
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.as_str()))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization, content-type"))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
        }
        return Ok(req.into_response(preflight.finish()).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    headers.append(header::VARY, header::HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed
        && let Ok(value) = header::HeaderValue::from_str(&origin)
    {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    Ok(response.map_into_left_body())
}

/// Logs method, path (never the query string or headers), status and
/// latency, and records the request in the metrics under its route pattern.
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let metrics = req.app_data::<web::Data<ServerContext>>().map(|ctx| ctx.app.metrics().clone());
    let response = next.call(req).await?;
    let took = started.elapsed();
    let status = response.status().as_u16();
    if let Some(metrics) = metrics {
        metrics.http_request(response.request().match_pattern().as_deref(), method.as_str(), status, took);
    }
    tracing::info!(%method, %path, status, micros = took.as_micros() as u64, "request");
    Ok(response)
}
