//! The Lambda `Invoke` API for the local stack's functions, so that `aws lambda invoke
//! --endpoint-url ...`, the AWS SDKs and `make invoke` can run any function of the templates with
//! any event — a Docker-free `sam local invoke` against the running stack.
//!
//! `POST /2015-03-31/functions/{name}/invocations`, where `{name}` is the function's physical name,
//! its ARN, or its logical id qualified by its stack (`Orders.ConsumerFunction`).
//! `X-Amz-Invocation-Type: RequestResponse` (default) answers `200` with the result, or with
//! `X-Amz-Function-Error: Unhandled` and `{"errorMessage", "errorType"}`; `Event` queues an
//! asynchronous invoke with the function's `EventInvokeConfig` and answers `202`; `DryRun` `204`.

use std::sync::Arc;

use anyhow::Result;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::event_queue::EventQueue;
use crate::functions::{Function, InvokeError, InvokeRequest};
use base64::Engine as _;

/// The functions the endpoint serves.
#[derive(Debug)]
pub struct LambdaApi {
    functions: Vec<Arc<Function>>,
    invoker: Arc<EventQueue>,
    /// The stack's health, once everything has started (`GET /_local/status`, `make status`).
    pub status: std::sync::OnceLock<Arc<crate::status::Status>>,
}

impl LambdaApi {
    /// An endpoint for `functions`.
    pub fn new(functions: Vec<Arc<Function>>, invoker: Arc<EventQueue>) -> Self {
        Self {
            functions,
            invoker,
            status: std::sync::OnceLock::new(),
        }
    }

    fn find(&self, name: &str) -> Option<&Arc<Function>> {
        let name = name.trim_end_matches(":$LATEST");
        self.functions
            .iter()
            .find(|f| f.name == name || f.arn == name || f.id == name)
    }

    /// Serves the endpoint on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> Result<()> {
        let app = axum::Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                axum::routing::post(invoke),
            )
            .route("/_local/status", axum::routing::get(status))
            .with_state(self);
        axum::serve(listener, app).await?;
        Ok(())
    }
}

/// The stack's health (not a Lambda API: the gateway's own, for `make status`).
async fn status(State(api): State<Arc<LambdaApi>>) -> Response {
    match api.status.get() {
        Some(status) => axum::Json(status.snapshot()).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the stack is still starting",
        ),
    }
}

fn error(status: StatusCode, kind: &str, text: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "Type": "User", "message": text })),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

/// Whether a web page could have sent this request cross-site: browsers add `Origin` to every
/// cross-origin POST, and send without a CORS preflight only the "simple" content types. The
/// endpoint listens on the developer's loopback, where any page they visit can reach it, and AWS
/// would require a SigV4 signature no page has; so such requests are refused, not run.
fn cross_site(headers: &HeaderMap) -> bool {
    let simple = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            matches!(
                t.as_str(),
                "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
            )
        });
    headers.contains_key("origin") || simple
}

/// Largest request payload of a synchronous invoke (Lambda's quota, 6 MB).
const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

async fn invoke(
    State(api): State<Arc<LambdaApi>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if cross_site(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "AccessDeniedException",
            "The local Lambda endpoint refuses requests a web page could send cross-site (an Origin header, or a text/plain, form or multipart body): use the AWS CLI, an SDK, or Content-Type: application/json",
        );
    }
    let Some(function) = api.find(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: {name}"),
        );
    };
    let kind = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    if body.len() > MAX_REQUEST_BYTES {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            &format!(
                "Request must be smaller than {MAX_REQUEST_BYTES} bytes for the InvokeFunction operation"
            ),
        );
    }
    let payload = if body.is_empty() {
        Bytes::from_static(b"{}")
    } else if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    } else {
        body
    };
    // `X-Amz-Client-Context` is base64-encoded JSON; the runtime receives it decoded.
    let client_context = match headers.get("x-amz-client-context") {
        None => None,
        Some(value) => match value
            .to_str()
            .ok()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
        {
            Some(text) => Some(text),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    "Client context must be a valid Base64-encoded JSON object.",
                );
            }
        },
    };
    match kind {
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        "Event" => {
            let Ok(event) = serde_json::from_slice(&payload) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    "Could not parse request body into json",
                );
            };
            match api.invoker.invoke(&function.arn, event) {
                Ok(_) => StatusCode::ACCEPTED.into_response(),
                Err(crate::event_queue::QueueError::UnknownFunction(_)) => error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &format!("Function not found: {name}"),
                ),
                // Not queued, so not accepted: the caller may try again.
                Err(queue_error) => {
                    let queue_error = anyhow::Error::from(queue_error);
                    tracing::error!(function = %function.id, error = %format!("{queue_error:#}"), "asynchronous invoke refused");
                    error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "ServiceException",
                        "The event could not be queued.",
                    )
                }
            }
        }
        "RequestResponse" => {
            let mut request = InvokeRequest::new(payload);
            request.client_context = client_context;
            let mut response = match function.invoke_raw(request).await {
                Ok(answer) => (StatusCode::OK, answer).into_response(),
                Err(InvokeError::Function(e)) => {
                    let mut r = (StatusCode::OK, axum::Json(e.payload())).into_response();
                    r.headers_mut().insert(
                        "x-amz-function-error",
                        HeaderValue::from_static("Unhandled"),
                    );
                    r
                }
                Err(InvokeError::Throttled { reason }) => {
                    let mut r = (
                        StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(
                            json!({"Reason": reason, "Type": "User", "message": "Rate Exceeded."}),
                        ),
                    )
                        .into_response();
                    r.headers_mut().insert(
                        "x-amzn-errortype",
                        HeaderValue::from_static("TooManyRequestsException"),
                    );
                    return r;
                }
            };
            response.headers_mut().insert(
                "x-amz-executed-version",
                HeaderValue::from_static("$LATEST"),
            );
            response
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("Invalid invocation type {other}"),
        ),
    }
}
