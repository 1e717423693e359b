//! Error replies axum makes on its own (405 for a known path with another method, 400
//! when a path segment or query is not the right type), rewritten into Discord's JSON
//! shape: a strict client parses every error body, and axum's are empty or plain text.

use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::reply::{ApiError, FormErrors};

/// How much of a plain-text rejection is kept as the 50035 message.
const REJECTION_LIMIT: usize = 4_096;

/// Passes JSON replies through; an error without a JSON body becomes Discord's.
pub(super) async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !status.is_client_error() && !status.is_server_error() || is_json {
        return response;
    }
    match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::method_not_allowed().into_response(),
        StatusCode::NOT_FOUND => ApiError::not_found().into_response(),
        StatusCode::UNAUTHORIZED => ApiError::unauthorized().into_response(),
        // Discord's answer to `/channels/abc/messages` or `?limit=x`: 50035 naming the
        // value that is not a snowflake or number; axum's text says which.
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            let text = to_bytes(response.into_body(), REJECTION_LIMIT)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            ApiError::invalid_form(FormErrors::one("", "BASE_TYPE_INVALID", &text)).into_response()
        }
        _ => {
            let mut response = ApiError::internal().into_response();
            *response.status_mut() = status;
            response
        }
    }
}
