//! async-invoke error handler: records a job as `FAILED` with its parameters and the error.
//!
//! It is the processor's on-failure destination, so it receives Lambda's destination record:
//! `requestContext` (condition, approximate invoke count), `requestPayload` (the job request) and
//! `responsePayload` (`errorMessage`, `errorType`). If it cannot record the failure, it fails
//! itself, and its own on-failure destination (an EventBridge bus with an archive) keeps the event
//! for replay.

use std::sync::Arc;

use async_invoke_jobs::{DynamoDbJobs, Failure, JobRequest, JobStore, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

pub use config::{Config, ConfigError};

/// Settings: the jobs table.
mod config {
    /// Settings of the error handler, read once at start-up.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Config {
        /// The jobs table.
        pub table_name: String,
    }

    /// A required environment variable is missing.
    #[derive(Debug, thiserror::Error)]
    #[error("environment variable {0} is required")]
    pub struct ConfigError(pub &'static str);

    impl Config {
        /// Reads `TABLE_NAME` from the environment.
        pub fn from_env() -> Result<Self, ConfigError> {
            Self::from_lookup(|name| std::env::var(name).ok())
        }

        /// Reads the settings through `lookup`.
        pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
            let table_name = lookup("TABLE_NAME")
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError("TABLE_NAME"))?;
            Ok(Self { table_name })
        }
    }
}

/// `requestContext` of a destination record.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
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

impl DestinationRecord {
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
        }
    }
}

/// The error handler, built once per execution environment.
#[derive(Clone)]
pub struct ErrorHandler {
    store: Arc<dyn JobStore>,
}

impl std::fmt::Debug for ErrorHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorHandler").finish_non_exhaustive()
    }
}

impl ErrorHandler {
    /// A handler recording to `store`.
    pub fn new(store: Arc<dyn JobStore>) -> Self {
        Self { store }
    }

    /// A handler recording to the table named in `config`.
    pub fn from_config(config: &Config, client: aws_sdk_dynamodb::Client) -> Self {
        Self::new(Arc::new(DynamoDbJobs::new(
            client,
            config.table_name.clone(),
        )))
    }

    /// Records the failed job.
    pub async fn handle(&self, record: DestinationRecord) -> Result<Value, StoreError> {
        let failure = record.failure();
        let transition = self.store.fail(&record.request_payload, &failure).await?;
        tracing::info!(
            job_id = %record.request_payload.job_id,
            condition = %failure.condition,
            attempts = failure.attempts,
            transition = ?transition,
            "job failure recorded"
        );
        Ok(json!({ "jobId": record.request_payload.job_id, "status": "FAILED" }))
    }
}
