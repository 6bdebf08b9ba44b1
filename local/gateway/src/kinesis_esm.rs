//! Emulation of Lambda's Kinesis event source mapping, as the template declares it.
//!
//! One poller per shard reads the stream in order and invokes the function with batches of up to
//! `BatchSize` records (gathering for up to `MaximumBatchingWindowInSeconds`), from
//! `StartingPosition`. On failure it follows Lambda's rules:
//! - with `ReportBatchItemFailures`, it checkpoints before the **lowest** reported sequence number
//!   and retries from there; an empty, unknown or malformed identifier fails the whole batch;
//! - a function error (or timeout) fails the whole batch;
//! - with `BisectBatchOnFunctionError`, a failing batch is split in two and the halves retried
//!   separately (splitting does not count as a retry);
//! - after `MaximumRetryAttempts` retries, or once a record is older than
//!   `MaximumRecordAgeInSeconds`, the batch is discarded and its metadata (shard, sequence range,
//!   reason) sent to `DestinationConfig.OnFailure`; -1 means forever, as in AWS.
//!
//! Records of a shard are handed over one batch at a time (`ParallelizationFactor` is read and
//! checked, but batches of one shard are not run concurrently locally), which keeps the per-key
//! order the factor preserves in AWS.
//!
//! Checkpoints are kept as Lambda keeps them, outside the poller: with a file
//! ([`Checkpoints::load`]) a gateway started again resumes each shard after its last checkpoint,
//! never from `StartingPosition` again; what came after it is delivered again (at least once).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use base64::Engine as _;
use batch_consumer::kinesis::SequenceNumber;
use serde_json::{Value, json};

use crate::cfn::scalar_to_string;
use crate::cloudwatch::feed::{destination_delivery_failure, iterator_age};
use crate::functions::{Function, InvokeError};

/// How often an idle shard is polled (Lambda polls each shard about once a second; faster here
/// keeps local runs and tests snappy).
pub const IDLE_POLL: Duration = Duration::from_millis(200);

/// The checkpoints of every shard of every mapping: the sequence number of the last record done
/// with, by mapping UUID and shard id. With a file, each change is written to it (whole, then
/// renamed), so the checkpoints outlive the gateway.
#[derive(Debug, Default)]
pub struct Checkpoints {
    file: Option<PathBuf>,
    by_mapping: std::sync::Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl Checkpoints {
    /// Checkpoints kept in memory only.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The checkpoints `file` holds (none when it does not exist), kept there from now on.
    pub fn load(file: PathBuf) -> Result<Self> {
        let by_mapping = crate::durable::read_json(&file)?.unwrap_or_default();
        Ok(Self {
            file: Some(file),
            by_mapping: std::sync::Mutex::new(by_mapping),
        })
    }

    /// The checkpoint of `shard` of the mapping `uuid`.
    pub fn get(&self, uuid: &str, shard: &str) -> Option<String> {
        self.by_mapping
            .lock()
            .ok()?
            .get(uuid)
            .and_then(|shards| shards.get(shard))
            .cloned()
    }

    /// Sets the checkpoint of `shard` of the mapping `uuid` to `sequence`, and writes the file.
    pub fn set(&self, uuid: &str, shard: &str, sequence: &str) -> Result<()> {
        let mut by_mapping = self
            .by_mapping
            .lock()
            .map_err(|_| anyhow!("the checkpoints' lock is poisoned"))?;
        by_mapping
            .entry(uuid.to_owned())
            .or_default()
            .insert(shard.to_owned(), sequence.to_owned());
        // Written under the lock: two pollers never interleave their writes.
        match &self.file {
            Some(file) => crate::durable::write_json(file, &*by_mapping),
            None => Ok(()),
        }
    }
}

/// Where discarded batches go.
#[derive(Debug, Clone)]
pub enum OnFailure {
    /// An SQS queue: the batch's metadata only (which records, from where, why).
    Queue {
        /// Queue URL.
        url: String,
        /// Queue ARN, as the template names it.
        arn: String,
    },
    /// An S3 bucket: the metadata and the whole invocation, the records' data included ("For
    /// Amazon S3 destinations, Lambda also sends the entire invocation record along with the
    /// metadata", lambda developer guide, kinesis-on-failure-destination.html). The data then
    /// outlives the stream's retention.
    Bucket {
        /// Bucket name.
        name: String,
    },
}

/// One Kinesis event source mapping.
#[derive(Debug, Clone)]
pub struct KinesisMapping {
    /// The function fed by the mapping.
    pub function: Arc<Function>,
    /// Stream name.
    pub stream_name: String,
    /// Stream ARN (the records' `eventSourceARN`).
    pub stream_arn: String,
    /// `BatchSize` (default 100).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub batching_window: Duration,
    /// `StartingPosition`.
    pub starting_position: ShardIteratorType,
    /// `StartingPositionTimestamp`, for `AT_TIMESTAMP`.
    pub starting_timestamp: Option<f64>,
    /// `BisectBatchOnFunctionError`.
    pub bisect: bool,
    /// `MaximumRetryAttempts`; `None` retries until the record expires.
    pub max_retries: Option<u32>,
    /// `MaximumRecordAgeInSeconds`; `None` never discards for age.
    pub max_record_age: Option<Duration>,
    /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `ParallelizationFactor` (checked; see the module notes).
    pub parallelization_factor: u32,
    /// `DestinationConfig.OnFailure`.
    pub on_failure: Option<OnFailure>,
    /// The mapping's id (Lambda's event source mapping UUID), in S3 object keys and as the
    /// `Ref` of the mapping SAM generates ([`crate::stack::mapping_uuid`]).
    pub uuid: String,
    /// `MetricsConfig.Metrics` holds `EventCount`: the mapping publishes its event counts.
    pub event_count_metrics: bool,
}

fn number(props: &Value, key: &str, default: i64, id: &str) -> Result<i64> {
    props
        .get(key)
        .map(scalar_to_string)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| anyhow!("{id}: {key} {v:?} is not a number"))
        })
        .transpose()
        .map(|v| v.unwrap_or(default))
}

/// Reads the Kinesis event sources of `function`, with the limits Lambda enforces.
pub fn mappings_for(
    function: &Arc<Function>,
    streams_by_arn: &HashMap<String, String>,
    queues_by_arn: &HashMap<String, String>,
) -> Result<Vec<KinesisMapping>> {
    let mut out = Vec::new();
    let id = &function.id;
    let events = function.properties.get("Events").and_then(Value::as_object);
    for (name, event) in events.into_iter().flatten() {
        if event.get("Type").and_then(Value::as_str) != Some("Kinesis") {
            continue;
        }
        let props = event.get("Properties").cloned().unwrap_or(Value::Null);
        if props.get("Enabled").map(scalar_to_string).as_deref() == Some("false") {
            continue;
        }
        let stream_arn = props
            .get("Stream")
            .map(scalar_to_string)
            .unwrap_or_default();
        let stream_name = streams_by_arn.get(&stream_arn).cloned().ok_or_else(|| {
            anyhow!("{id}: event {name} reads stream {stream_arn}, which the stack does not hold")
        })?;
        let batch_size = number(&props, "BatchSize", 100, id)?;
        if !(1..=10_000).contains(&batch_size) {
            bail!("{id}: BatchSize must be 1-10000, got {batch_size}");
        }
        let window = number(&props, "MaximumBatchingWindowInSeconds", 0, id)?;
        if !(0..=300).contains(&window) {
            bail!("{id}: MaximumBatchingWindowInSeconds must be 0-300, got {window}");
        }
        let retries = number(&props, "MaximumRetryAttempts", -1, id)?;
        if !(-1..=10_000).contains(&retries) {
            bail!("{id}: MaximumRetryAttempts must be -1 to 10000, got {retries}");
        }
        let age = number(&props, "MaximumRecordAgeInSeconds", -1, id)?;
        if age != -1 && !(60..=604_800).contains(&age) {
            bail!("{id}: MaximumRecordAgeInSeconds must be -1 or 60-604800, got {age}");
        }
        let factor = number(&props, "ParallelizationFactor", 1, id)?;
        if !(1..=10).contains(&factor) {
            bail!("{id}: ParallelizationFactor must be 1-10, got {factor}");
        }
        let position = props
            .get("StartingPosition")
            .map(scalar_to_string)
            .unwrap_or_default();
        let starting_position = match position.as_str() {
            "TRIM_HORIZON" => ShardIteratorType::TrimHorizon,
            "LATEST" => ShardIteratorType::Latest,
            "AT_TIMESTAMP" => ShardIteratorType::AtTimestamp,
            other => bail!(
                "{id}: StartingPosition must be TRIM_HORIZON, LATEST or AT_TIMESTAMP, got {other:?}"
            ),
        };
        let starting_timestamp = props
            .get("StartingPositionTimestamp")
            .map(scalar_to_string)
            .and_then(|t| t.parse::<f64>().ok());
        if starting_position == ShardIteratorType::AtTimestamp && starting_timestamp.is_none() {
            bail!("{id}: AT_TIMESTAMP needs StartingPositionTimestamp");
        }
        let on_failure = match props.pointer("/DestinationConfig/OnFailure/Destination") {
            None => None,
            Some(destination) => {
                let arn = scalar_to_string(destination);
                match arn.split_once(":s3:::") {
                    Some((_, bucket)) if !bucket.is_empty() => Some(OnFailure::Bucket {
                        name: bucket.to_owned(),
                    }),
                    _ => {
                        let url = queues_by_arn.get(&arn).cloned().ok_or_else(|| {
                            anyhow!("{id}: on-failure destination {arn} is neither an SQS queue of the stack nor an S3 bucket (SNS is not served locally)")
                        })?;
                        Some(OnFailure::Queue { url, arn })
                    }
                }
            }
        };
        let flag = |key: &str| props.get(key).map(scalar_to_string).as_deref() == Some("true");
        out.push(KinesisMapping {
            function: function.clone(),
            stream_name,
            stream_arn,
            batch_size: batch_size as usize,
            batching_window: Duration::from_secs(window as u64),
            starting_position,
            starting_timestamp,
            bisect: flag("BisectBatchOnFunctionError"),
            max_retries: u32::try_from(retries).ok(),
            max_record_age: u64::try_from(age).ok().map(Duration::from_secs),
            report_batch_item_failures: props
                .get("FunctionResponseTypes")
                .and_then(Value::as_array)
                .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures")),
            uuid: crate::stack::mapping_uuid(&function.name, name),
            event_count_metrics: props
                .pointer("/MetricsConfig/Metrics")
                .and_then(Value::as_array)
                .is_some_and(|m| m.iter().any(|v| v == "EventCount")),
            parallelization_factor: factor as u32,
            on_failure,
        });
    }
    Ok(out)
}

/// What one invocation of a batch came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every record succeeded.
    Success,
    /// Records from this index on must be retried (0: the whole batch).
    FailedFrom(usize),
}

/// Interprets a function's answer for `batch` as Lambda does.
pub fn outcome(answer: &Result<Value, InvokeError>, batch: &[Record], report: bool) -> Outcome {
    let Ok(answer) = answer else {
        return Outcome::FailedFrom(0);
    };
    if !report {
        return Outcome::Success;
    }
    let list = match answer.get("batchItemFailures") {
        None | Some(Value::Null) => return Outcome::Success,
        Some(Value::Array(list)) if list.is_empty() => return Outcome::Success,
        Some(Value::Array(list)) => list,
        Some(_) => return Outcome::FailedFrom(0),
    };
    let mut lowest: Option<(SequenceNumber, usize)> = None;
    for item in list {
        let Some(id) = item
            .get("itemIdentifier")
            .and_then(Value::as_str)
            .and_then(SequenceNumber::parse)
        else {
            return Outcome::FailedFrom(0);
        };
        let Some(index) = batch
            .iter()
            .position(|r| SequenceNumber::parse(r.sequence_number()).as_ref() == Some(&id))
        else {
            return Outcome::FailedFrom(0);
        };
        if lowest.as_ref().is_none_or(|(low, _)| id < *low) {
            lowest = Some((id, index));
        }
    }
    lowest.map_or(Outcome::Success, |(_, index)| Outcome::FailedFrom(index))
}

impl KinesisMapping {
    /// Starts one poller per shard, each from its checkpoint in `checkpoints` if it has one
    /// (else from `StartingPosition`); they run until the process ends.
    pub async fn start(
        self: Arc<Self>,
        kinesis: aws_sdk_kinesis::Client,
        sqs: aws_sdk_sqs::Client,
        s3: aws_sdk_s3::Client,
        region: String,
        checkpoints: Arc<Checkpoints>,
    ) -> Result<usize> {
        let shards = kinesis
            .list_shards()
            .stream_name(&self.stream_name)
            .send()
            .await?;
        let ids: Vec<String> = shards
            .shards()
            .iter()
            .map(|s| s.shard_id().to_owned())
            .collect();
        for shard in &ids {
            let checkpoint = checkpoints.get(&self.uuid, shard);
            if let Some(sequence) = &checkpoint {
                tracing::info!(function = %self.function.id, shard = %shard, after = %sequence, "Kinesis poller resumes after its checkpoint");
            }
            let poller = ShardPoller {
                checkpoint: std::sync::Mutex::new(checkpoint),
                checkpoints: checkpoints.clone(),
                mapping: self.clone(),
                shard: shard.clone(),
                kinesis: kinesis.clone(),
                sqs: sqs.clone(),
                s3: s3.clone(),
                region: region.clone(),
            };
            // The checkpoint outlives a panic: a restarted poller resumes after it.
            let poller = Arc::new(poller);
            let name = format!("Kinesis poller of {} on {shard}", self.function.id);
            crate::tasks::supervise(name, move || {
                let poller = poller.clone();
                async move {
                    loop {
                        match poller.run().await {
                            Ok(()) => return, // the shard is closed and drained
                            Err(error) => {
                                tracing::warn!(function = %poller.mapping.function.id, shard = %poller.shard, error = %format!("{error:#}"), "Kinesis poller failed; restarting");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            });
        }
        Ok(ids.len())
    }
}

struct ShardPoller {
    /// Sequence number of the last record done with: a restarted poller resumes after it.
    checkpoint: std::sync::Mutex<Option<String>>,
    /// Where the checkpoint is kept beyond the poller.
    checkpoints: Arc<Checkpoints>,
    mapping: Arc<KinesisMapping>,
    shard: String,
    kinesis: aws_sdk_kinesis::Client,
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    region: String,
}

fn arrival_seconds(record: &Record) -> f64 {
    record
        .approximate_arrival_timestamp()
        .map(|t| t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9)
        .unwrap_or_default()
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl ShardPoller {
    async fn iterator(&self, after: Option<&str>) -> Result<Option<String>> {
        let m = &self.mapping;
        let mut request = self
            .kinesis
            .get_shard_iterator()
            .stream_name(&m.stream_name)
            .shard_id(&self.shard);
        request = match after {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
            None => {
                let mut r = request.shard_iterator_type(m.starting_position.clone());
                if let Some(ts) = m.starting_timestamp {
                    r = r.timestamp(aws_sdk_kinesis::primitives::DateTime::from_secs_f64(ts));
                }
                r
            }
        };
        Ok(request.send().await?.shard_iterator)
    }

    /// Reads and processes the shard until it closes (or an error restarts the poller from its
    /// checkpoint, as Lambda would).
    async fn run(&self) -> Result<()> {
        let m = &self.mapping;
        let resume = self
            .checkpoint
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        let mut iterator = self.iterator(resume.as_deref()).await?;
        let mut pending: VecDeque<Record> = VecDeque::new();
        let mut limit = m.batch_size;
        let mut retries = 0u32;
        let mut invokes = 0u32;
        let mut throttled = 0u32;
        let mut window_started: Option<std::time::Instant> = None;
        loop {
            if pending.len() < m.batch_size
                && let Some(it) = iterator.clone()
            {
                let out = self
                    .kinesis
                    .get_records()
                    .shard_iterator(it)
                    .limit((m.batch_size - pending.len()).min(10_000) as i32)
                    .send()
                    .await?;
                iterator = out.next_shard_iterator().map(str::to_owned);
                pending.extend(out.records().iter().cloned());
            }
            if pending.is_empty() {
                if iterator.is_none() {
                    return Ok(()); // the shard is closed and drained
                }
                tokio::time::sleep(IDLE_POLL).await;
                continue;
            }
            // Batching window: wait for a full batch, but no longer than the window.
            if pending.len() < m.batch_size && !m.batching_window.is_zero() {
                let started = *window_started.get_or_insert_with(std::time::Instant::now);
                if started.elapsed() < m.batching_window {
                    tokio::time::sleep(IDLE_POLL.min(m.batching_window)).await;
                    continue;
                }
            }
            window_started = None;
            // Records past their maximum age are discarded without another invoke.
            if let Some(max_age) = m.max_record_age {
                let now = now_seconds();
                let expired = pending
                    .iter()
                    .take_while(|r| now - arrival_seconds(r) > max_age.as_secs_f64())
                    .count();
                if expired > 0 {
                    let batch: Vec<Record> = pending.drain(..expired).collect();
                    self.discard(&batch, "RecordAgeExceeded", invokes).await?;
                    self.set_checkpoint(batch.last());
                    (limit, retries, invokes) = (m.batch_size, 0, 0);
                    continue;
                }
            }
            let size = limit.min(pending.len());
            let batch: Vec<Record> = pending.iter().take(size).cloned().collect();
            if let Some(last) = batch.last() {
                // IteratorAge: how old the batch's last record is as it goes to the function
                // (lambda developer guide, "Types of metrics for Lambda functions").
                iterator_age(
                    &m.function.name,
                    (now_seconds() - arrival_seconds(last)) * 1000.0,
                );
            }
            if let (Some(first), Some(last)) = (batch.first(), batch.last()) {
                tracing::debug!(function = %m.function.id, shard = %self.shard, first = %first.sequence_number(), last = %last.sequence_number(), records = batch.len(), "Kinesis batch handed to the function");
            }
            let answer = m.function.invoke(self.event(&batch)).await;
            if let Err(error @ InvokeError::Throttled { .. }) = &answer {
                // A throttle is not an attempt: the same batch is tried again, later.
                throttled = (throttled + 1).min(6);
                tracing::warn!(function = %m.function.id, shard = %self.shard, error = %error, "throttled; retrying the batch");
                tokio::time::sleep(Duration::from_millis(100 << throttled)).await;
                continue;
            }
            throttled = 0;
            invokes += 1;
            match outcome(&answer, &batch, m.report_batch_item_failures) {
                Outcome::Success => {
                    pending.drain(..size);
                    self.set_checkpoint(batch.last());
                    (limit, retries, invokes) = (m.batch_size, 0, 0);
                }
                Outcome::FailedFrom(index) => {
                    if let Err(error) = &answer {
                        tracing::warn!(function = %m.function.id, shard = %self.shard, error = %error, records = size, "function error");
                    }
                    // Checkpoint before the lowest failed record: what came before is done.
                    if index > 0 {
                        pending.drain(..index);
                        self.set_checkpoint(batch.get(index - 1));
                    }
                    let remaining = size - index;
                    if m.bisect && remaining > 1 {
                        limit = remaining.div_ceil(2);
                        tracing::info!(function = %m.function.id, shard = %self.shard, from = remaining, to = limit, "bisecting the failed batch");
                    } else {
                        retries += 1;
                        let exhausted = m.max_retries.is_some_and(|max| retries > max);
                        if exhausted {
                            let failed: Vec<Record> =
                                pending.drain(..remaining.min(pending.len())).collect();
                            self.discard(&failed, "RetryAttemptsExhausted", invokes)
                                .await?;
                            self.set_checkpoint(failed.last());
                            (limit, retries, invokes) = (m.batch_size, 0, 0);
                        } else {
                            limit = remaining;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            if iterator.is_none() && pending.is_empty() {
                return Ok(());
            }
        }
    }

    fn set_checkpoint(&self, record: Option<&Record>) {
        let Some(record) = record else {
            return;
        };
        if let Ok(mut checkpoint) = self.checkpoint.lock() {
            *checkpoint = Some(record.sequence_number().to_owned());
        }
        let m = &self.mapping;
        if let Err(error) = self
            .checkpoints
            .set(&m.uuid, &self.shard, record.sequence_number())
        {
            tracing::error!(function = %m.function.id, shard = %self.shard, error = %format!("{error:#}"), "cannot keep the checkpoint; a restarted gateway would deliver its records again");
        }
    }

    /// The Kinesis event Lambda would send for `batch`.
    fn event(&self, batch: &[Record]) -> Value {
        let m = &self.mapping;
        let records: Vec<Value> = batch
            .iter()
            .map(|r| {
                json!({
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r.partition_key().unwrap_or_default(),
                        "sequenceNumber": r.sequence_number(),
                        "data": base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
                        "approximateArrivalTimestamp": arrival_seconds(r),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": format!("{}:{}", self.shard, r.sequence_number()),
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": format!("arn:aws:iam::{}:role/local-gateway", crate::ACCOUNT_ID),
                    "awsRegion": self.region,
                    "eventSourceARN": m.stream_arn,
                })
            })
            .collect();
        json!({ "Records": records })
    }

    /// Sends the metadata of a discarded batch to the on-failure destination, in the shape Lambda
    /// uses (`requestContext`, `responseContext`, `KinesisBatchInfo`), or logs it without one.
    async fn discard(&self, batch: &[Record], condition: &str, invokes: u32) -> Result<()> {
        let m = &self.mapping;
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let iso = |secs: f64| {
            aws_sdk_kinesis::primitives::DateTime::from_secs_f64(secs)
                .fmt(aws_sdk_kinesis::primitives::DateTimeFormat::DateTime)
                .unwrap_or_default()
        };
        let record = json!({
            "requestContext": {
                "requestId": uuid::Uuid::new_v4().to_string(),
                "functionArn": m.function.arn,
                "condition": condition,
                "approximateInvokeCount": invokes,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": iso(now_seconds()),
            "KinesisBatchInfo": {
                "shardId": self.shard,
                "startSequenceNumber": first.sequence_number(),
                "endSequenceNumber": last.sequence_number(),
                "approximateArrivalOfFirstRecord": iso(arrival_seconds(first)),
                "approximateArrivalOfLastRecord": iso(arrival_seconds(last)),
                "batchSize": batch.len(),
                "streamArn": m.stream_arn,
            }
        });
        tracing::warn!(
            function = %m.function.id,
            shard = %self.shard,
            condition,
            start = first.sequence_number(),
            end = last.sequence_number(),
            records = batch.len(),
            "batch discarded"
        );
        // The mapping's event counts (lambda developer guide, monitoring-metrics-types, "Event
        // source mapping metrics", published when MetricsConfig asks for EventCount): records
        // given up on (expired or out of retries) are dropped; those the on-failure
        // destination then holds are counted as delivered there.
        let count = |metric: &str| {
            if m.event_count_metrics {
                crate::cloudwatch::store::record_metric(
                    crate::cloudwatch::feed::LAMBDA,
                    metric,
                    &[("EventSourceMappingUUID", &m.uuid)],
                    batch.len() as f64,
                );
            }
        };
        count("DroppedEventCount");
        match &m.on_failure {
            Some(OnFailure::Queue { url, .. }) => {
                self.sqs
                    .send_message()
                    .queue_url(url)
                    .message_body(record.to_string())
                    .send()
                    .await
                    .inspect_err(|_| destination_delivery_failure(&m.function.name))?;
            }
            Some(OnFailure::Bucket { name }) => {
                // The object holds the metadata and the invocation's event ("payload", as a JSON
                // string); the key follows Lambda's aws/lambda/<mapping>/<shard>/<date>/<time>-<id>.
                // Both shapes are local readings of the docs; only a deployment can confirm them.
                let mut object = record;
                object["payload"] = Value::String(self.event(batch).to_string());
                let now = aws_sdk_kinesis::primitives::DateTime::from_secs_f64(now_seconds())
                    .fmt(aws_sdk_kinesis::primitives::DateTimeFormat::DateTime)
                    .unwrap_or_default();
                let (date, time) = now.split_once('T').unwrap_or((now.as_str(), ""));
                let key = format!(
                    "aws/lambda/{}/{}/{}/{}T{}-{}",
                    m.uuid,
                    self.shard,
                    date.replace('-', "/"),
                    date,
                    time.trim_end_matches('Z')
                        .split('.')
                        .next()
                        .unwrap_or_default()
                        .replace(':', "."),
                    uuid::Uuid::new_v4()
                );
                self.s3
                    .put_object()
                    .bucket(name)
                    .key(key)
                    .content_type("application/json")
                    .body(object.to_string().into_bytes().into())
                    .send()
                    .await
                    .inspect_err(|_| destination_delivery_failure(&m.function.name))?;
            }
            None => return Ok(()),
        }
        count("OnFailureDestinationDeliveredEventCount");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::{FunctionError, InvokeError};

    fn records(seqs: &[&str]) -> Vec<Record> {
        seqs.iter()
            .map(|s| {
                Record::builder()
                    .sequence_number(*s)
                    .partition_key("k")
                    .data(aws_sdk_kinesis::primitives::Blob::new(b"{}".to_vec()))
                    .build()
                    .expect("record")
            })
            .collect()
    }

    fn failed(ids: &[&str]) -> Result<Value, InvokeError> {
        let items: Vec<Value> = ids.iter().map(|i| json!({"itemIdentifier": i})).collect();
        Ok(json!({ "batchItemFailures": items }))
    }

    #[test]
    fn lowest_reported_sequence_number_sets_the_checkpoint() {
        let batch = records(&["9", "10", "11"]);
        assert_eq!(
            outcome(&failed(&["11", "10"]), &batch, true),
            Outcome::FailedFrom(1)
        );
        assert_eq!(outcome(&failed(&[]), &batch, true), Outcome::Success);
        assert_eq!(outcome(&Ok(json!({})), &batch, true), Outcome::Success);
    }

    #[test]
    fn bad_identifiers_and_errors_fail_the_whole_batch() {
        let batch = records(&["9", "10"]);
        assert_eq!(
            outcome(&failed(&[""]), &batch, true),
            Outcome::FailedFrom(0)
        );
        assert_eq!(
            outcome(&failed(&["12"]), &batch, true),
            Outcome::FailedFrom(0)
        );
        let error = Err(InvokeError::Function(FunctionError::new("E", "m")));
        assert_eq!(outcome(&error, &batch, true), Outcome::FailedFrom(0));
        assert_eq!(outcome(&error, &batch, false), Outcome::FailedFrom(0));
    }

    #[test]
    fn checkpoints_round_trip_through_their_file() {
        let dir = std::env::temp_dir().join(format!("checkpoints-{}", uuid::Uuid::new_v4()));
        let file = dir.join("checkpoints.json");
        let kept = Checkpoints::load(file.clone()).expect("no file yet");
        assert_eq!(kept.get("m", "shard-0"), None);
        kept.set("m", "shard-0", "10").expect("set");
        kept.set("m", "shard-0", "12").expect("set");
        kept.set("m", "shard-1", "7").expect("set");
        kept.set("other", "shard-0", "3").expect("set");
        let back = Checkpoints::load(file).expect("load");
        assert_eq!(back.get("m", "shard-0").as_deref(), Some("12"));
        assert_eq!(back.get("m", "shard-1").as_deref(), Some("7"));
        assert_eq!(back.get("other", "shard-0").as_deref(), Some("3"));
        assert_eq!(back.get("other", "shard-1"), None);
        let memory = Checkpoints::in_memory();
        memory.set("m", "s", "1").expect("set");
        assert_eq!(memory.get("m", "s").as_deref(), Some("1"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn without_report_batch_item_failures_an_answer_is_success() {
        let batch = records(&["9"]);
        assert_eq!(outcome(&failed(&["9"]), &batch, false), Outcome::Success);
    }
}
