//! A fault-injecting HTTP proxy in front of moto, for tests of what clients do when AWS fails.
//!
//! A test points an SDK client (or a whole function, through its endpoint URL) at
//! [`FaultProxy::endpoint`]. Requests pass through to moto unchanged, except that the next `times`
//! calls of an operation (`X-Amz-Target`, as DynamoDB's and Kinesis's JSON protocols name it)
//! get the error AWS would answer instead, and never reach moto. The proxy counts what it
//! injected and what it passed, so a test can show that a retry really happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};

/// An error as DynamoDB answers it (JSON 1.0 protocol, `__type` naming the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 `InternalServerError`.
    InternalServerError,
    /// HTTP 400 `ThrottlingException`.
    Throttling,
    /// HTTP 400 `ProvisionedThroughputExceededException`.
    ProvisionedThroughputExceeded,
    /// HTTP 400 `TransactionCanceledException` with reasons `[None, TransactionConflict]`: what
    /// a two-item transaction meets when another request touches its second item at once.
    TransactionConflict,
}

impl Fault {
    /// The status and JSON body DynamoDB answers with this error.
    pub fn answer(self) -> (StatusCode, String) {
        let (status, kind, message, extra) = match self {
            Fault::InternalServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "injected fault: internal server error",
                "",
            ),
            Fault::Throttling => (
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "injected fault: rate of requests exceeds the allowed throughput",
                "",
            ),
            Fault::ProvisionedThroughputExceeded => (
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "injected fault: the level of configured provisioned throughput was exceeded",
                "",
            ),
            Fault::TransactionConflict => (
                StatusCode::BAD_REQUEST,
                "TransactionCanceledException",
                "Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]",
                r#","CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}]"#,
            ),
        };
        let body = format!(
            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"{message}"{extra}}}"#
        );
        (status, body)
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Faults still to inject, per operation: each call takes the first.
    planned: HashMap<String, Vec<Fault>>,
    injected: HashMap<String, u32>,
    passed: HashMap<String, u32>,
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    endpoint: String,
    counts: Arc<Mutex<Counts>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn operation(headers: &HeaderMap) -> String {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned()
}

impl FaultProxy {
    /// Starts a proxy on a free 127.0.0.1 port in front of `upstream` (moto's URL).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let counts = Arc::new(Mutex::new(Counts::default()));
        let client = reqwest::Client::new();
        let upstream = upstream.trim_end_matches('/').to_owned();
        let state = counts.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let (client, upstream, state) = (client.clone(), upstream.clone(), state.clone());
            async move { forward(request, &client, &upstream, &state).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint,
            counts,
            task,
        })
    }

    /// The URL clients use instead of moto's.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The next `times` calls of `operation` (for example `"TransactWriteItems"`) fail with
    /// `fault` (after any faults planned before).
    pub fn inject(&self, operation: &str, fault: Fault, times: u32) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let planned = counts.planned.entry(operation.to_owned()).or_default();
        planned.extend(std::iter::repeat_n(fault, times as usize));
    }

    /// Calls of `operation` answered with an injected fault so far.
    pub fn injected(&self, operation: &str) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.injected.get(operation).copied().unwrap_or(0)
    }

    /// Calls of `operation` passed through to moto so far.
    pub fn passed(&self, operation: &str) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.passed.get(operation).copied().unwrap_or(0)
    }

    /// SDK configuration that sends every client through this proxy.
    pub async fn sdk_config(&self) -> aws_setup::SdkConfig {
        aws_setup::load_with_endpoint(&self.endpoint, None).await
    }
}

async fn forward(
    request: Request<Body>,
    client: &reqwest::Client,
    upstream: &str,
    state: &Mutex<Counts>,
) -> Response<Body> {
    let op = operation(request.headers());
    let fault = {
        let mut counts = state.lock().unwrap_or_else(|e| e.into_inner());
        let fault = counts.planned.get_mut(&op).and_then(|planned| {
            if planned.is_empty() {
                None
            } else {
                Some(planned.remove(0))
            }
        });
        let tally = if fault.is_some() {
            &mut counts.injected
        } else {
            &mut counts.passed
        };
        *tally.entry(op).or_default() += 1;
        fault
    };
    if let Some(fault) = fault {
        let (status, body) = fault.answer();
        return reply(status, "application/x-amz-json-1.0", Bytes::from(body));
    }
    match pass_through(request, client, upstream).await {
        Ok(response) => response,
        Err(error) => reply(
            StatusCode::BAD_GATEWAY,
            "text/plain",
            Bytes::from(format!("fault proxy: upstream failed: {error}")),
        ),
    }
}

/// Sends `request` on to `upstream` as it came (but for its `Host` and length) and returns the
/// upstream's answer as it came.
pub async fn pass_through(
    request: Request<Body>,
    client: &reqwest::Client,
    upstream: &str,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut outgoing = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.body(body).send().await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != header::TRANSFER_ENCODING && name != header::CONTENT_LENGTH {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await?;
    Ok(response.body(Body::from(bytes))?)
}

/// A response with `status`, `content_type` and `body`.
pub fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
