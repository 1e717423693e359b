//! Discord's JSON conventions for replies, shared by the REST subset and the control
//! API: errors as `{message, code[, errors]}`, request bodies read the way Discord
//! refuses them (50109 when a body is not JSON, 50035 when its fields are wrong), and
//! JSON bodies sent as they were written.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::{Error, ErrorKind};

/// An error reply: an HTTP status and Discord's JSON error body.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: u32,
    message: &'static str,
    /// The `errors` object of a 50035 Invalid Form Body.
    errors: Option<Value>,
}

impl ApiError {
    const fn new(status: StatusCode, code: u32, message: &'static str) -> Self {
        Self {
            status,
            code,
            message,
            errors: None,
        }
    }

    /// 401 without (or with a wrong) bot token.
    pub(crate) const fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
    }

    /// 404 with code 0: no such route.
    pub(crate) const fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 0, "404: Not Found")
    }

    /// 405 with code 0: the path exists, not with this method.
    pub(crate) const fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed")
    }

    /// 500 with code 0.
    pub(crate) const fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            0,
            "500: Internal Server Error",
        )
    }

    /// 404 with 10003.
    pub(crate) const fn unknown_channel() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10_003, "Unknown Channel")
    }

    /// 404 with 10015: no webhook has this id.
    pub(crate) const fn unknown_webhook() -> Self {
        Self::new(StatusCode::NOT_FOUND, 10_015, "Unknown Webhook")
    }

    /// 401 with 50027: the webhook exists but the token is not its own.
    pub(crate) const fn invalid_webhook_token() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 50_027, "Invalid Webhook Token")
    }

    /// 400 with 50006: no content and no embeds.
    pub(crate) const fn empty_message() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            50_006,
            "Cannot send an empty message",
        )
    }

    /// 400 with 30007: the channel has Discord's maximum of webhooks.
    pub(crate) const fn max_webhooks() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            30_007,
            "Maximum number of webhooks reached (15)",
        )
    }

    /// 400 with 50109: the body is not JSON.
    pub(crate) const fn invalid_json() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            50_109,
            "The request body contains invalid JSON.",
        )
    }

    /// 400 with 50035 and the field errors.
    pub(crate) fn invalid_form(errors: FormErrors) -> Self {
        Self {
            errors: Some(Value::Object(errors.0)),
            ..Self::new(StatusCode::BAD_REQUEST, 50_035, "Invalid Form Body")
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"message": self.message, "code": self.code});
        if let Some(errors) = self.errors {
            body["errors"] = errors;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match *error.kind() {
            ErrorKind::UnknownChannel { .. } => Self::unknown_channel(),
            ErrorKind::EmptyMessage => Self::empty_message(),
            ErrorKind::InvalidPost { field, reason } => {
                Self::invalid_form(FormErrors::one(field, "BASE_TYPE_INVALID", reason))
            }
            // Never the outcome of a request; a 500 rather than a panic if one were.
            ErrorKind::InvalidConfig { .. } | ErrorKind::Bind | ErrorKind::Serve => {
                Self::internal()
            }
        }
    }
}

/// The `errors` object of an Invalid Form Body: per field path (`name`,
/// `embeds.0`), a list of `{code, message}` under `_errors`.
#[derive(Debug, Default)]
pub(crate) struct FormErrors(Map<String, Value>);

impl FormErrors {
    /// Errors with a single entry.
    pub(crate) fn one(path: &str, code: &str, message: &str) -> Self {
        let mut errors = Self::default();
        errors.add(path, code, message);
        errors
    }

    /// Adds an error for the field at `path` (keys joined by `.`; empty for the body
    /// as a whole).
    pub(crate) fn add(&mut self, path: &str, code: &str, message: &str) {
        let mut node = &mut self.0;
        for key in path.split('.').filter(|key| !key.is_empty()) {
            node = node
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("error nodes are objects");
        }
        if let Value::Array(list) = node.entry("_errors").or_insert_with(|| json!([])) {
            list.push(json!({"code": code, "message": message}));
        }
    }

    /// `Ok` without errors, else the 50035 reply.
    pub(crate) fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid_form(self))
        }
    }
}

/// Reads a JSON body into `T`: an empty body counts as `{}`, a body that is not JSON
/// is 50109, and JSON of the wrong shape is 50035.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let value = if body.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|_| ApiError::invalid_json())?
    };
    serde_json::from_value(value).map_err(|error| {
        ApiError::invalid_form(FormErrors::one("", "BASE_TYPE_INVALID", &error.to_string()))
    })
}

/// A 200 with a JSON body already serialized (a message exactly as dispatched).
pub(crate) fn json_body(body: &str) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_owned(),
    )
        .into_response()
}

/// A 200 with a JSON array of values already serialized.
pub(crate) fn json_array(items: &[Arc<str>]) -> Response {
    let mut body = String::with_capacity(2 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    body.push('[');
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push(']');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
