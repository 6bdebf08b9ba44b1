//! The async-invoke job model.
//!
//! A job is submitted through the API (its id is the API request id), run by the processor
//! function from an asynchronous invoke, and recorded in the jobs table as it moves through
//! `RUNNING` → `SUCCEEDED`, or `FAILED` when the error handler receives the failed invoke. Every
//! transition is a conditional write, so the at-least-once delivery of asynchronous invokes never
//! moves a finished job backwards.
//!
//! A run holds a **lease** on its job: `RUNNING` is recorded with `leaseOwner` (the invocation's
//! request id) and `leaseExpiresAt` (milliseconds since the epoch; no later than the
//! invocation's own deadline, so a lease never outlives the run that holds it). While it is live,
//! no delivery of the job under another request id starts it ([`JobStore::start`]; a retry under
//! the owner's own id is Lambda retrying a try that ended), the error handler records no
//! failure over it unless the failure is the owner's own ([`JobStore::fail`]), and only the owner
//! records success ([`JobStore::succeed`]). A run whose job fails gives its lease back
//! ([`JobStore::release`]) so that Lambda's retry can take the job at once.
//!
//! The job id is API Gateway's request id, so every write also records it as the String
//! attribute `apiRequestId` ([`API_REQUEST_ID`]), the name the other patterns' items and every
//! function's log lines give that id.
//!
//! The work itself is behind [`Job`]: swap [`SleepJob`] for real work. The table is behind
//! [`JobStore`]: [`DynamoDbJobs`] (tested against moto) and [`MemoryJobs`] (for logic tests).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use dynamo_writer::{Backoff, CallFailed};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Partition key of the jobs table.
pub const KEY_ATTRIBUTE: &str = "jobId";
/// Attribute (and log field) holding the API Gateway request id, which is the job id.
pub const API_REQUEST_ID: &str = "apiRequestId";
/// Longest job the sample accepts, in seconds (keep it below the processor's timeout).
pub const MAX_SECONDS: u64 = 600;

/// `status` of a job that is running (under a lease).
pub const RUNNING: &str = "RUNNING";
/// `status` of a job that succeeded.
pub const SUCCEEDED: &str = "SUCCEEDED";
/// `status` of a job that failed.
pub const FAILED: &str = "FAILED";

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
    /// Request id of the failed invocation (`requestContext.requestId` of the destination
    /// record): a live lease held under this id is the failed run's own.
    pub request_id: Option<String>,
}

/// The lease a run asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Who holds it: the invocation's request id.
    pub owner: String,
    /// When it ends, in milliseconds since the epoch.
    pub expires_at_millis: u64,
}

impl Lease {
    /// A lease for `owner` lasting `length` from now, but never past `deadline` (the
    /// invocation's own deadline, when known: a run cannot outlive it).
    pub fn new(owner: impl Into<String>, length: Duration, deadline: Option<SystemTime>) -> Self {
        let mut expires = SystemTime::now() + length;
        if let Some(deadline) = deadline {
            expires = expires.min(deadline);
        }
        Self {
            owner: owner.into(),
            expires_at_millis: millis(expires),
        }
    }
}

/// What [`JobStore::start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The job is new, or its lease had expired: this run holds the lease now.
    Started,
    /// The job finished, or another run holds a live lease on it: nothing changed. What the
    /// table held, for the log.
    Skipped(Holder),
}

/// What a job held when a transition was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    /// Its status.
    pub status: Option<String>,
    /// Its lease owner, if any.
    pub lease_owner: Option<String>,
    /// When that lease ends, in milliseconds since the epoch.
    pub lease_expires_at_millis: Option<u64>,
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
    /// Records `RUNNING` under `lease` if the job is new, or `RUNNING` with an expired (or
    /// released) lease, or with a lease of `lease.owner` itself: Lambda retries an asynchronous
    /// invoke under its request id once the try before has ended, and a try killed before it
    /// could release its lease (its process crashed, its environment was lost) left it live.
    /// Otherwise changes nothing and says what holds the job.
    fn start(
        &self,
        request: &JobRequest,
        lease: &Lease,
    ) -> BoxFuture<'_, Result<Start, StoreError>>;
    /// Records `SUCCEEDED` with `result`, only from `RUNNING` under `owner`'s lease.
    fn succeed(
        &self,
        job_id: &str,
        owner: &str,
        result: &Value,
    ) -> BoxFuture<'_, Result<Transition, StoreError>>;
    /// Ends `owner`'s lease early (its run failed), so that a retry may start the job at once.
    fn release(&self, job_id: &str, owner: &str) -> BoxFuture<'_, Result<Transition, StoreError>>;
    /// Records `FAILED` with the error, unless the job succeeded or another run holds a live
    /// lease on it (a lease held by `failure.request_id` is the failed run's own).
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

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn now_millis() -> u64 {
    millis(SystemTime::now())
}

fn number(millis: u64) -> AttributeValue {
    AttributeValue::N(millis.to_string())
}

/// Attribute names of the lease.
const LEASE_OWNER: &str = "leaseOwner";
const LEASE_EXPIRES_AT: &str = "leaseExpiresAt";

fn holder(item: Option<&HashMap<String, AttributeValue>>) -> Holder {
    let text = |name: &str| {
        item.and_then(|i| i.get(name))
            .and_then(|v| v.as_s().ok())
            .cloned()
    };
    Holder {
        status: text("status"),
        lease_owner: text(LEASE_OWNER),
        lease_expires_at_millis: item
            .and_then(|i| i.get(LEASE_EXPIRES_AT))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()),
    }
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
    fn start(
        &self,
        request: &JobRequest,
        lease: &Lease,
    ) -> BoxFuture<'_, Result<Start, StoreError>> {
        let call = self
            .update(&request.job_id)
            .update_expression(
                "SET #s = :running, #p = :p, #st = :now, #a = if_not_exists(#a, :zero) + :one, \
                 #lo = :owner, #le = :expires, #ar = :job",
            )
            .condition_expression(
                "attribute_not_exists(#k) OR (#s = :running AND (attribute_not_exists(#le) OR #le < :now OR #lo = :owner))",
            )
            .expression_attribute_names("#k", KEY_ATTRIBUTE)
            .expression_attribute_names("#p", "parameters")
            .expression_attribute_names("#st", "startedAt")
            .expression_attribute_names("#a", "attempts")
            .expression_attribute_names("#lo", LEASE_OWNER)
            .expression_attribute_names("#le", LEASE_EXPIRES_AT)
            .expression_attribute_values(":running", AttributeValue::S(RUNNING.into()))
            .expression_attribute_values(":p", AttributeValue::S(request.parameters.to_string()))
            .expression_attribute_values(":now", number(now_millis()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":owner", AttributeValue::S(lease.owner.clone()))
            .expression_attribute_values(":expires", number(lease.expires_at_millis))
            .expression_attribute_names("#ar", API_REQUEST_ID)
            .expression_attribute_values(":job", AttributeValue::S(request.job_id.clone()))
            // On a failed condition, DynamoDB answers with the item that failed it: the log can
            // say who holds the job, at no extra round trip.
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        Box::pin(async move {
            match Backoff::CONSUMER
                .run("UpdateItem", || call.clone().send())
                .await
            {
                Ok(_) => Ok(Start::Started),
                Err(e) => match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                        Ok(Start::Skipped(holder(failed.item())))
                    }
                    _ => Err(StoreError(Box::new(CallFailed::new("UpdateItem", e)))),
                },
            }
        })
    }

    fn succeed(
        &self,
        job_id: &str,
        owner: &str,
        result: &Value,
    ) -> BoxFuture<'_, Result<Transition, StoreError>> {
        let call = self
            .update(job_id)
            .update_expression("SET #s = :done, #r = :r, #f = :now REMOVE #le")
            .condition_expression("#s = :running AND #lo = :owner")
            .expression_attribute_names("#r", "result")
            .expression_attribute_names("#f", "finishedAt")
            .expression_attribute_names("#lo", LEASE_OWNER)
            .expression_attribute_names("#le", LEASE_EXPIRES_AT)
            .expression_attribute_values(":done", AttributeValue::S(SUCCEEDED.into()))
            .expression_attribute_values(":running", AttributeValue::S(RUNNING.into()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()))
            .expression_attribute_values(":r", AttributeValue::S(result.to_string()))
            .expression_attribute_values(":now", number(now_millis()));
        Box::pin(async move {
            outcome(
                Backoff::CONSUMER
                    .run("UpdateItem", || call.clone().send())
                    .await,
            )
        })
    }

    fn release(&self, job_id: &str, owner: &str) -> BoxFuture<'_, Result<Transition, StoreError>> {
        let call = self
            .update(job_id)
            .update_expression("REMOVE #le")
            .condition_expression("#s = :running AND #lo = :owner")
            .expression_attribute_names("#lo", LEASE_OWNER)
            .expression_attribute_names("#le", LEASE_EXPIRES_AT)
            .expression_attribute_values(":running", AttributeValue::S(RUNNING.into()))
            .expression_attribute_values(":owner", AttributeValue::S(owner.to_owned()));
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
        // Not over a success; not over a live lease of another run. A lease held under the
        // failed invocation's own request id is its own (its last try timed out a moment ago).
        let own_lease = if failure.request_id.is_some() {
            " OR #lo = :req"
        } else {
            ""
        };
        let mut call = self
            .update(&request.job_id)
            .update_expression(
                "SET #s = :failed, #p = :p, #m = :m, #t = :t, #a = :a, #c = :c, #f = :now, \
                 #ar = :job REMOVE #le",
            )
            .condition_expression(format!(
                "attribute_not_exists(#k) OR (#s <> :succeeded AND (#s <> :running \
                 OR attribute_not_exists(#le) OR #le < :now{own_lease}))"
            ))
            .expression_attribute_names("#k", KEY_ATTRIBUTE)
            .expression_attribute_names("#p", "parameters")
            .expression_attribute_names("#m", "errorMessage")
            .expression_attribute_names("#t", "errorType")
            .expression_attribute_names("#a", "attempts")
            .expression_attribute_names("#c", "failureCondition")
            .expression_attribute_names("#f", "finishedAt")
            .expression_attribute_names("#le", LEASE_EXPIRES_AT)
            .expression_attribute_values(":failed", AttributeValue::S(FAILED.into()))
            .expression_attribute_values(":succeeded", AttributeValue::S(SUCCEEDED.into()))
            .expression_attribute_values(":running", AttributeValue::S(RUNNING.into()))
            .expression_attribute_values(":p", AttributeValue::S(request.parameters.to_string()))
            .expression_attribute_values(":m", AttributeValue::S(failure.message.clone()))
            .expression_attribute_values(":t", AttributeValue::S(failure.error_type.clone()))
            .expression_attribute_values(":a", AttributeValue::N(failure.attempts.to_string()))
            .expression_attribute_values(":c", AttributeValue::S(failure.condition.clone()))
            .expression_attribute_values(":now", number(now_millis()))
            .expression_attribute_names("#ar", API_REQUEST_ID)
            .expression_attribute_values(":job", AttributeValue::S(request.job_id.clone()));
        if let Some(request_id) = &failure.request_id {
            call = call
                .expression_attribute_names("#lo", LEASE_OWNER)
                .expression_attribute_values(":req", AttributeValue::S(request_id.clone()));
        }
        Box::pin(async move {
            outcome(
                Backoff::CONSUMER
                    .run("UpdateItem", || call.clone().send())
                    .await,
            )
        })
    }
}

/// One job as [`MemoryJobs`] keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobRecord {
    /// `RUNNING`, `SUCCEEDED` or `FAILED`.
    pub status: String,
    /// Runs started.
    pub attempts: u64,
    /// The lease's owner (kept after the lease ends, as in the table).
    pub lease_owner: Option<String>,
    /// When the lease ends; `None` once released or finished.
    pub lease_expires_at_millis: Option<u64>,
    /// The result of a success.
    pub result: Option<Value>,
    /// The failure recorded.
    pub failure: Option<Failure>,
}

impl JobRecord {
    fn lease_live(&self, now: u64) -> bool {
        self.status == RUNNING && self.lease_expires_at_millis.is_some_and(|at| at >= now)
    }
}

/// [`JobStore`] in memory, with the same conditions as [`DynamoDbJobs`].
#[derive(Debug, Default)]
pub struct MemoryJobs {
    jobs: Mutex<HashMap<String, JobRecord>>,
}

impl MemoryJobs {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of one job.
    pub fn job(&self, job_id: &str) -> Option<JobRecord> {
        self.lock().get(job_id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, JobRecord>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl JobStore for MemoryJobs {
    fn start(
        &self,
        request: &JobRequest,
        lease: &Lease,
    ) -> BoxFuture<'_, Result<Start, StoreError>> {
        let (job_id, lease) = (request.job_id.clone(), lease.clone());
        Box::pin(async move {
            let mut jobs = self.lock();
            let job = jobs.entry(job_id).or_insert_with(|| JobRecord {
                status: RUNNING.into(),
                ..JobRecord::default()
            });
            let own = job.lease_owner.as_deref() == Some(lease.owner.as_str());
            if job.status != RUNNING || (job.lease_live(now_millis()) && !own) {
                return Ok(Start::Skipped(Holder {
                    status: Some(job.status.clone()),
                    lease_owner: job.lease_owner.clone(),
                    lease_expires_at_millis: job.lease_expires_at_millis,
                }));
            }
            job.attempts += 1;
            job.lease_owner = Some(lease.owner);
            job.lease_expires_at_millis = Some(lease.expires_at_millis);
            Ok(Start::Started)
        })
    }

    fn succeed(
        &self,
        job_id: &str,
        owner: &str,
        result: &Value,
    ) -> BoxFuture<'_, Result<Transition, StoreError>> {
        let (job_id, owner, result) = (job_id.to_owned(), owner.to_owned(), result.clone());
        Box::pin(async move {
            let mut jobs = self.lock();
            match jobs.get_mut(&job_id) {
                Some(job)
                    if job.status == RUNNING && job.lease_owner.as_deref() == Some(&owner) =>
                {
                    job.status = SUCCEEDED.into();
                    job.result = Some(result);
                    job.lease_expires_at_millis = None;
                    Ok(Transition::Applied)
                }
                _ => Ok(Transition::Skipped),
            }
        })
    }

    fn release(&self, job_id: &str, owner: &str) -> BoxFuture<'_, Result<Transition, StoreError>> {
        let (job_id, owner) = (job_id.to_owned(), owner.to_owned());
        Box::pin(async move {
            let mut jobs = self.lock();
            match jobs.get_mut(&job_id) {
                Some(job)
                    if job.status == RUNNING && job.lease_owner.as_deref() == Some(&owner) =>
                {
                    job.lease_expires_at_millis = None;
                    Ok(Transition::Applied)
                }
                _ => Ok(Transition::Skipped),
            }
        })
    }

    fn fail(
        &self,
        request: &JobRequest,
        failure: &Failure,
    ) -> BoxFuture<'_, Result<Transition, StoreError>> {
        let (job_id, failure) = (request.job_id.clone(), failure.clone());
        Box::pin(async move {
            let mut jobs = self.lock();
            let job = jobs.entry(job_id).or_default();
            let own = failure.request_id.is_some() && job.lease_owner == failure.request_id;
            if job.status == SUCCEEDED || (job.lease_live(now_millis()) && !own) {
                return Ok(Transition::Skipped);
            }
            job.status = FAILED.into();
            job.attempts = failure.attempts;
            job.lease_expires_at_millis = None;
            job.failure = Some(failure);
            Ok(Transition::Applied)
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

    fn request(id: &str) -> JobRequest {
        JobRequest {
            job_id: id.into(),
            parameters: json!({"seconds": 1}),
        }
    }

    fn failure(request_id: Option<&str>) -> Failure {
        Failure {
            message: "boom".into(),
            error_type: "JobError".into(),
            attempts: 1,
            condition: "RetriesExhausted".into(),
            request_id: request_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_lease_never_outlives_its_invocation() {
        let deadline = SystemTime::now() + Duration::from_secs(30);
        let lease = Lease::new("r", Duration::from_secs(900), Some(deadline));
        assert_eq!(lease.expires_at_millis, millis(deadline));
        let short = Lease::new("r", Duration::from_secs(5), Some(deadline));
        assert!(short.expires_at_millis < millis(deadline));
    }

    #[tokio::test]
    async fn memory_jobs_keep_the_lease_rules() {
        let jobs = MemoryJobs::new();
        let live = |owner: &str| Lease::new(owner, Duration::from_secs(60), None);
        assert_eq!(
            jobs.start(&request("j"), &live("a")).await.ok(),
            Some(Start::Started)
        );
        assert!(matches!(
            jobs.start(&request("j"), &live("b")).await,
            Ok(Start::Skipped(Holder { lease_owner: Some(o), .. })) if o == "a"
        ));
        assert_eq!(
            jobs.fail(&request("j"), &failure(Some("b"))).await.ok(),
            Some(Transition::Skipped),
            "not over another run's live lease"
        );
        assert_eq!(
            jobs.succeed("j", "b", &json!({})).await.ok(),
            Some(Transition::Skipped)
        );
        assert_eq!(jobs.release("j", "a").await.ok(), Some(Transition::Applied));
        assert_eq!(
            jobs.start(&request("j"), &live("b")).await.ok(),
            Some(Start::Started)
        );
        assert_eq!(
            jobs.succeed("j", "b", &json!({"ok": 1})).await.ok(),
            Some(Transition::Applied)
        );
        assert_eq!(
            jobs.fail(&request("j"), &failure(Some("b"))).await.ok(),
            Some(Transition::Skipped),
            "never over a success"
        );
        let job = jobs.job("j").expect("job");
        assert_eq!((job.status.as_str(), job.attempts), (SUCCEEDED, 2));

        let gone = Lease::new(
            "old",
            Duration::from_secs(60),
            Some(SystemTime::now() - Duration::from_secs(1)),
        );
        jobs.start(&request("k"), &gone).await.expect("start");
        assert_eq!(
            jobs.fail(&request("k"), &failure(None)).await.ok(),
            Some(Transition::Applied),
            "over an expired lease"
        );
        assert_eq!(jobs.job("k").map(|j| j.status), Some(FAILED.to_owned()));
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
