//! The functions a user deploys, and the seed-style Python and Node.js handlers they would
//! otherwise write, each run as Lambda runs it: its own process, through the local gateway's
//! execution environment and Runtime API ([`local_gateway::functions::environment`]), with
//! Lambda's variables, 128 MB declared, JSON logs, and the AWS stand-in ([`crate::stub_aws`]) as
//! its endpoint.
//!
//! What is measured per function, over `cold` fresh environments and then `warm` invocations of
//! the last one:
//! - **init**: the process's start to its first `next` (what Lambda reports as `Init Duration`);
//! - **first**: the first invocation of a fresh environment, from the event's hand-over to the
//!   answer (what pays for the SDK's first request: its connection, its lazy set-up);
//! - **warm**: every later invocation, its median and p99;
//! - **peak memory**: the most resident memory (`VmHWM`) any of its processes reached.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, anyhow, bail};
use axum::body::Bytes;
use base64::Engine as _;
use local_gateway::functions::api::{Job, Reply};
use local_gateway::functions::environment::{self, Ended, Environment, INIT_TIMEOUT};
use local_gateway::functions::{Spec, report::LogFormat};
use serde_json::{Value, json};

/// How long one invocation may take before the bench calls it failed: a Kinesis batch of 100
/// written one record at a time with the longest delay the bench sets takes about 2 s.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The language a function is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Runtime {
    /// This project's functions: a `bootstrap` on the `provided.al2023` runtime.
    Rust,
    /// Python 3 with boto3 under awslambdaric.
    Python,
    /// Node.js with the AWS SDK for JavaScript v3.
    Node,
}

impl Runtime {
    /// Its name in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Runtime::Rust => "Rust",
            Runtime::Python => "Python",
            Runtime::Node => "Node.js",
        }
    }
}

/// What a function is given to do, and how its answer is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// The Basic-auth authorizer: an HTTP API request with the right credentials, checked
    /// against the secret (read once per environment).
    Authorizer,
    /// An SQS batch into DynamoDB, one conditional write per record.
    SqsBatch,
    /// A Kinesis batch over distinct partition keys into DynamoDB.
    KinesisBatch,
    /// user-api's consumer: the sample create-user batch.
    UserApi,
    /// async-invoke's processor: one job.
    Processor,
    /// async-invoke's error handler: one on-failure destination record.
    ErrorHandler,
}

impl Workload {
    /// Its name in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Authorizer => "authorizer",
            Workload::SqsBatch => "SQS consumer",
            Workload::KinesisBatch => "Kinesis consumer",
            Workload::UserApi => "user-api consumer",
            Workload::Processor => "async-invoke processor",
            Workload::ErrorHandler => "async-invoke error handler",
        }
    }

    /// What one invocation is given, in words, for the tables.
    pub fn event_label(self) -> &'static str {
        match self {
            Workload::Authorizer => "one request, allowed",
            Workload::SqsBatch => "batch of 10",
            Workload::KinesisBatch => "batch of 100, distinct keys",
            Workload::UserApi => "sample batch (events/user-api)",
            Workload::Processor => "one sample job (it sleeps 1 s)",
            Workload::ErrorHandler => "one failure record",
        }
    }

    /// The variables the function needs (its template's, with stand-in names), and the
    /// template's default `WriteConcurrency` for the two consumers that take one.
    fn variables(self, root: &Path) -> Result<BTreeMap<String, String>> {
        let pairs: &[(&str, &str)] = match self {
            Workload::Authorizer => &[("SECRET_ID", "bench-secret")],
            Workload::SqsBatch | Workload::KinesisBatch => &[("TABLE_NAME", "bench-events")],
            Workload::UserApi => &[("TABLE_NAME", "bench-users")],
            Workload::Processor | Workload::ErrorHandler => &[("TABLE_NAME", "bench-jobs")],
        };
        let mut variables: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let pattern = match self {
            Workload::SqsBatch => Some("sqs-buffer"),
            Workload::KinesisBatch => Some("kinesis-stream"),
            _ => None,
        };
        if let Some(pattern) = pattern {
            let path = root.join("patterns").join(pattern).join("template.yaml");
            let template = local_gateway::cfn::Template::load(&path)?;
            let default = template
                .doc
                .pointer("/Parameters/WriteConcurrency/Default")
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .with_context(|| format!("{} has no WriteConcurrency default", path.display()))?;
            variables.insert("WRITE_CONCURRENCY".into(), default);
        }
        Ok(variables)
    }

    /// The event of one invocation; `batch` sizes the SQS and Kinesis batches (10 and 100 in
    /// the comparison).
    pub fn event(self, root: &Path, batch: usize) -> Result<Value> {
        let sample = |path: &str| -> Result<Value> {
            let path = root.join(path);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
        };
        Ok(match self {
            Workload::Authorizer => sample("events/sqs-buffer/authorizer-allow.json")?,
            Workload::SqsBatch => sqs_batch(batch),
            Workload::KinesisBatch => kinesis_batch(batch),
            Workload::UserApi => sample("events/user-api/sqs-create-users.json")?,
            Workload::Processor => json!({
                "jobId": "0b6f3a52-4c1d-4e8f-9a2b-3c4d5e6f7a80",
                "parameters": {"seconds": 1},
            }),
            Workload::ErrorHandler => {
                sample("events/async-invoke/error-handler-destination-record.json")?
            }
        })
    }

    /// Whether `answer` is the one a working function gives.
    pub fn check(self, answer: &Value) -> Result<()> {
        let fine = match self {
            Workload::Authorizer => answer["isAuthorized"] == true,
            Workload::SqsBatch | Workload::KinesisBatch | Workload::UserApi => {
                answer["batchItemFailures"]
                    .as_array()
                    .is_some_and(Vec::is_empty)
            }
            Workload::Processor => answer["status"] == "SUCCEEDED",
            Workload::ErrorHandler => answer["status"] == "FAILED",
        };
        if fine {
            Ok(())
        } else {
            bail!("{} answered {answer}", self.label())
        }
    }
}

/// An SQS batch of `n` records with distinct `eventId`s, as the SQS event source sends it.
pub fn sqs_batch(n: usize) -> Value {
    let records: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "messageId": format!("00000000-0000-4000-8000-{i:012}"),
                "receiptHandle": format!("bench-receipt-{i}"),
                "body": format!(r#"{{"eventId":"bench-{i}","message":"a message of the bench"}}"#),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795325400000",
                    "SenderId": "AROAEXAMPLE:apigateway",
                    "ApproximateFirstReceiveTimestamp": "1795325400050",
                },
                "messageAttributes": {
                    "apiRequestId": {"stringValue": format!("bench-request-{i}"), "dataType": "String"},
                },
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:bench-queue",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A Kinesis batch of `n` records, each its own partition key, holding what the pattern's API
/// writes (the `apiGatewayRequest` envelope around the client's body).
pub fn kinesis_batch(n: usize) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let sequence = format!("4965661200000000000000000000000000000000000000{:010}", i + 1);
            let body = b64.encode(format!(r#"{{"order":{i},"status":"created"}}"#));
            let envelope = json!({"apiGatewayRequest": {"apiRequestId": format!("bench-request-{i}"), "body": body}});
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": format!("order-{i}"),
                    "sequenceNumber": sequence,
                    "data": b64.encode(envelope.to_string()),
                    "approximateArrivalTimestamp": 1795327201.123,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{sequence}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/bench",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/bench",
            })
        })
        .collect();
    json!({ "Records": records })
}

/// One function to measure.
#[derive(Debug, Clone)]
pub struct Subject {
    /// What it does.
    pub workload: Workload,
    /// What it is written in.
    pub runtime: Runtime,
    /// The executable Lambda would start: a Rust `bootstrap`, or the seeds' wrapper script.
    pub binary: PathBuf,
    /// `_HANDLER`: `bootstrap`, or `module.function`.
    pub handler: String,
    /// Its own variables beyond the workload's (the interpreter of a Python or Node.js one).
    pub variables: BTreeMap<String, String>,
}

impl Subject {
    /// Its name in the tables: `SQS consumer (Rust)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.workload.label(), self.runtime.label())
    }
}

/// Where the functions run: the gateway's launcher, and the endpoint they call.
#[derive(Debug, Clone)]
pub struct Host {
    /// `local-gateway`, which starts each environment (`--run-environment`).
    pub launcher: PathBuf,
    /// `AWS_ENDPOINT_URL` of every function.
    pub endpoint: String,
    /// The repository (its templates give the consumers' default `WriteConcurrency`).
    pub root: PathBuf,
}

impl Host {
    /// The execution environment's settings for `subject`, with `extra` variables on top
    /// (`WRITE_CONCURRENCY` in the round-trip measurement).
    pub fn spec(&self, subject: &Subject, extra: &[(&str, String)]) -> Result<Arc<Spec>> {
        let name = format!(
            "bench-{}-{}",
            subject.workload.label().replace(' ', "-"),
            subject.runtime.label().to_lowercase().replace('.', "")
        );
        let mut variables = subject.workload.variables(&self.root)?;
        variables.extend(subject.variables.clone());
        if subject.runtime == Runtime::Rust {
            // As every template sets them (Globals and each function's Variables).
            variables.insert("METRICS_NAMESPACE".into(), "AsyncApiPatterns".into());
            variables.insert("RUST_LOG".into(), "info".into());
        }
        for (k, v) in extra {
            variables.insert((*k).to_owned(), v.clone());
        }
        Ok(Arc::new(Spec {
            id: name.clone(),
            arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
            log_group: format!("/aws/lambda/{name}"),
            name,
            binary: subject.binary.clone(),
            launcher: self.launcher.clone(),
            handler: subject.handler.clone(),
            variables,
            memory_mb: 128,
            timeout: INVOKE_TIMEOUT,
            log_format: LogFormat::Json,
            log_level: None,
            region: "us-east-1".into(),
            endpoint: self.endpoint.clone(),
        }))
    }
}

/// Starts one execution environment and waits for its init.
pub async fn start(spec: &Arc<Spec>) -> Result<Environment> {
    Environment::start(spec, INIT_TIMEOUT).await.map_err(|f| {
        anyhow!(
            "{} did not initialise: {}: {}{}",
            spec.id,
            f.error.error_type,
            f.error.message,
            output_of(&spec.id)
        )
    })
}

/// Invokes `env` with `event` and waits for its answer; gives how long that took and the answer.
pub async fn invoke(
    spec: &Spec,
    env: &mut Environment,
    event: &Value,
) -> Result<(Duration, Value)> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job {
        request_id: uuid::Uuid::new_v4().to_string(),
        payload: Bytes::from(serde_json::to_vec(event)?),
        deadline: SystemTime::now() + INVOKE_TIMEOUT,
        trace_id: "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
        client_context: None,
        cognito_identity: None,
        reply,
    };
    let started = Instant::now();
    let ended = env.invoke(job, answer, INVOKE_TIMEOUT).await;
    let took = started.elapsed();
    match ended {
        Ended::Answered(Reply::Response(bytes)) => Ok((
            took,
            serde_json::from_slice(&bytes).context("the answer is not JSON")?,
        )),
        Ended::Answered(Reply::Error(e)) => bail!(
            "{} failed: {}: {}{}",
            spec.id,
            e.error_type,
            e.message,
            output_of(&spec.id)
        ),
        Ended::TimedOut => bail!("{} timed out{}", spec.id, output_of(&spec.id)),
        Ended::Exited(how) => bail!("{} exited: {how}{}", spec.id, output_of(&spec.id)),
    }
}

/// What one function measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Init of each fresh environment.
    pub init: Vec<Duration>,
    /// The first invocation of each fresh environment.
    pub first: Vec<Duration>,
    /// The warm invocations.
    pub warm: Vec<Duration>,
    /// The most resident memory of any of its environments, in kB.
    pub peak_kb: u64,
}

/// Measures `subject` with `extra` variables: `cold` fresh environments, each invoked once,
/// then `warm` more invocations of the last one.
pub async fn measure(
    host: &Host,
    root: &Path,
    subject: &Subject,
    extra: &[(&str, String)],
    mut cold: usize,
    mut warm: usize,
) -> Result<Measured> {
    let spec = host.spec(subject, extra)?;
    let batch = match subject.workload {
        Workload::KinesisBatch => 100,
        _ => 10,
    };
    let event = subject.workload.event(root, batch)?;
    if subject.workload == Workload::Processor {
        // The sample job sleeps a second (its shortest): a few of them tell as much.
        (cold, warm) = (cold.min(3), warm.min(5));
    }
    let mut measured = Measured {
        init: Vec::with_capacity(cold),
        first: Vec::with_capacity(cold),
        warm: Vec::with_capacity(warm),
        peak_kb: 0,
    };
    for n in 1..=cold.max(1) {
        let mut env = start(&spec).await?;
        measured.init.push(env.init.unwrap_or_default());
        let (took, answer) = invoke(&spec, &mut env, &event).await?;
        subject.workload.check(&answer)?;
        measured.first.push(took);
        if n == cold.max(1) {
            for _ in 0..warm {
                let (took, answer) = invoke(&spec, &mut env, &event).await?;
                subject.workload.check(&answer)?;
                measured.warm.push(took);
            }
        }
        measured.peak_kb = measured
            .peak_kb
            .max(environment::peak_memory_kb(env.pid).unwrap_or_default());
    }
    Ok(measured)
}

/// The last lines a function wrote, to explain its failure; the bench's quiet log sink keeps
/// them ([`crate::output`]).
fn output_of(id: &str) -> String {
    let lines = crate::output::last_lines(id);
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last output:\n{}", lines.join("\n"))
    }
}
