//! Application errors of the API as HTTP answers, and the JSON body extractor that turns
//! malformed input into a 400 instead of a 5xx.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::types::ErrorBody;

/// An API error: a status code and a JSON body `{"error": "...", ...details}`.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
    /// Extra fields of the body.
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }

    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the cluster refused the change (conflict, compare-and-set failure).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 412: the operation is not possible in the cluster's current state.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, message)
    }

    /// 503: consensus unreachable, outcome unknown, or the feature is not available.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 401 with a Basic challenge.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the client is not allowed to do this at all.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// Adds a detail field to the body.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// A consensus failure while reading or proposing.
    pub fn consensus(e: rale::Error) -> Self {
        Self::unavailable(format!("consensus is not available: {e}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.message,
            details: self.details,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"rale\""),
            );
        }
        response
    }
}

/// A JSON request body. Unlike `axum::Json` it does not insist on a `Content-Type`
/// (Patroni's clients often send none), reads an empty body as `{}`, refuses bodies that
/// are not objects (or `null`, where the body is optional), reads integral numbers
/// written with a fraction (`3.0`) as integers, and answers 400 with the parser's message
/// for anything malformed.
#[derive(Clone, Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// Parses a request body as every handler of the API does (see [`ApiJson`]): an empty
/// body reads as `{}`, anything but an object (or `null`) is refused, integral numbers
/// written with a fraction are integers. The `api_bodies` fuzz target runs it.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let mut value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    if !(value.is_object() || value.is_null()) {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    integral_numbers(&mut value);
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// A query string. Like `axum::extract::Query`, but a malformed one is a JSON 400 like
/// every other error of the API (axum's own rejection is plain text).
#[derive(Clone, Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// JSON does not tell `3` from `3.0` (JSON Schema counts both as integers): numbers with
/// no fraction become integers, so that integer fields accept either spelling.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
            {
                // The casts are exact: the value is integral and inside the type's range.
                if (0.0..=u64::MAX as f64).contains(&f) && f < 18_446_744_073_709_551_616.0 {
                    *value = serde_json::Value::from(f as u64);
                } else if (i64::MIN as f64..0.0).contains(&f) {
                    *value = serde_json::Value::from(f as i64);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::integral_numbers;
    use serde_json::json;

    #[test]
    fn integral_floats_become_integers() {
        let mut v = json!({"n": 26044.0, "list": [1.5, -2.0, 0.0], "big": 1e30, "s": "3.0"});
        integral_numbers(&mut v);
        assert_eq!(
            v,
            json!({"n": 26044, "list": [1.5, -2, 0], "big": 1e30, "s": "3.0"})
        );
        assert!(v["n"].is_u64());
    }
}
