//! async-invoke processor: runs a job delivered by an asynchronous invoke and records its progress.
//!
//! It takes the job first: `RUNNING` under a lease held by this invocation's request id, granted
//! only if the job is new or its previous lease has expired (see `async_invoke_jobs`). A delivery
//! that finds the job finished, or leased by a run that is still live, is a duplicate: it is
//! logged and skipped, not an error. Then it runs the [`Job`] and records `SUCCEEDED` with the
//! result, which only the lease owner can do. A failing job gives its lease back and is a
//! function error: Lambda retries it as the function's `EventInvokeConfig` says (the retry finds
//! the lease released and takes the job), then hands the event to the on-failure destination
//! (the error handler).
//!
//! The job id is API Gateway's request id: every log line about the job carries it as the field
//! `apiRequestId` beside `job_id` (`request_id` is Lambda's invocation id, the lease owner), and
//! the job record stores it as the attribute `apiRequestId`. Every invocation writes one EMF
//! document ([`batch_metrics`]): the job succeeded (stored), was skipped as a duplicate delivery,
//! lost its lease to another run (conflict), had invalid parameters, or failed; the latency is
//! that of the jobs-table writes, not of the job.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_invoke_jobs::{
    DynamoDbJobs, Job, JobError, JobRequest, JobStore, Lease, SleepJob, Start, StoreError,
    Transition,
};
use aws_setup::ErrorChain;
use batch_metrics::{Function, Invocation as InvocationMetrics, Metrics, Outcome, Pattern};
use serde_json::{Value, json};

/// Lease length when `LEASE_SECONDS` is not set: 900 s, Lambda's longest function timeout, so a
/// lease never ends while its run may still be going. (Each lease also ends at its invocation's
/// deadline, so a longer setting than the timeout changes nothing.)
pub const DEFAULT_LEASE_SECONDS: u64 = 900;

/// Settings of the processor, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The jobs table (`TABLE_NAME`).
    pub table_name: String,
    /// How long a run holds its job (`LEASE_SECONDS`; set it to the function's timeout).
    pub lease: Duration,
}

/// Errors in the processor's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// `LEASE_SECONDS` is not a whole number of seconds from 1 to 900.
    #[error("environment variable LEASE_SECONDS must be a whole number from 1 to 900, got {0:?}")]
    BadLease(String),
}

impl Config {
    /// Reads `TABLE_NAME` and `LEASE_SECONDS` from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the local gateway passes the function's environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table_name = lookup("TABLE_NAME")
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing("TABLE_NAME"))?;
        let seconds = match lookup("LEASE_SECONDS").filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_LEASE_SECONDS,
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(n) if (1..=900).contains(&n) => n,
                _ => return Err(ConfigError::BadLease(raw)),
            },
        };
        Ok(Self {
            table_name,
            lease: Duration::from_secs(seconds),
        })
    }
}

/// The invocation a job request arrived with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Lambda's request id: the lease owner. (An asynchronous invoke keeps its request id across
    /// Lambda's retries; the destination record carries it as `requestContext.requestId`.)
    pub request_id: String,
    /// When Lambda stops this invocation, if known.
    pub deadline: Option<SystemTime>,
}

impl Invocation {
    /// The invocation described by a Lambda context.
    pub fn from_context(context: &lambda_runtime::Context) -> Self {
        Self {
            request_id: context.request_id.clone(),
            deadline: (context.deadline > 0)
                .then(|| UNIX_EPOCH + Duration::from_millis(context.deadline)),
        }
    }
}

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

/// How Lambda reports a failed job to its caller and to the on-failure destination: `errorType`
/// names the kind (`JobError`, `StoreError`), `errorMessage` carries the whole cause chain.
/// (The runtime's default would be a Rust type name.)
impl From<ProcessError> for lambda_runtime::Diagnostic {
    fn from(error: ProcessError) -> Self {
        let error_type = match &error {
            ProcessError::Job(_) => "JobError",
            ProcessError::Store(_) => "StoreError",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.to_owned(),
            error_message: aws_setup::ErrorChain(&error).to_string(),
        }
    }
}

/// The processor, built once per execution environment.
#[derive(Clone)]
pub struct Processor {
    store: Arc<dyn JobStore>,
    job: Arc<dyn Job>,
    lease: Duration,
    metrics: Metrics,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Processor {
    /// A processor recording to `store` and running `job`, with leases of
    /// [`DEFAULT_LEASE_SECONDS`].
    pub fn new(store: Arc<dyn JobStore>, job: Arc<dyn Job>) -> Self {
        Self {
            store,
            job,
            lease: Duration::from_secs(DEFAULT_LEASE_SECONDS),
            metrics: Metrics::disabled(Pattern::AsyncInvoke, Function::Processor),
        }
    }

    /// The same processor, writing one document per invocation to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same processor, holding each job for at most `lease`.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The sample processor: [`SleepJob`] on the table named in `config`.
    pub fn from_config(config: &Config, client: aws_sdk_dynamodb::Client) -> Self {
        Self::new(
            Arc::new(DynamoDbJobs::new(client, config.table_name.clone())),
            Arc::new(SleepJob),
        )
        .with_lease(config.lease)
    }

    /// Runs one job request delivered by `invocation`; writes the invocation's metrics before it
    /// answers.
    pub async fn handle(
        &self,
        request: JobRequest,
        invocation: &Invocation,
    ) -> Result<Value, ProcessError> {
        let metrics = self.metrics.invocation();
        let (outcome, answer) = self.process(request, invocation, &metrics).await;
        metrics.count(outcome);
        answer
    }

    async fn process(
        &self,
        request: JobRequest,
        invocation: &Invocation,
        metrics: &InvocationMetrics,
    ) -> (Outcome, Result<Value, ProcessError>) {
        let job_id = request.job_id.as_str();
        let request_id = invocation.request_id.as_str();
        let failed = |error: StoreError| {
            tracing::warn!(
                job_id,
                apiRequestId = job_id,
                request_id,
                error = %ErrorChain(&error),
                "jobs table write failed"
            );
            (Outcome::Failed, Err(ProcessError::Store(error)))
        };
        let lease = Lease::new(request_id, self.lease, invocation.deadline);
        let start = match metrics
            .time_writes(self.store.start(&request, &lease))
            .await
        {
            Ok(start) => start,
            Err(error) => return failed(error),
        };
        if let Start::Skipped(holder) = start {
            tracing::info!(
                job_id,
                apiRequestId = job_id,
                request_id,
                status = holder.status.as_deref().unwrap_or_default(),
                lease_owner = holder.lease_owner.as_deref().unwrap_or_default(),
                lease_expires_at = holder.lease_expires_at_millis.unwrap_or_default(),
                "job finished or held by a live run; duplicate delivery skipped"
            );
            return (
                Outcome::Duplicate,
                Ok(json!({ "jobId": job_id, "skipped": true })),
            );
        }
        let result = match self.job.run(&request.parameters).await {
            Ok(result) => result,
            Err(error) => {
                tracing::warn!(
                    job_id,
                    apiRequestId = job_id,
                    request_id,
                    error = %ErrorChain(&error),
                    "job failed"
                );
                // Give the job back so Lambda's retry can take it at once. If this write fails
                // too, the lease still ends with this invocation's deadline.
                if let Err(store) = metrics
                    .time_writes(self.store.release(job_id, request_id))
                    .await
                {
                    tracing::warn!(
                        job_id,
                        apiRequestId = job_id,
                        request_id,
                        error = %ErrorChain(&store),
                        "jobs table write failed"
                    );
                }
                let outcome = match error {
                    JobError::InvalidParameters(_) => Outcome::Invalid,
                    JobError::Failed(_) => Outcome::Failed,
                };
                return (outcome, Err(error.into()));
            }
        };
        let succeeded = match metrics
            .time_writes(self.store.succeed(job_id, request_id, &result))
            .await
        {
            Ok(transition) => transition,
            Err(error) => return failed(error),
        };
        match succeeded {
            Transition::Applied => {
                tracing::info!(job_id, apiRequestId = job_id, request_id, "job succeeded");
                (
                    Outcome::Stored,
                    Ok(json!({ "jobId": job_id, "status": "SUCCEEDED" })),
                )
            }
            Transition::Skipped => {
                // Our lease ran out and another run took the job: its outcome is recorded, ours
                // is not (a job is recorded by the run that holds it).
                tracing::warn!(
                    job_id,
                    apiRequestId = job_id,
                    request_id,
                    "lease lost to another run before the job finished; result not recorded"
                );
                (
                    Outcome::Conflict,
                    Ok(json!({ "jobId": job_id, "skipped": true })),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_invoke_jobs::{MemoryJobs, RUNNING, SUCCEEDED};
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A job that counts its runs, takes `pause`, and fails when its parameters say so.
    #[derive(Debug, Default)]
    struct Counting {
        runs: AtomicUsize,
        pause: Duration,
    }

    impl Job for Counting {
        fn run<'a>(&'a self, parameters: &'a Value) -> BoxFuture<'a, Result<Value, JobError>> {
            Box::pin(async move {
                self.runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.pause).await;
                match parameters.get("failure").and_then(Value::as_str) {
                    Some(message) => Err(JobError::Failed(message.to_owned())),
                    None => Ok(json!({"done": true})),
                }
            })
        }
    }

    fn request(parameters: Value) -> JobRequest {
        JobRequest {
            job_id: "j".into(),
            parameters,
        }
    }

    fn invocation(id: &str) -> Invocation {
        Invocation {
            request_id: id.into(),
            deadline: Some(SystemTime::now() + Duration::from_secs(60)),
        }
    }

    #[tokio::test]
    async fn a_second_delivery_during_a_run_is_skipped_not_run_again() {
        let store = Arc::new(MemoryJobs::new());
        let job = Arc::new(Counting {
            pause: Duration::from_millis(200),
            ..Counting::default()
        });
        let processor = Processor::new(store.clone(), job.clone());
        let r1 = invocation("r1");
        let (first, second) = tokio::join!(processor.handle(request(json!({})), &r1), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            processor
                .handle(request(json!({})), &invocation("r2"))
                .await
        });
        assert_eq!(first.expect("runs")["status"], "SUCCEEDED");
        assert_eq!(second.expect("skipped, not an error")["skipped"], true);
        assert_eq!(job.runs.load(Ordering::SeqCst), 1);
        let record = store.job("j").expect("job");
        assert_eq!((record.status.as_str(), record.attempts), (SUCCEEDED, 1));
    }

    #[tokio::test]
    async fn a_failed_run_gives_its_lease_back_so_the_retry_runs() {
        let store = Arc::new(MemoryJobs::new());
        let job = Arc::new(Counting::default());
        let processor = Processor::new(store.clone(), job.clone());
        let failing = request(json!({"failure": "boom"}));
        // Lambda retries an asynchronous invoke under the same request id.
        for _ in 0..2 {
            assert!(matches!(
                processor.handle(failing.clone(), &invocation("r1")).await,
                Err(ProcessError::Job(JobError::Failed(_)))
            ));
        }
        assert_eq!(job.runs.load(Ordering::SeqCst), 2);
        let record = store.job("j").expect("job");
        assert_eq!(
            (
                record.status.as_str(),
                record.attempts,
                record.lease_expires_at_millis
            ),
            (RUNNING, 2, None)
        );
    }

    #[tokio::test]
    async fn the_retry_of_a_try_killed_mid_run_runs_the_job_and_records_it() {
        let store = Arc::new(MemoryJobs::new());
        let job = Arc::new(Counting::default());
        let processor = Processor::new(store.clone(), job.clone());
        // The first try took the job and was killed before it could answer or release its lease
        // (a crash, a lost environment): its lease is still live. Lambda's retry comes under the
        // same request id and must run the job, not skip it as a duplicate.
        let lease = Lease::new("r1", Duration::from_secs(60), None);
        assert_eq!(
            store
                .start(&request(json!({})), &lease)
                .await
                .expect("start"),
            Start::Started
        );
        let answer = processor
            .handle(request(json!({})), &invocation("r1"))
            .await
            .expect("the retry runs");
        assert_eq!(answer["status"], "SUCCEEDED");
        assert_eq!(job.runs.load(Ordering::SeqCst), 1);
        let record = store.job("j").expect("job");
        assert_eq!((record.status.as_str(), record.attempts), (SUCCEEDED, 2));
        // Another request id still finds the job finished and skips it.
        let late = processor
            .handle(request(json!({})), &invocation("r2"))
            .await
            .expect("skipped, not an error");
        assert_eq!(late["skipped"], true);
        assert_eq!(job.runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_run_whose_lease_was_taken_over_does_not_record_its_result() {
        let store = Arc::new(MemoryJobs::new());
        let job = Arc::new(Counting {
            pause: Duration::from_millis(300),
            ..Counting::default()
        });
        // A lease of 100 ms: it runs out while the job still runs.
        let processor =
            Processor::new(store.clone(), job.clone()).with_lease(Duration::from_millis(100));
        let slow_run = invocation("slow");
        let (slow, late) = tokio::join!(processor.handle(request(json!({})), &slow_run), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            processor
                .handle(request(json!({})), &invocation("late"))
                .await
        });
        assert_eq!(slow.expect("ok")["skipped"], true);
        assert_eq!(late.expect("ok")["status"], "SUCCEEDED");
        assert_eq!(job.runs.load(Ordering::SeqCst), 2);
        assert_eq!(
            store.job("j").and_then(|j| j.lease_owner),
            Some("late".into())
        );
    }

    fn captured() -> (batch_metrics::Metrics, batch_metrics::Captured) {
        batch_metrics::Metrics::capture(
            "AsyncApiPatterns",
            Pattern::AsyncInvoke,
            Function::Processor,
        )
    }

    fn only(captured: &batch_metrics::Captured) -> batch_metrics::Counts {
        let written = captured.only().expect("one document");
        assert_eq!(written.document["Pattern"], "async-invoke");
        assert_eq!(written.document["Function"], "processor");
        written.counts
    }

    fn one(outcome: Outcome) -> batch_metrics::Counts {
        let mut counts = batch_metrics::Counts::default();
        match outcome {
            Outcome::Stored => counts.stored = 1,
            Outcome::Duplicate => counts.duplicate = 1,
            Outcome::Conflict => counts.conflict = 1,
            Outcome::Invalid => counts.invalid = 1,
            Outcome::Failed => counts.failed = 1,
        }
        counts
    }

    /// A jobs table that cannot be written.
    struct Down;

    impl JobStore for Down {
        fn start(&self, _: &JobRequest, _: &Lease) -> BoxFuture<'_, Result<Start, StoreError>> {
            Box::pin(async { Err(StoreError("injected outage".into())) })
        }
        fn succeed(
            &self,
            _: &str,
            _: &str,
            _: &Value,
        ) -> BoxFuture<'_, Result<Transition, StoreError>> {
            Box::pin(async { Err(StoreError("injected outage".into())) })
        }
        fn release(&self, _: &str, _: &str) -> BoxFuture<'_, Result<Transition, StoreError>> {
            Box::pin(async { Err(StoreError("injected outage".into())) })
        }
        fn fail(
            &self,
            _: &JobRequest,
            _: &async_invoke_jobs::Failure,
        ) -> BoxFuture<'_, Result<Transition, StoreError>> {
            Box::pin(async { Err(StoreError("injected outage".into())) })
        }
    }

    #[tokio::test]
    async fn each_invocation_writes_one_document_naming_how_its_job_ended() {
        let store = Arc::new(MemoryJobs::new());
        let (metrics, captured) = captured();
        let processor = Processor::new(store.clone(), Arc::new(Counting::default()))
            .with_metrics(metrics.clone());
        processor
            .handle(request(json!({})), &invocation("r1"))
            .await
            .expect("runs");
        assert_eq!(only(&captured), one(Outcome::Stored));
        processor
            .handle(request(json!({})), &invocation("r2"))
            .await
            .expect("skipped");
        assert_eq!(only(&captured), one(Outcome::Duplicate));
        let mut failing = request(json!({"failure": "boom"}));
        failing.job_id = "f".into();
        assert!(processor.handle(failing, &invocation("r3")).await.is_err());
        assert_eq!(only(&captured), one(Outcome::Failed));

        let sleeper =
            Processor::new(store.clone(), Arc::new(SleepJob)).with_metrics(metrics.clone());
        let mut invalid = request(json!({"seconds": "soon"}));
        invalid.job_id = "i".into();
        assert!(sleeper.handle(invalid, &invocation("r4")).await.is_err());
        assert_eq!(only(&captured), one(Outcome::Invalid));

        let down =
            Processor::new(Arc::new(Down), Arc::new(Counting::default())).with_metrics(metrics);
        assert!(matches!(
            down.handle(request(json!({})), &invocation("r5")).await,
            Err(ProcessError::Store(_))
        ));
        assert_eq!(only(&captured), one(Outcome::Failed));
    }

    #[tokio::test]
    async fn a_run_that_lost_its_lease_counts_as_a_conflict() {
        let store = Arc::new(MemoryJobs::new());
        let (metrics, captured) = captured();
        let job = Arc::new(Counting {
            pause: Duration::from_millis(300),
            ..Counting::default()
        });
        let processor = Processor::new(store, job)
            .with_lease(Duration::from_millis(100))
            .with_metrics(metrics);
        let slow_run = invocation("slow");
        let (slow, late) = tokio::join!(processor.handle(request(json!({})), &slow_run), async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            processor
                .handle(request(json!({})), &invocation("late"))
                .await
        });
        assert_eq!(slow.expect("ok")["skipped"], true);
        assert_eq!(late.expect("ok")["status"], "SUCCEEDED");
        let mut documents: Vec<batch_metrics::Counts> = captured
            .documents()
            .into_iter()
            .map(|d| batch_metrics::Counts {
                stored: d["RecordsStored"].as_u64().expect("count"),
                failed: d["RecordsFailed"].as_u64().expect("count"),
                duplicate: d["RecordsDuplicate"].as_u64().expect("count"),
                conflict: d["RecordsConflict"].as_u64().expect("count"),
                invalid: d["RecordsInvalid"].as_u64().expect("count"),
            })
            .collect();
        documents.sort_by_key(|c| c.conflict);
        assert_eq!(documents, [one(Outcome::Stored), one(Outcome::Conflict)]);
    }

    #[tokio::test]
    async fn every_line_about_a_job_carries_its_id_as_the_api_request_id() {
        let store = Arc::new(MemoryJobs::new());
        let processor = Processor::new(store, Arc::new(Counting::default()));
        let (logs, _guard) = aws_setup::CapturedLogs::start();
        processor
            .handle(request(json!({})), &invocation("r1"))
            .await
            .expect("runs");
        processor
            .handle(request(json!({})), &invocation("r2"))
            .await
            .expect("skipped");
        let mut failing = request(json!({"failure": "s3cr3t"}));
        failing.job_id = "f".into();
        assert!(processor.handle(failing, &invocation("r3")).await.is_err());
        let down = Processor::new(Arc::new(Down), Arc::new(Counting::default()));
        assert!(
            down.handle(request(json!({})), &invocation("r4"))
                .await
                .is_err()
        );
        let text = logs.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        assert!(lines.len() >= 4, "{text}");
        for line in &lines {
            let fields = &line["fields"];
            assert_eq!(fields["apiRequestId"], fields["job_id"], "{line}");
            assert!(fields["apiRequestId"].is_string(), "{line}");
        }
    }

    #[test]
    fn config_reads_the_lease_and_falls_back_to_the_default() {
        let env = |lease: Option<&'static str>| {
            move |k: &str| match k {
                "TABLE_NAME" => Some("jobs".to_owned()),
                "LEASE_SECONDS" => lease.map(str::to_owned),
                _ => None,
            }
        };
        assert_eq!(
            Config::from_lookup(env(None)).expect("default").lease,
            Duration::from_secs(DEFAULT_LEASE_SECONDS)
        );
        assert_eq!(
            Config::from_lookup(env(Some("120"))).expect("set").lease,
            Duration::from_secs(120)
        );
        for bad in ["0", "901", "ten", "-5"] {
            assert!(
                matches!(
                    Config::from_lookup(env(Some(bad))),
                    Err(ConfigError::BadLease(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Config::from_lookup(|_| None),
            Err(ConfigError::Missing("TABLE_NAME"))
        ));
    }

    #[test]
    fn the_invocation_comes_from_the_lambda_context() {
        let mut context = lambda_runtime::Context::default();
        context.request_id = "req-1".into();
        context.deadline = 1_800_000_000_000;
        let invocation = Invocation::from_context(&context);
        assert_eq!(invocation.request_id, "req-1");
        assert_eq!(
            invocation.deadline,
            Some(UNIX_EPOCH + Duration::from_millis(1_800_000_000_000))
        );
        context.deadline = 0;
        assert_eq!(Invocation::from_context(&context).deadline, None);
    }
}
