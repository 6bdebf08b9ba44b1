//! Application metrics in CloudWatch's embedded metric format (EMF): one document per
//! invocation, on stdout, written before the invocation's response.
//!
//! Lambda sends what a function writes to stdout to its log group, and CloudWatch Logs turns a
//! line in the embedded metric format into metrics, with no agent and no API call ("Using the
//! embedded metric format with Lambda", CloudWatch user guide,
//! CloudWatch_Embedded_Metric_Format_Lambda.html; the format: CloudWatch_Embedded_Metric_Format_Specification.html).
//! Lambda freezes the execution environment once the response is sent, and a function that
//! times out before it writes its metrics loses them (same page), so nothing is left to a
//! background thread: the document is written synchronously, through metrique's
//! `FlushImmediately` sink, when the invocation's [`Invocation`] is dropped at the end of the
//! handler, before the handler returns. (metrique-writer documents `FlushImmediately` as the sink
//! for "environments where background threads are not desirable, such as AWS Lambda functions";
//! its `BackgroundQueue` would need a drain at every invocation's end.) The document itself is
//! formatted by AWS Labs' `metrique-writer-format-emf`, never written by hand.
//!
//! ## The document
//!
//! - Namespace: `METRICS_NAMESPACE`, else [`DEFAULT_NAMESPACE`] ([`Config`]).
//! - One dimension set, `[Pattern, Function]` ([`Pattern`], [`Function`]).
//! - `RecordsStored`, `RecordsFailed`, `RecordsDuplicate`, `RecordsConflict`, `RecordsInvalid`
//!   (`Count`) and `BatchWriteLatency` (`Milliseconds`), every one in every document, zeros
//!   included, so that a dashboard shows 0 rather than a gap.
//!
//! ```json
//! {"_aws":{"CloudWatchMetrics":[{"Namespace":"AsyncApiPatterns","Dimensions":[["Pattern","Function"]],
//!   "Metrics":[{"Name":"RecordsStored","Unit":"Count"}, ..., {"Name":"BatchWriteLatency","Unit":"Milliseconds"}]}],
//!   "Timestamp":1796319690403},
//!  "RecordsStored":3,"RecordsFailed":0,"RecordsDuplicate":0,"RecordsConflict":0,"RecordsInvalid":0,
//!  "BatchWriteLatency":12.345,"Pattern":"sqs-buffer","Function":"consumer"}
//! ```
//!
//! ## What is counted
//!
//! Every record (message, stream record, job) a function handles is counted once, under the
//! first of these that applies ([`Outcome`]):
//!
//! - **Invalid**: its content can never be stored, whatever the retries (a body that is not
//!   JSON, an id that is no key, an envelope or event of the wrong shape, an item DynamoDB
//!   refuses). Where the pattern has no terminal status to record, such a record is *also*
//!   reported as a failure, so that it ends in the dead-letter queue or on-failure destination;
//!   it is counted here, not under Failed.
//! - **Failed**: it was reported for retry (or failed the invocation) for any other reason: the
//!   table could not be written, the job failed.
//! - **Conflict**: it met another record's claim and lost, visibly.
//! - **Duplicate**: it changed nothing because what it would write is already there.
//! - **Stored**: it was written.
//!
//! Per pattern:
//!
//! | Pattern, Function | Stored | Duplicate | Conflict | Invalid | Failed |
//! |---|---|---|---|---|---|
//! | sqs-buffer, consumer | event item created | same payload already stored; a conflict already recorded | eventId reused with another payload: conflict item recorded | body not JSON, bad `eventId`, item refused by DynamoDB (reported, to the DLQ) | write throttled or failed (reported) |
//! | kinesis-stream, consumer | item written (new key or newer sequence number) | sequence number not newer than the stored one (a retried batch, an older record, a replay of an older original) | never: a newer record replaces an older one by design | data not base64, too large, not JSON, bad replay or API envelope, item refused by DynamoDB (reported) | write throttled or failed (reported) |
//! | user-api, consumer | user created | delivered again: the user already exists | email taken: `EMAIL_TAKEN` recorded | body cannot become a user: `INVALID` recorded (not retried) | table write failed (reported) |
//! | async-invoke, processor | `SUCCEEDED` recorded | job finished or held by a live run: delivery skipped | lease lost to another run: result not recorded | invalid job parameters (the invocation fails) | the job failed, or the table could not be written |
//! | async-invoke, error-handler | `FAILED` recorded | job succeeded or held by a live run: failure not recorded | never | event not a destination record | table write failed |
//!
//! A Kinesis record held back behind its key's failure is not handled by the invocation and is
//! not counted; it is counted when a retry handles it. A batch refused as a whole (a record
//! without a message id, or without a sequence number) counts every record as Failed.
//!
//! `BatchWriteLatency` is the wall time the invocation spent writing: for a batch, from the
//! start to the end of its records' processing (which is mostly their writes, run
//! concurrently); for async-invoke, the jobs-table writes only, not the job's own run.
//!
//! ## Tests
//!
//! [`Metrics::capture`] sends the documents through the same format and sink into memory
//! (metrique's `InMemoryMakeWriter`), so a test reads exactly what the function writes.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrique_writer::format::FormatExt as _;
use metrique_writer::in_memory::InMemoryMakeWriter;
use metrique_writer::sink::FlushImmediately;
use metrique_writer::unit::AsCount;
use metrique_writer::{AnyEntrySink as _, BoxEntrySink, Entry};
use metrique_writer_format_emf::Emf;

/// Namespace of the documents when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "AsyncApiPatterns";

/// The environment variable naming the namespace.
pub const NAMESPACE_VARIABLE: &str = "METRICS_NAMESPACE";

/// The dimensions of every document, in order.
pub const DIMENSIONS: [&str; 2] = ["Pattern", "Function"];

/// The `Pattern` dimension: which pattern the function belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// `sqs-buffer`.
    SqsBuffer,
    /// `kinesis-stream`.
    KinesisStream,
    /// `async-invoke`.
    AsyncInvoke,
    /// `user-api`.
    UserApi,
}

impl Pattern {
    /// The dimension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::SqsBuffer => "sqs-buffer",
            Pattern::KinesisStream => "kinesis-stream",
            Pattern::AsyncInvoke => "async-invoke",
            Pattern::UserApi => "user-api",
        }
    }
}

/// The `Function` dimension: which function of its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `consumer` (sqs-buffer, kinesis-stream, user-api).
    Consumer,
    /// `processor` (async-invoke).
    Processor,
    /// `error-handler` (async-invoke).
    ErrorHandler,
}

impl Function {
    /// The dimension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Consumer => "consumer",
            Function::Processor => "processor",
            Function::ErrorHandler => "error-handler",
        }
    }
}

/// Settings of the metrics, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The CloudWatch namespace of the documents.
    pub namespace: String,
}

impl Config {
    /// Reads `METRICS_NAMESPACE` from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads `METRICS_NAMESPACE` through `lookup`; unset or blank, [`DEFAULT_NAMESPACE`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let namespace = lookup(NAMESPACE_VARIABLE)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
        Self { namespace }
    }
}

/// How one record ended, for the counts (see the crate's documentation for what each means in
/// each pattern).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written: `RecordsStored`.
    Stored,
    /// Already there, nothing written: `RecordsDuplicate`.
    Duplicate,
    /// Met another record's claim and lost, visibly: `RecordsConflict`.
    Conflict,
    /// Its content can never be stored: `RecordsInvalid`.
    Invalid,
    /// Reported for retry for another reason: `RecordsFailed`.
    Failed,
}

/// One invocation's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `RecordsStored`.
    pub stored: u64,
    /// `RecordsFailed`.
    pub failed: u64,
    /// `RecordsDuplicate`.
    pub duplicate: u64,
    /// `RecordsConflict`.
    pub conflict: u64,
    /// `RecordsInvalid`.
    pub invalid: u64,
}

/// The document, as metrique formats it: field names in PascalCase are the metric and
/// dimension names.
#[derive(Entry)]
#[entry(rename_all = "PascalCase")]
struct Document {
    pattern: &'static str,
    function: &'static str,
    records_stored: AsCount<u64>,
    records_failed: AsCount<u64>,
    records_duplicate: AsCount<u64>,
    records_conflict: AsCount<u64>,
    records_invalid: AsCount<u64>,
    /// A `Duration` is emitted in milliseconds, with `"Unit": "Milliseconds"`.
    batch_write_latency: Duration,
}

/// Where a function's documents go, built once per execution environment.
#[derive(Clone)]
pub struct Metrics {
    sink: Option<BoxEntrySink>,
    pattern: Pattern,
    function: Function,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.sink.is_some())
            .field("pattern", &self.pattern)
            .field("function", &self.function)
            .finish()
    }
}

fn emf(namespace: &str) -> Emf {
    Emf::all_validations(
        namespace.to_owned(),
        vec![DIMENSIONS.iter().map(|d| (*d).to_owned()).collect()],
    )
}

impl Metrics {
    /// Documents written to stdout, where Lambda's log capture picks them up. Each is written
    /// under stdout's lock, so it never interleaves with a log line.
    pub fn stdout(config: &Config, pattern: Pattern, function: Function) -> Self {
        let stream = emf(&config.namespace).output_to_makewriter(|| std::io::stdout().lock());
        Self {
            sink: Some(FlushImmediately::new_boxed(stream)),
            pattern,
            function,
        }
    }

    /// Documents formatted exactly as [`Metrics::stdout`] formats them, kept in memory for a test
    /// to read ([`Captured::documents`]).
    pub fn capture(namespace: &str, pattern: Pattern, function: Function) -> (Self, Captured) {
        let buffer = InMemoryMakeWriter::with_max_capacity(usize::MAX);
        let stream = emf(namespace).output_to_makewriter(buffer.clone());
        let metrics = Self {
            sink: Some(FlushImmediately::new_boxed(stream)),
            pattern,
            function,
        };
        (metrics, Captured(buffer))
    }

    /// No documents at all: for code that runs a consumer outside Lambda (tools, benchmarks,
    /// tests of something else), where stdout is not a log group.
    pub fn disabled(pattern: Pattern, function: Function) -> Self {
        Self {
            sink: None,
            pattern,
            function,
        }
    }

    /// Starts counting one invocation; its document is written when it is dropped.
    pub fn invocation(&self) -> Invocation {
        Invocation {
            sink: self.sink.clone(),
            pattern: self.pattern,
            function: self.function,
            stored: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            duplicate: AtomicU64::new(0),
            conflict: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            write_nanos: AtomicU64::new(0),
        }
    }
}

/// The counts of one invocation, shared by its records (which may run concurrently). Dropped
/// at the end of the handler, it writes the invocation's one document, synchronously: keep it
/// a local of the handler, so that it drops before the handler's response is returned.
#[derive(Debug)]
pub struct Invocation {
    sink: Option<BoxEntrySink>,
    pattern: Pattern,
    function: Function,
    stored: AtomicU64,
    failed: AtomicU64,
    duplicate: AtomicU64,
    conflict: AtomicU64,
    invalid: AtomicU64,
    write_nanos: AtomicU64,
}

impl Invocation {
    /// Counts one record that ended as `outcome`.
    pub fn count(&self, outcome: Outcome) {
        self.count_many(outcome, 1);
    }

    /// Counts `n` records that ended as `outcome`.
    pub fn count_many(&self, outcome: Outcome, n: u64) {
        let counter = match outcome {
            Outcome::Stored => &self.stored,
            Outcome::Failed => &self.failed,
            Outcome::Duplicate => &self.duplicate,
            Outcome::Conflict => &self.conflict,
            Outcome::Invalid => &self.invalid,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Runs `writes`, adding the wall time it takes to `BatchWriteLatency`.
    pub async fn time_writes<T>(&self, writes: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = writes.await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.write_nanos.fetch_add(nanos, Ordering::Relaxed);
        result
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            stored: self.stored.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            duplicate: self.duplicate.load(Ordering::Relaxed),
            conflict: self.conflict.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
        }
    }

    /// The write time so far.
    pub fn write_time(&self) -> Duration {
        Duration::from_nanos(self.write_nanos.load(Ordering::Relaxed))
    }
}

impl Drop for Invocation {
    fn drop(&mut self) {
        let Some(sink) = &self.sink else {
            return;
        };
        let counts = self.counts();
        // FlushImmediately formats and writes the document here, then flushes the stream; a
        // write error is logged by the sink and never fails the invocation.
        sink.append_any(Document {
            pattern: self.pattern.as_str(),
            function: self.function.as_str(),
            records_stored: counts.stored.into(),
            records_failed: counts.failed.into(),
            records_duplicate: counts.duplicate.into(),
            records_conflict: counts.conflict.into(),
            records_invalid: counts.invalid.into(),
            batch_write_latency: self.write_time(),
        });
    }
}

/// The documents of a [`Metrics::capture`], as they were written.
#[derive(Clone)]
pub struct Captured(InMemoryMakeWriter);

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Captured").finish_non_exhaustive()
    }
}

impl Captured {
    /// The documents written since the last call, one per line, parsed. A line that is not JSON
    /// is kept as a JSON string, so that a test fails on it visibly.
    pub fn documents(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.drain().bytes;
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|_| serde_json::Value::String(line.to_owned()))
            })
            .collect()
    }

    /// The one document written since the last call, with its counts and latency read back;
    /// `None` unless exactly one was written.
    pub fn only(&self) -> Option<Written> {
        let mut documents = self.documents();
        if documents.len() != 1 {
            return None;
        }
        Written::read(documents.pop()?)
    }
}

/// A document read back by [`Captured::only`].
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The whole document.
    pub document: serde_json::Value,
    /// Its counts.
    pub counts: Counts,
    /// Its `BatchWriteLatency`.
    pub batch_write_latency_ms: f64,
}

impl Written {
    fn read(document: serde_json::Value) -> Option<Self> {
        let count = |name: &str| document.get(name).and_then(serde_json::Value::as_u64);
        let counts = Counts {
            stored: count("RecordsStored")?,
            failed: count("RecordsFailed")?,
            duplicate: count("RecordsDuplicate")?,
            conflict: count("RecordsConflict")?,
            invalid: count("RecordsInvalid")?,
        };
        let batch_write_latency_ms = document
            .get("BatchWriteLatency")
            .and_then(serde_json::Value::as_f64)?;
        Some(Self {
            document,
            counts,
            batch_write_latency_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_namespace_comes_from_metrics_namespace_else_the_default() {
        assert_eq!(Config::from_lookup(|_| None).namespace, DEFAULT_NAMESPACE);
        assert_eq!(
            Config::from_lookup(|_| Some("  ".into())).namespace,
            DEFAULT_NAMESPACE
        );
        assert_eq!(
            Config::from_lookup(|k| (k == NAMESPACE_VARIABLE).then(|| "Mine".into())).namespace,
            "Mine"
        );
    }

    #[tokio::test]
    async fn one_invocation_writes_one_emf_document_with_every_metric_and_its_unit() {
        let (metrics, captured) =
            Metrics::capture("AsyncApiPatterns", Pattern::SqsBuffer, Function::Consumer);
        {
            let invocation = metrics.invocation();
            invocation.count(Outcome::Stored);
            invocation.count(Outcome::Stored);
            invocation.count_many(Outcome::Invalid, 3);
            invocation
                .time_writes(tokio::time::sleep(Duration::from_millis(20)))
                .await;
            assert!(captured.documents().is_empty(), "nothing before the end");
        }
        let mut documents = captured.documents();
        assert_eq!(documents.len(), 1, "{documents:?}");
        let mut document = documents.remove(0);
        let latency = document["BatchWriteLatency"].as_f64().expect("a number");
        assert!((20.0..10_000.0).contains(&latency), "{latency}");
        assert!(document["_aws"]["Timestamp"].as_u64().is_some());
        document["BatchWriteLatency"] = json!(0);
        document["_aws"]["Timestamp"] = json!(0);
        assert_eq!(
            document,
            json!({
                "_aws": {
                    "CloudWatchMetrics": [{
                        "Namespace": "AsyncApiPatterns",
                        "Dimensions": [["Pattern", "Function"]],
                        "Metrics": [
                            {"Name": "RecordsStored", "Unit": "Count"},
                            {"Name": "RecordsFailed", "Unit": "Count"},
                            {"Name": "RecordsDuplicate", "Unit": "Count"},
                            {"Name": "RecordsConflict", "Unit": "Count"},
                            {"Name": "RecordsInvalid", "Unit": "Count"},
                            {"Name": "BatchWriteLatency", "Unit": "Milliseconds"}
                        ]
                    }],
                    "Timestamp": 0
                },
                "Pattern": "sqs-buffer",
                "Function": "consumer",
                "RecordsStored": 2,
                "RecordsFailed": 0,
                "RecordsDuplicate": 0,
                "RecordsConflict": 0,
                "RecordsInvalid": 3,
                "BatchWriteLatency": 0
            })
        );
    }

    #[test]
    fn an_invocation_that_counted_nothing_still_writes_its_zeros() {
        let (metrics, captured) =
            Metrics::capture("Elsewhere", Pattern::AsyncInvoke, Function::ErrorHandler);
        drop(metrics.invocation());
        let written = captured.only().expect("one document");
        assert_eq!(written.counts, Counts::default());
        assert_eq!(written.batch_write_latency_ms, 0.0);
        assert_eq!(written.document["Pattern"], "async-invoke");
        assert_eq!(written.document["Function"], "error-handler");
        assert_eq!(
            written.document["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "Elsewhere"
        );
        for name in [
            "RecordsStored",
            "RecordsFailed",
            "RecordsDuplicate",
            "RecordsConflict",
            "RecordsInvalid",
            "BatchWriteLatency",
        ] {
            assert_eq!(written.document[name], 0, "{name}");
        }
    }

    #[tokio::test]
    async fn records_counted_concurrently_are_all_counted_and_each_invocation_stands_alone() {
        let (metrics, captured) =
            Metrics::capture("Ns", Pattern::KinesisStream, Function::Consumer);
        {
            let invocation = metrics.invocation();
            let count = |outcome| {
                let invocation = &invocation;
                async move {
                    tokio::task::yield_now().await;
                    invocation.count(outcome);
                }
            };
            tokio::join!(
                count(Outcome::Stored),
                count(Outcome::Duplicate),
                count(Outcome::Stored),
                count(Outcome::Failed),
                count(Outcome::Conflict),
            );
        }
        drop(metrics.invocation());
        let documents = captured.documents();
        assert_eq!(documents.len(), 2);
        assert_eq!(
            (
                &documents[0]["RecordsStored"],
                &documents[0]["RecordsDuplicate"],
                &documents[0]["RecordsFailed"],
                &documents[0]["RecordsConflict"]
            ),
            (&json!(2), &json!(1), &json!(1), &json!(1))
        );
        assert_eq!(documents[1]["RecordsStored"], 0, "the next one starts at 0");
    }

    #[test]
    fn disabled_metrics_write_nothing_anywhere() {
        let metrics = Metrics::disabled(Pattern::UserApi, Function::Consumer);
        let invocation = metrics.invocation();
        invocation.count(Outcome::Stored);
        assert_eq!(invocation.counts().stored, 1);
        drop(invocation);
    }
}
