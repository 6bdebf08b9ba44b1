//! A stand-in for DynamoDB, Secrets Manager and EventBridge on loopback, for the functions the
//! bench runs: every call succeeds after a fixed delay that stands for the network round trip
//! (zero unless a measurement sets one), and is counted.
//!
//! It answers the JSON protocols the SDKs speak to these services (`X-Amz-Target` names the
//! operation): `PutItem`, `UpdateItem`, `TransactWriteItems` and `DeleteItem` with `{}` (every
//! output member is optional, and no item is returned), `GetItem` with `{}` (no such item),
//! `DescribeEndpoints` with the regional endpoint (the functions' connection during init),
//! `GetSecretValue` with the credentials of the sample events, and `PutEvents` with one entry
//! id per entry sent. Anything else gets a 400 naming the operation, so a function that needs
//! more fails its check instead of being measured on a wrong answer.
//!
//! moto is not used here on purpose: its own time per call (Python, a lock per request) would be
//! most of what is measured, and the same for every language, which would hide the functions'
//! differences. Against moto, and through the whole stack, the functions are what `make test`
//! checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The user name and password the sample authorizer events carry (events/*/authorizer-allow.json).
pub const SECRET: &str = r#"{"username":"api-user","password":"local-password"}"#;

#[derive(Debug, Default)]
struct State {
    delay_us: AtomicU64,
    calls: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

/// The running stand-in.
#[derive(Debug)]
pub struct StubAws {
    endpoint: String,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StubAws {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Counts since the last [`StubAws::reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Calls answered.
    pub calls: u64,
    /// Most calls in flight at once.
    pub max_in_flight: u64,
}

impl StubAws {
    /// Starts it on a free loopback port.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("no loopback port for the AWS stand-in")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State::default());
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let state = shared.clone();
            async move { answer(&state, &headers, &body).await }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint,
            state,
            server,
        })
    }

    /// The endpoint URL the functions are given (`AWS_ENDPOINT_URL`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Every call from now on waits `delay` before it is answered.
    pub fn set_delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state.delay_us.store(us, Ordering::Relaxed);
    }

    /// Starts the counts anew.
    pub fn reset(&self) {
        self.state.calls.store(0, Ordering::Relaxed);
        self.state.max_in_flight.store(0, Ordering::Relaxed);
    }

    /// The counts since the last reset.
    pub fn counts(&self) -> Counts {
        Counts {
            calls: self.state.calls.load(Ordering::Relaxed),
            max_in_flight: self.state.max_in_flight.load(Ordering::Relaxed),
        }
    }
}

async fn answer(state: &State, headers: &HeaderMap, body: &[u8]) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
    state.max_in_flight.fetch_max(now, Ordering::Relaxed);
    let delay = Duration::from_micros(state.delay_us.load(Ordering::Relaxed));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let operation = target.rsplit('.').next().unwrap_or_default();
    let reply = match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "GetItem" => Ok(json!({})),
        "DescribeEndpoints" => Ok(json!({
            "Endpoints": [{"Address": "dynamodb.us-east-1.amazonaws.com", "CachePeriodInMinutes": 1440}],
        })),
        "GetSecretValue" => {
            let id = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["SecretId"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Ok(json!({
                "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{id}"),
                "Name": id,
                "SecretString": SECRET,
                "VersionId": "00000000-0000-0000-0000-000000000001",
            }))
        }
        "PutEvents" => {
            let sent = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["Entries"].as_array().map(Vec::len))
                .unwrap_or(0);
            let entries: Vec<Value> = (0..sent)
                .map(|n| json!({"EventId": format!("bench-event-{n}")}))
                .collect();
            Ok(json!({"FailedEntryCount": 0, "Entries": entries}))
        }
        _ => Err(json!({
            "__type": "UnknownOperationException",
            "message": format!("the bench's AWS stand-in does not answer {target:?}"),
        })),
    };
    state.calls.fetch_add(1, Ordering::Relaxed);
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    let (status, body) = match reply {
        Ok(body) => (StatusCode::OK, body),
        Err(body) => (StatusCode::BAD_REQUEST, body),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_answered_after_the_delay_and_counted_with_their_overlap() {
        let stub = StubAws::start().await.expect("starts");
        // Long enough that the second call arrives while the first waits, however slow the machine.
        stub.set_delay(Duration::from_secs(1));
        let client = reqwest::Client::new();
        let put = || {
            client
                .post(stub.endpoint())
                .header("x-amz-target", "DynamoDB_20120810.PutItem")
                .body("{}")
                .send()
        };
        let started = std::time::Instant::now();
        let (a, b) = tokio::join!(put(), put());
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(a.expect("answers").status(), 200);
        assert_eq!(b.expect("answers").status(), 200);
        assert_eq!(stub.counts().calls, 2);
        assert_eq!(stub.counts().max_in_flight, 2);
        stub.reset();
        assert_eq!(stub.counts().calls, 0);
    }

    #[tokio::test]
    async fn an_operation_it_does_not_know_is_refused_by_name() {
        let stub = StubAws::start().await.expect("starts");
        let answer = reqwest::Client::new()
            .post(stub.endpoint())
            .header("x-amz-target", "DynamoDB_20120810.Scan")
            .body("{}")
            .send()
            .await
            .expect("answers");
        assert_eq!(answer.status(), 400);
        let text = answer.text().await.expect("body");
        assert!(text.contains("DynamoDB_20120810.Scan"), "{text}");
    }

    #[tokio::test]
    async fn the_secret_and_put_events_answers_have_the_shape_the_sdks_read() {
        let stub = StubAws::start().await.expect("starts");
        let client = reqwest::Client::new();
        let secret: Value = client
            .post(stub.endpoint())
            .header("x-amz-target", "secretsmanager.GetSecretValue")
            .body(r#"{"SecretId":"s"}"#)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(secret["Name"], "s");
        assert_eq!(secret["SecretString"], SECRET);
        let events: Value = client
            .post(stub.endpoint())
            .header("x-amz-target", "AWSEvents.PutEvents")
            .body(r#"{"Entries":[{},{}]}"#)
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("JSON");
        assert_eq!(events["Entries"].as_array().map(Vec::len), Some(2));
    }
}
