//! The async-invoke job model.
//!
//! A job is submitted through the API (its id is the API request id), run by the processor
//! function from an asynchronous invoke, and recorded in the jobs table as it moves through
//! `RUNNING` → `SUCCEEDED`, or `FAILED` when the error handler receives the failed invoke. Every
//! transition is a conditional write, so the at-least-once delivery of asynchronous invokes never
//! moves a finished job backwards.
//!
//! The work itself is behind [`Job`]: swap [`SleepJob`] for real work.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use dynamo_writer::{Backoff, CallFailed};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Partition key of the jobs table.
pub const KEY_ATTRIBUTE: &str = "jobId";
/// Longest job the sample accepts, in seconds (keep it below the processor's timeout).
pub const MAX_SECONDS: u64 = 600;

/// What the processor receives: the API's request template builds it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRequest {
    /// The job id (the API request id).
    pub job_id: String,
    /// The job's parameters, as the client sent them.
    pub parameters: Value,
}

/// Parameters of the sample job (`{"seconds": <integer ≥ 1>}`, plus an optional `failure` that
/// makes the job fail with that message, to try the failure path).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepParameters {
    /// How long the job sleeps.
    pub seconds: u64,
    /// If set, the job fails with this message after sleeping.
    #[serde(default)]
    pub failure: Option<String>,
}

/// Why a job did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The parameters are not valid for the job.
    #[error("invalid job parameters: {0}")]
    InvalidParameters(String),
    /// The job ran and failed.
    #[error("job failed: {0}")]
    Failed(String),
}

/// A unit of work run by the processor.
pub trait Job: Send + Sync {
    /// Runs the job with `parameters`; its answer is stored as the job's result.
    fn run<'a>(&'a self, parameters: &'a Value) -> BoxFuture<'a, Result<Value, JobError>>;
}

/// The sample job: sleeps `seconds`, then answers `{"sleptSeconds": seconds}`.
#[derive(Debug, Clone, Default)]
pub struct SleepJob;

impl SleepJob {
    /// Validates parameters again (the API validated them too: never trust one layer alone).
    pub fn parameters(parameters: &Value) -> Result<SleepParameters, JobError> {
        let p: SleepParameters = serde_json::from_value(parameters.clone())
            .map_err(|e| JobError::InvalidParameters(e.to_string()))?;
        if !(1..=MAX_SECONDS).contains(&p.seconds) {
            return Err(JobError::InvalidParameters(format!(
                "seconds must be 1-{MAX_SECONDS}"
            )));
        }
        Ok(p)
    }
}

impl Job for SleepJob {
    fn run<'a>(&'a self, parameters: &'a Value) -> BoxFuture<'a, Result<Value, JobError>> {
        Box::pin(async move {
            let p = Self::parameters(parameters)?;
            tokio::time::sleep(Duration::from_secs(p.seconds)).await;
            match p.failure {
                Some(message) => Err(JobError::Failed(message)),
                None => Ok(serde_json::json!({ "sleptSeconds": p.seconds })),
            }
        })
    }
}

/// The failure the error handler records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `errorMessage` of the last attempt.
    pub message: String,
    /// `errorType` of the last attempt.
    pub error_type: String,
    /// Attempts made (`approximateInvokeCount`).
    pub attempts: u64,
    /// Why Lambda gave up (`RetriesExhausted`, `EventAgeExceeded`).
    pub condition: String,
}

/// What a conditional transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The job moved to the new state.
    Applied,
    /// The job was already past it (a duplicate or late delivery): nothing changed.
    Skipped,
}

/// Errors writing the jobs table.
#[derive(Debug, thiserror::Error)]
#[error("jobs table write failed")]
pub struct StoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The jobs table.
pub trait JobStore: Send + Sync {
    /// Records `RUNNING` unless the job already finished.
    fn start(&self, request: &JobRequest) -> BoxFuture<'_, Result<Transition, StoreError>>;
    /// Records `SUCCEEDED` with `result`, only from `RUNNING`.
    fn succeed(
        &self,
        job_id: &str,
        result: &Value,
    ) -> BoxFuture<'_, Result<Transition, StoreError>>;
    /// Records `FAILED` with the error, unless the job succeeded.
    fn fail(
        &self,
        request: &JobRequest,
        failure: &Failure,
    ) -> BoxFuture<'_, Result<Transition, StoreError>>;
}

/// [`JobStore`] on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbJobs {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbJobs {
    /// Jobs in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn update(
        &self,
        job_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(job_id.to_owned()))
            .expression_attribute_names("#s", "status")
    }
}

fn now_millis() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
        .to_string()
}

fn outcome(
    result: Result<impl Sized, SdkError<UpdateItemError>>,
) -> Result<Transition, StoreError> {
    match result {
        Ok(_) => Ok(Transition::Applied),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(UpdateItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(Transition::Skipped)
        }
        Err(e) => Err(StoreError(Box::new(CallFailed::new("UpdateItem", e)))),
    }
}

impl JobStore for DynamoDbJobs {
    fn start(&self, request: &JobRequest) -> BoxFuture<'_, Result<Transition, StoreError>> {
        let call = self
            .update(&request.job_id)
            .update_expression(
                "SET #s = :running, #p = :p, #st = :now, #a = if_not_exists(#a, :zero) + :one",
            )
            .condition_expression("attribute_not_exists(#k) OR #s = :running")
            .expression_attribute_names("#k", KEY_ATTRIBUTE)
            .expression_attribute_names("#p", "parameters")
            .expression_attribute_names("#st", "startedAt")
            .expression_attribute_names("#a", "attempts")
            .expression_attribute_values(":running", AttributeValue::S("RUNNING".into()))
            .expression_attribute_values(":p", AttributeValue::S(request.parameters.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_millis()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()));
        Box::pin(async move {
            outcome(
                Backoff::CONSUMER
                    .run("UpdateItem", || call.clone().send())
                    .await,
            )
        })
    }

    fn succeed(
        &self,
        job_id: &str,
        result: &Value,
    ) -> BoxFuture<'_, Result<Transition, StoreError>> {
        let call = self
            .update(job_id)
            .update_expression("SET #s = :done, #r = :r, #f = :now")
            .condition_expression("#s = :running")
            .expression_attribute_names("#r", "result")
            .expression_attribute_names("#f", "finishedAt")
            .expression_attribute_values(":done", AttributeValue::S("SUCCEEDED".into()))
            .expression_attribute_values(":running", AttributeValue::S("RUNNING".into()))
            .expression_attribute_values(":r", AttributeValue::S(result.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now_millis()));
        Box::pin(async move {
            outcome(
                Backoff::CONSUMER
                    .run("UpdateItem", || call.clone().send())
                    .await,
            )
        })
    }

    fn fail(
        &self,
        request: &JobRequest,
        failure: &Failure,
    ) -> BoxFuture<'_, Result<Transition, StoreError>> {
        let call = self
            .update(&request.job_id)
            .update_expression(
                "SET #s = :failed, #p = :p, #m = :m, #t = :t, #a = :a, #c = :c, #f = :now",
            )
            .condition_expression("attribute_not_exists(#k) OR #s <> :succeeded")
            .expression_attribute_names("#k", KEY_ATTRIBUTE)
            .expression_attribute_names("#p", "parameters")
            .expression_attribute_names("#m", "errorMessage")
            .expression_attribute_names("#t", "errorType")
            .expression_attribute_names("#a", "attempts")
            .expression_attribute_names("#c", "failureCondition")
            .expression_attribute_names("#f", "finishedAt")
            .expression_attribute_values(":failed", AttributeValue::S("FAILED".into()))
            .expression_attribute_values(":succeeded", AttributeValue::S("SUCCEEDED".into()))
            .expression_attribute_values(":p", AttributeValue::S(request.parameters.to_string()))
            .expression_attribute_values(":m", AttributeValue::S(failure.message.clone()))
            .expression_attribute_values(":t", AttributeValue::S(failure.error_type.clone()))
            .expression_attribute_values(":a", AttributeValue::N(failure.attempts.to_string()))
            .expression_attribute_values(":c", AttributeValue::S(failure.condition.clone()))
            .expression_attribute_values(":now", AttributeValue::N(now_millis()));
        Box::pin(async move {
            outcome(
                Backoff::CONSUMER
                    .run("UpdateItem", || call.clone().send())
                    .await,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sleep_parameters_are_validated_again() {
        assert!(SleepJob::parameters(&json!({"seconds": 1})).is_ok());
        for bad in [
            json!({}),
            json!({"seconds": 0}),
            json!({"seconds": -1}),
            json!({"seconds": "1"}),
            json!({"seconds": 1, "extra": true}),
            json!({"seconds": MAX_SECONDS + 1}),
            json!("x"),
        ] {
            assert!(
                matches!(
                    SleepJob::parameters(&bad),
                    Err(JobError::InvalidParameters(_))
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn sleep_job_answers_or_fails_as_asked() {
        let ok = SleepJob
            .run(&json!({"seconds": 1}))
            .await
            .expect("succeeds");
        assert_eq!(ok, json!({"sleptSeconds": 1}));
        let err = SleepJob
            .run(&json!({"seconds": 1, "failure": "boom"}))
            .await;
        assert!(matches!(err, Err(JobError::Failed(m)) if m == "boom"));
    }
}
