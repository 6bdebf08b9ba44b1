//! The Lambda Runtime API of one execution environment: what a function's own runtime
//! (`lambda_runtime`, or any other) talks to, at `AWS_LAMBDA_RUNTIME_API`.
//!
//! - `GET /2018-06-01/runtime/invocation/next` waits for the next event and hands it over with
//!   Lambda's headers (request id, deadline, function ARN, trace id, client context and identity
//!   when the caller gave them);
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../{id}/error` answer the
//!   invocation in flight, and only it: any other id is refused, so an answer can never reach
//!   another caller (each caller awaits its own oneshot channel, as in cargo-lambda's `watch`);
//! - `POST /2018-06-01/runtime/init/error` reports a failed initialisation.
//!
//! Each environment has its own listener, so a runtime that only knows `host:port` works too.
//! Lambda developer guide, runtimes-api.html.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use super::FunctionError;

/// Largest response a synchronous invoke returns (Lambda's 6 MB payload quota, in bytes as its
/// error message names them).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;

/// One event handed to the environment.
#[derive(Debug)]
pub struct Job {
    /// `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: String,
    /// The event, as the caller sent it.
    pub payload: Bytes,
    /// `Lambda-Runtime-Deadline-Ms`: the hand-over plus the function's `Timeout`.
    pub deadline: SystemTime,
    /// `Lambda-Runtime-Trace-Id`.
    pub trace_id: String,
    /// `Lambda-Runtime-Client-Context` (JSON), when the caller gave one.
    pub client_context: Option<String>,
    /// `Lambda-Runtime-Cognito-Identity` (JSON), when the caller gave one.
    pub cognito_identity: Option<String>,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Reply>,
}

/// The runtime's answer to one invocation.
#[derive(Debug)]
pub enum Reply {
    /// `POST .../response`: the function's result, as bytes.
    Response(Bytes),
    /// `POST .../error`: the error the runtime reported.
    Error(FunctionError),
}

/// What the Runtime API of one environment shares with its pool.
#[derive(Debug)]
pub struct RuntimeState {
    function_arn: String,
    jobs: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    in_flight: Mutex<Option<(String, oneshot::Sender<Reply>)>>,
    /// The invocation answered last: a second answer to it is refused as a state error.
    answered: Mutex<Option<String>>,
    /// Set on the first `next`: the runtime has initialised.
    ready: watch::Sender<bool>,
    init_error: Mutex<Option<oneshot::Sender<FunctionError>>>,
}

impl RuntimeState {
    /// State for an environment of the function `function_arn`; returns the senders its pool
    /// uses: events in, the readiness signal and the init error out.
    pub fn new(
        function_arn: String,
    ) -> (
        Arc<Self>,
        mpsc::Sender<Job>,
        watch::Receiver<bool>,
        oneshot::Receiver<FunctionError>,
    ) {
        let (jobs_tx, jobs_rx) = mpsc::channel(1);
        let (ready_tx, ready_rx) = watch::channel(false);
        let (init_tx, init_rx) = oneshot::channel();
        let state = Arc::new(Self {
            function_arn,
            jobs: tokio::sync::Mutex::new(jobs_rx),
            in_flight: Mutex::new(None),
            answered: Mutex::new(None),
            ready: ready_tx,
            init_error: Mutex::new(Some(init_tx)),
        });
        (state, jobs_tx, ready_rx, init_rx)
    }
}

/// The Runtime API routes of one environment.
pub fn router(state: Arc<RuntimeState>) -> axum::Router {
    axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(response),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        // Larger bodies are refused by the handlers with Lambda's own error, not by axum.
        .layer(DefaultBodyLimit::max(MAX_RESPONSE_BYTES * 2))
        .with_state(state)
}

fn refusal(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errorMessage": message, "errorType": error_type })),
    )
        .into_response()
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, axum::Json(json!({ "status": "OK" }))).into_response()
}

async fn next(State(state): State<Arc<RuntimeState>>) -> Response {
    state.ready.send_replace(true);
    let job = {
        let mut jobs = state.jobs.lock().await;
        jobs.recv().await
    };
    let Some(job) = job else {
        // The environment is being shut down.
        return refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Runtime.Shutdown",
            "the execution environment is shutting down",
        );
    };
    let deadline_ms = job
        .deadline
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &job.request_id);
    put("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    put("lambda-runtime-invoked-function-arn", &state.function_arn);
    put("lambda-runtime-trace-id", &job.trace_id);
    if let Some(context) = &job.client_context {
        put("lambda-runtime-client-context", context);
    }
    if let Some(identity) = &job.cognito_identity {
        put("lambda-runtime-cognito-identity", identity);
    }
    put("content-type", "application/json");
    if let Ok(mut in_flight) = state.in_flight.lock() {
        *in_flight = Some((job.request_id.clone(), job.reply));
    }
    (StatusCode::OK, headers, job.payload).into_response()
}

/// Takes the reply channel of invocation `id`, if it is the one in flight; else the refusal
/// the Runtime API gives (as AWS's runtime interface emulator answers).
fn take(state: &RuntimeState, id: &str) -> Result<oneshot::Sender<Reply>, Refused> {
    let taken = state
        .in_flight
        .lock()
        .ok()
        .and_then(|mut in_flight| match in_flight.as_ref() {
            Some((current, _)) if current == id => in_flight.take().map(|(_, reply)| reply),
            _ => None,
        });
    if let Some(reply) = taken {
        if let Ok(mut answered) = state.answered.lock() {
            *answered = Some(id.to_owned());
        }
        return Ok(reply);
    }
    let again = state
        .answered
        .lock()
        .map(|a| a.as_deref() == Some(id))
        .unwrap_or(false);
    Err(if again {
        Refused::AnsweredAlready
    } else {
        Refused::UnknownId
    })
}

/// Why an answer was refused.
#[derive(Debug, Clone, Copy)]
enum Refused {
    /// No invocation in flight has this id.
    UnknownId,
    /// This invocation was answered already.
    AnsweredAlready,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::AnsweredAlready => refusal(
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                "State transition from ResponseSent to ResponseSent is not allowed",
            ),
            Refused::UnknownId => refusal(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "Invalid request ID",
            ),
        }
    }
}

async fn response(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let reply = match take(&state, &id) {
        Ok(reply) => reply,
        Err(refused) => return refused.into_response(),
    };
    if body.len() > MAX_RESPONSE_BYTES {
        let message = format!(
            "Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
        );
        let _ = reply.send(Reply::Error(FunctionError::new(
            "Function.ResponseSizeTooLarge",
            &message,
        )));
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &message,
        );
    }
    let _ = reply.send(Reply::Response(body));
    accepted()
}

/// The error a runtime posts: its JSON body (`errorType`, `errorMessage`, `stackTrace`), with
/// `Lambda-Runtime-Function-Error-Type` as the type when the body names none.
fn reported_error(headers: &HeaderMap, body: &Bytes) -> FunctionError {
    let header_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error_type = parsed
        .as_ref()
        .and_then(|v| v.get("errorType"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(header_type)
        .unwrap_or_else(|| "Unhandled".to_owned());
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("errorMessage"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    FunctionError {
        error_type,
        message,
        body: parsed,
    }
}

async fn error(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = match take(&state, &id) {
        Ok(reply) => reply,
        Err(refused) => return refused.into_response(),
    };
    let _ = reply.send(Reply::Error(reported_error(&headers, &body)));
    accepted()
}

async fn init_error(
    State(state): State<Arc<RuntimeState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sender = state.init_error.lock().ok().and_then(|mut s| s.take());
    match sender {
        Some(sender) if !*state.ready.borrow() => {
            let _ = sender.send(reported_error(&headers, &body));
            accepted()
        }
        _ => refusal(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "init/error is only accepted before the first invocation/next",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn call(app: &axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .body(Body::from(body.to_owned()))
                    .expect("request"),
            )
            .await
            .expect("answer");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn job(id: &str) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        (
            Job {
                request_id: id.into(),
                payload: Bytes::from_static(b"{\"n\":1}"),
                deadline: SystemTime::now(),
                trace_id: "Root=1-0-0".into(),
                client_context: None,
                cognito_identity: None,
                reply,
            },
            answer,
        )
    }

    #[tokio::test]
    async fn an_answer_reaches_its_own_caller_and_no_other_id_is_accepted() {
        let (state, jobs, ready, _init) = RuntimeState::new("arn:f".into());
        let app = router(state);
        let (first, answer) = job("r-1");
        jobs.send(first).await.expect("queued");
        let (status, event) = call(&app, "GET", "/2018-06-01/runtime/invocation/next", "").await;
        assert_eq!((status, event), (StatusCode::OK, json!({"n": 1})));
        assert!(*ready.borrow(), "a next call marks the runtime initialised");
        let (status, body) = call(
            &app,
            "POST",
            "/2018-06-01/runtime/invocation/r-2/response",
            "\"stolen\"",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["errorType"], "InvalidRequestID");
        let (status, _) = call(
            &app,
            "POST",
            "/2018-06-01/runtime/invocation/r-1/response",
            "\"mine\"",
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        match answer.await.expect("answered") {
            Reply::Response(bytes) => assert_eq!(&bytes[..], b"\"mine\""),
            other => panic!("unexpected {other:?}"),
        }
        let (status, _) = call(
            &app,
            "POST",
            "/2018-06-01/runtime/invocation/r-1/response",
            "\"twice\"",
        )
        .await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "an invocation is answered once"
        );
    }

    #[tokio::test]
    async fn a_reported_error_keeps_its_type_and_message() {
        let (state, jobs, _ready, _init) = RuntimeState::new("arn:f".into());
        let app = router(state);
        let (first, answer) = job("r-1");
        jobs.send(first).await.expect("queued");
        call(&app, "GET", "/2018-06-01/runtime/invocation/next", "").await;
        let (status, _) = call(
            &app,
            "POST",
            "/2018-06-01/runtime/invocation/r-1/error",
            r#"{"errorType":"JobError","errorMessage":"job failed: late"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        match answer.await.expect("answered") {
            Reply::Error(e) => {
                assert_eq!(
                    (e.error_type.as_str(), e.message.as_str()),
                    ("JobError", "job failed: late")
                )
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_init_error_is_accepted_once_and_only_before_the_first_next() {
        let (state, _jobs, _ready, init) = RuntimeState::new("arn:f".into());
        let app = router(state);
        let (status, _) = call(
            &app,
            "POST",
            "/2018-06-01/runtime/init/error",
            r#"{"errorType":"ConfigError","errorMessage":"TABLE_NAME is not set"}"#,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let reported = init.await.expect("reported");
        assert_eq!(reported.error_type, "ConfigError");
        let (status, _) = call(&app, "POST", "/2018-06-01/runtime/init/error", "{}").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
