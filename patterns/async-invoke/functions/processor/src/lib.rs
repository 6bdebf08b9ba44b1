//! async-invoke processor: runs a job delivered by an asynchronous invoke and records its progress.
//!
//! It records `RUNNING` first (conditionally: a redelivered event never resets a finished job),
//! runs the [`Job`], and records `SUCCEEDED` with the result. A failing job is a function error:
//! Lambda retries it as the function's `EventInvokeConfig` says, then hands the event to the
//! on-failure destination (the error handler).

use std::sync::Arc;

use async_invoke_jobs::{
    DynamoDbJobs, Job, JobError, JobRequest, JobStore, SleepJob, StoreError, Transition,
};
use aws_setup::ErrorChain;
use serde_json::{Value, json};

/// Settings of the processor, read once at start-up: its table.
pub use dynamo_writer::{MissingVariable as ConfigError, TableConfig as Config};

/// Why processing failed (a Lambda function error, retried by Lambda).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The job failed or its parameters are invalid.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The jobs table could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The processor, built once per execution environment.
#[derive(Clone)]
pub struct Processor {
    store: Arc<dyn JobStore>,
    job: Arc<dyn Job>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").finish_non_exhaustive()
    }
}

impl Processor {
    /// A processor recording to `store` and running `job`.
    pub fn new(store: Arc<dyn JobStore>, job: Arc<dyn Job>) -> Self {
        Self { store, job }
    }

    /// The sample processor: [`SleepJob`] on the table named in `config`.
    pub fn from_config(config: &Config, client: aws_sdk_dynamodb::Client) -> Self {
        Self::new(
            Arc::new(DynamoDbJobs::new(client, config.table_name.clone())),
            Arc::new(SleepJob),
        )
    }

    /// Runs one job request.
    pub async fn handle(&self, request: JobRequest) -> Result<Value, ProcessError> {
        let logged = |error: &StoreError| {
            tracing::warn!(job_id = %request.job_id, error = %ErrorChain(error), "jobs table write failed");
        };
        if self.store.start(&request).await.inspect_err(logged)? == Transition::Skipped {
            tracing::info!(job_id = %request.job_id, "job already finished; duplicate delivery ignored");
            return Ok(json!({ "jobId": request.job_id, "skipped": true }));
        }
        let result = self
            .job
            .run(&request.parameters)
            .await
            .inspect_err(|error| {
                tracing::warn!(job_id = %request.job_id, error = %ErrorChain(error), "job failed");
            })?;
        self.store
            .succeed(&request.job_id, &result)
            .await
            .inspect_err(logged)?;
        tracing::info!(job_id = %request.job_id, "job succeeded");
        Ok(json!({ "jobId": request.job_id, "status": "SUCCEEDED" }))
    }
}
