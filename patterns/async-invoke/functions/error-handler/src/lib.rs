//! async-invoke error handler: records a job as `FAILED` with its parameters and the error.
//!
//! It is the processor's on-failure destination, so it receives Lambda's destination record:
//! `requestContext` (request id, condition, approximate invoke count), `requestPayload` (the job
//! request) and `responsePayload` (`errorMessage`, `errorType`). If it cannot record the failure,
//! it fails itself, and its own on-failure destination (an EventBridge bus with an archive) keeps
//! the event for replay.
//!
//! A failure is not recorded over a success, nor over a job another run holds under a live lease
//! (that run will record its own outcome); a lease held under the record's own request id is the
//! failed invocation's, and an expired or released lease is nobody's.
//!
//! The job id is API Gateway's request id: every log line about the job carries it as the field
//! `apiRequestId` beside `job_id` (`request_id` is the failed invocation's Lambda request id),
//! and the job record stores it as the attribute `apiRequestId`. Every invocation writes one EMF
//! document ([`batch_metrics`]): the failure recorded (stored), not recorded because the job
//! succeeded or is held by a live run (duplicate), an event that is no destination record
//! (invalid), or a table write that failed.

use std::sync::Arc;

use async_invoke_jobs::{DynamoDbJobs, Failure, JobRequest, JobStore, StoreError, Transition};
use batch_metrics::{Function, Invocation, Metrics, Outcome, Pattern};
use serde::Deserialize;
use serde_json::{Value, json};

/// Settings of the error handler, read once at start-up: its table.
pub use dynamo_writer::{MissingVariable as ConfigError, TableConfig as Config};

/// `requestContext` of a destination record.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// The failed invocation's request id.
    #[serde(default)]
    pub request_id: Option<String>,
    /// `RetriesExhausted` or `EventAgeExceeded`.
    #[serde(default)]
    pub condition: String,
    /// Attempts made.
    #[serde(default)]
    pub approximate_invoke_count: u64,
}

/// Lambda's on-failure destination record for an asynchronous invoke.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRecord {
    /// Why and how often.
    pub request_context: RequestContext,
    /// The original event.
    pub request_payload: JobRequest,
    /// The last error (`errorMessage`, `errorType`).
    #[serde(default)]
    pub response_payload: Option<Value>,
}

/// How many EventBridge envelopes [`DestinationRecord::from_event`] opens at most. Each replay
/// that fails again adds one (the replayed event becomes the `requestPayload` of the handler's
/// own failure, which is archived and replayed in turn); eight is far beyond any real chain, and
/// a bound keeps a malformed or looping event from being chased forever.
pub const MAX_ENVELOPES: usize = 8;

/// Why an event is not a destination record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The (innermost) event does not have the shape of a destination record.
    #[error("event is not a Lambda destination record")]
    NotARecord(#[source] serde_json::Error),
    /// More EventBridge envelopes than [`MAX_ENVELOPES`].
    #[error("event is wrapped in more than {MAX_ENVELOPES} EventBridge envelopes")]
    TooDeep,
}

impl DestinationRecord {
    /// Reads the record from what the handler was invoked with: the destination record itself
    /// (from Lambda), or an EventBridge event replayed from the failure archive, whose `detail`
    /// is the destination record of the handler's own failed invoke, and whose
    /// `detail.requestPayload` is therefore the original record. If the replayed invoke failed
    /// too and was replayed again, that `requestPayload` is itself such an event: envelopes are
    /// opened until the record appears, at most [`MAX_ENVELOPES`] of them.
    pub fn from_event(event: Value) -> Result<Self, RecordError> {
        let mut event = event;
        let mut opened = 0;
        while event.get("detail-type").is_some() {
            if opened == MAX_ENVELOPES {
                return Err(RecordError::TooDeep);
            }
            event = match event {
                Value::Object(mut envelope) => envelope
                    .remove("detail")
                    .and_then(|detail| match detail {
                        Value::Object(mut detail) => detail.remove("requestPayload"),
                        _ => None,
                    })
                    .unwrap_or(Value::Null),
                _ => Value::Null,
            };
            opened += 1;
        }
        serde_json::from_value(event).map_err(RecordError::NotARecord)
    }

    /// The failure to record.
    pub fn failure(&self) -> Failure {
        let field = |k: &str| {
            self.response_payload
                .as_ref()
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Failure {
            message: field("errorMessage"),
            error_type: field("errorType"),
            attempts: self.request_context.approximate_invoke_count,
            condition: self.request_context.condition.clone(),
            request_id: self
                .request_context
                .request_id
                .clone()
                .filter(|id| !id.is_empty()),
        }
    }
}

/// Why the error handler failed (Lambda then retries it, and finally sends the event to its own
/// on-failure destination, the EventBridge archive).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is neither a destination record nor a replayed one.
    #[error(transparent)]
    NotARecord(#[from] RecordError),
    /// The jobs table could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How Lambda reports the failure in the record the EventBridge archive keeps (and to a
/// synchronous caller): `errorType` names the kind (`NotARecord`, `StoreError`), `errorMessage`
/// carries the whole cause chain. (The runtime's default would be a Rust type name.)
impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::NotARecord(_) => "NotARecord",
            HandlerError::Store(_) => "StoreError",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: aws_setup::ErrorChain(&error).to_string(),
        }
    }
}

/// The error handler, built once per execution environment.
#[derive(Clone)]
pub struct ErrorHandler {
    store: Arc<dyn JobStore>,
    metrics: Metrics,
}

impl std::fmt::Debug for ErrorHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorHandler").finish_non_exhaustive()
    }
}

impl ErrorHandler {
    /// A handler recording to `store`, writing no metrics ([`ErrorHandler::with_metrics`]).
    pub fn new(store: Arc<dyn JobStore>) -> Self {
        Self {
            store,
            metrics: Metrics::disabled(Pattern::AsyncInvoke, Function::ErrorHandler),
        }
    }

    /// The same handler, writing one document per invocation to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// A handler recording to the table named in `config`.
    pub fn from_config(config: &Config, client: aws_sdk_dynamodb::Client) -> Self {
        Self::new(Arc::new(DynamoDbJobs::new(
            client,
            config.table_name.clone(),
        )))
    }

    /// Records the failed job described by `event` (a destination record, or a replayed
    /// EventBridge event carrying one); writes the invocation's metrics before it answers.
    pub async fn handle_event(&self, event: Value) -> Result<Value, HandlerError> {
        let metrics = self.metrics.invocation();
        let record = DestinationRecord::from_event(event).inspect_err(|_| {
            metrics.count(Outcome::Invalid);
        })?;
        Ok(self.record(record, &metrics).await?)
    }

    /// Records the failed job; writes the invocation's metrics before it answers.
    pub async fn handle(&self, record: DestinationRecord) -> Result<Value, StoreError> {
        let metrics = self.metrics.invocation();
        self.record(record, &metrics).await
    }

    async fn record(
        &self,
        record: DestinationRecord,
        metrics: &Invocation,
    ) -> Result<Value, StoreError> {
        let failure = record.failure();
        let job_id = &record.request_payload.job_id;
        let transition = metrics
            .time_writes(self.store.fail(&record.request_payload, &failure))
            .await
            .inspect_err(|error| {
                metrics.count(Outcome::Failed);
                tracing::warn!(
                    job_id = %job_id,
                    apiRequestId = %job_id,
                    error = %aws_setup::ErrorChain(error),
                    "jobs table write failed"
                );
            })?;
        let request_id = failure.request_id.as_deref().unwrap_or_default();
        match transition {
            Transition::Applied => {
                metrics.count(Outcome::Stored);
                tracing::info!(
                    job_id = %job_id,
                    apiRequestId = %job_id,
                    request_id,
                    condition = %failure.condition,
                    attempts = failure.attempts,
                    "job failure recorded"
                );
                Ok(json!({ "jobId": job_id, "status": "FAILED" }))
            }
            Transition::Skipped => {
                metrics.count(Outcome::Duplicate);
                tracing::info!(
                    job_id = %job_id,
                    apiRequestId = %job_id,
                    request_id,
                    "job succeeded or is held by another live run; failure not recorded"
                );
                Ok(json!({ "jobId": job_id, "skipped": true }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Value {
        json!({"version": "1.0", "requestContext": {"requestId": "inv-1", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
               "requestPayload": {"jobId": "j1", "parameters": {"seconds": 1}},
               "responsePayload": {"errorMessage": "job failed: boom", "errorType": "JobError"}})
    }

    #[test]
    fn reads_a_destination_record_and_a_replayed_eventbridge_event() {
        let direct = DestinationRecord::from_event(record()).expect("record");
        assert_eq!(direct.request_payload.job_id, "j1");
        assert_eq!(direct.failure().attempts, 3);
        assert_eq!(direct.failure().message, "job failed: boom");
        assert_eq!(direct.failure().request_id.as_deref(), Some("inv-1"));
        let replayed = json!({"detail-type": "Lambda Function Invocation Result - Failure", "source": "lambda",
                              "replay-name": "r1", "detail": {"requestPayload": record()}});
        let unwrapped = DestinationRecord::from_event(replayed).expect("record");
        assert_eq!(unwrapped.request_payload.job_id, "j1");
        assert!(matches!(
            DestinationRecord::from_event(json!({"hello": 1})),
            Err(RecordError::NotARecord(_))
        ));
    }

    /// `record` wrapped in `depth` archived-and-replayed failures of the error handler.
    fn wrapped(depth: usize) -> Value {
        (0..depth).fold(record(), |inner, n| {
            json!({"detail-type": "Lambda Function Invocation Result - Failure", "source": "lambda",
                   "replay-name": format!("r{n}"),
                   "detail": {"requestContext": {"requestId": format!("handler-{n}")},
                              "requestPayload": inner,
                              "responsePayload": {"errorMessage": "jobs table write failed"}}})
        })
    }

    #[test]
    fn a_replay_of_a_replay_is_unwrapped_to_the_original_record() {
        for depth in 2..=MAX_ENVELOPES {
            let unwrapped = DestinationRecord::from_event(wrapped(depth)).expect("record");
            assert_eq!(unwrapped.request_payload.job_id, "j1", "depth {depth}");
            assert_eq!(
                unwrapped.failure().message,
                "job failed: boom",
                "the processor's error, not the handler's"
            );
            assert_eq!(
                unwrapped.failure().request_id.as_deref(),
                Some("inv-1"),
                "the processor's invocation, not the handler's"
            );
        }
    }

    fn counts(captured: &batch_metrics::Captured) -> batch_metrics::Counts {
        let written = captured.only().expect("one document");
        assert_eq!(written.document["Pattern"], "async-invoke");
        assert_eq!(written.document["Function"], "error-handler");
        written.counts
    }

    #[tokio::test]
    async fn each_invocation_writes_one_document_naming_how_its_record_ended() {
        use async_invoke_jobs::{Lease, MemoryJobs};
        use batch_metrics::Counts;
        let store = Arc::new(MemoryJobs::new());
        let (metrics, captured) = batch_metrics::Metrics::capture(
            "AsyncApiPatterns",
            Pattern::AsyncInvoke,
            Function::ErrorHandler,
        );
        let handler = ErrorHandler::new(store.clone()).with_metrics(metrics);
        handler.handle_event(record()).await.expect("recorded");
        assert_eq!(
            counts(&captured),
            Counts {
                stored: 1,
                ..Default::default()
            }
        );
        // Another job, held by a live run of another invocation: not recorded over it.
        let request = JobRequest {
            job_id: "j2".into(),
            parameters: json!({}),
        };
        store
            .start(
                &request,
                &Lease::new("live", std::time::Duration::from_secs(60), None),
            )
            .await
            .expect("start");
        let mut held = record();
        held["requestPayload"]["jobId"] = json!("j2");
        handler.handle_event(held).await.expect("skipped");
        assert_eq!(
            counts(&captured),
            Counts {
                duplicate: 1,
                ..Default::default()
            }
        );
        assert!(handler.handle_event(json!({"hello": 1})).await.is_err());
        assert_eq!(
            counts(&captured),
            Counts {
                invalid: 1,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn every_line_about_a_job_carries_its_id_as_the_api_request_id() {
        let store = Arc::new(async_invoke_jobs::MemoryJobs::new());
        let handler = ErrorHandler::new(store);
        let (logs, _guard) = aws_setup::CapturedLogs::start();
        handler.handle_event(record()).await.expect("recorded");
        handler
            .handle_event(wrapped(3))
            .await
            .expect("recorded again");
        let text = logs.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert_eq!(line["fields"]["apiRequestId"], "j1", "{line}");
            assert_eq!(line["fields"]["request_id"], "inv-1", "{line}");
        }
    }

    #[test]
    fn more_envelopes_than_the_bound_are_refused_clearly() {
        let error =
            DestinationRecord::from_event(wrapped(MAX_ENVELOPES + 1)).expect_err("too deep");
        assert!(matches!(error, RecordError::TooDeep));
        assert_eq!(
            error.to_string(),
            "event is wrapped in more than 8 EventBridge envelopes"
        );
        let hollow =
            json!({"detail-type": "x", "detail": {"requestPayload": {"detail-type": "y"}}});
        assert!(matches!(
            DestinationRecord::from_event(hollow),
            Err(RecordError::NotARecord(_))
        ));
    }
}
