//! Recovery of failed Kinesis batches.
//!
//! The on-failure destination of a Kinesis event source mapping receives, from an SQS queue or an
//! SNS topic, metadata only (shard, sequence range, reason), never the records. [`recover`] reads
//! those messages, fetches the referenced records back from the stream while it still retains
//! them, and replays them. An Amazon S3 on-failure destination also receives the records: Lambda
//! writes one object per failed batch whose `payload` is the original invocation record (the
//! event, as an escaped JSON string). [`recover_file`] replays such an object from a local file,
//! without the stream, so a batch outlives the stream's retention.
//!
//! Replays:
//! - [`Replay::Consumer`] (default) runs them through the consumer's own code with their
//!   **original** sequence numbers, so its ordering guard still holds: a recovered record never
//!   overwrites a newer one applied meanwhile;
//! - [`Replay::Stream`] puts them back on the stream, processed again by the deployed consumer.
//!   Kinesis gives each put a new, higher sequence number, so every record goes back inside a
//!   replay envelope (`kinesis_stream_consumer::replay`) that carries its original sequence
//!   number; the consumer guards the write with that one, so here too a recovered record never
//!   overwrites a newer update of its key. A record that is already an envelope (a replay that
//!   failed again) is put back as it is, still naming the first original.
//!
//! A queue message is deleted once all its records are recovered; when some have expired
//! (retention passed) or still fail, it stays, and the report says so. A file is never changed.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use base64::Engine as _;
use batch_consumer::kinesis::{KinesisData, KinesisEvent, KinesisEventRecord, SequenceNumber};
use kinesis_stream_consumer::replay::Replayed;
use serde::Deserialize;
use serde_json::Value;

/// Where recovered records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Through the consumer's code, with the original sequence numbers.
    Consumer,
    /// Back onto the stream, each record in a replay envelope naming its original sequence
    /// number.
    Stream,
    /// Nowhere: only report what could be recovered.
    DryRun,
}

/// The parts of an on-failure record the recovery needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    /// Shard of the batch.
    pub shard_id: String,
    /// First sequence number of the batch.
    pub start_sequence_number: String,
    /// Last sequence number of the batch.
    pub end_sequence_number: String,
    /// Records in the batch.
    pub batch_size: usize,
    /// The stream.
    pub stream_arn: String,
}

#[derive(Debug, Deserialize)]
struct FailureRecord {
    #[serde(rename = "KinesisBatchInfo")]
    batch: BatchInfo,
    /// Only in an S3 destination's object: the original invocation record.
    #[serde(default)]
    payload: Option<Value>,
}

/// Parses one on-failure destination message.
pub fn parse_failure(body: &str) -> Result<BatchInfo> {
    Ok(serde_json::from_str::<FailureRecord>(body)
        .context("not a Kinesis on-failure record (no KinesisBatchInfo)")?
        .batch)
}

/// An on-failure record as an Amazon S3 destination keeps it: the metadata, and the records.
#[derive(Debug, Clone)]
pub struct FailureObject {
    /// The metadata (`KinesisBatchInfo`).
    pub batch: BatchInfo,
    /// The records of the failed invocation, from `payload`; `None` when the object has none
    /// (then they can only be fetched back from the stream).
    pub records: Option<Vec<KinesisEventRecord>>,
}

/// Parses an object written by an Amazon S3 on-failure destination. `payload` is the original
/// invocation record, a Kinesis event (`{"Records": [...]}`), as an escaped JSON string (Lambda
/// developer guide, kinesis-on-failure-destination); a JSON object is accepted too.
pub fn parse_failure_object(text: &str) -> Result<FailureObject> {
    let record: FailureRecord = serde_json::from_str(text)
        .context("not a Kinesis on-failure record (no KinesisBatchInfo)")?;
    let records = match record.payload {
        None | Some(Value::Null) => None,
        Some(Value::String(escaped)) => Some(
            serde_json::from_str::<KinesisEvent>(&escaped)
                .context("payload is not a Kinesis event")?
                .records,
        ),
        Some(event @ Value::Object(_)) => Some(
            serde_json::from_value::<KinesisEvent>(event)
                .context("payload is not a Kinesis event")?
                .records,
        ),
        Some(_) => return Err(anyhow!("payload is neither a JSON string nor an object")),
    };
    Ok(FailureObject {
        batch: record.batch,
        records,
    })
}

/// What happened to one failure message or file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Shard and range, for the report.
    pub shard_id: String,
    /// First sequence number.
    pub start: String,
    /// Last sequence number.
    pub end: String,
    /// Records the batch held.
    pub expected: usize,
    /// Records found and replayed successfully.
    pub recovered: usize,
    /// Records not found: no longer on the stream (retention passed), or missing from the file.
    pub expired: usize,
    /// Records found but failing again (the cause is not fixed yet).
    pub still_failing: usize,
    /// Whether every record was recovered (never true for a dry run).
    pub complete: bool,
    /// Whether the failure message was deleted (a file never is).
    pub deleted: bool,
}

/// Clients and settings for [`recover`] and [`recover_file`].
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Kinesis, to read (and with [`Replay::Stream`], write) records.
    pub kinesis: aws_sdk_kinesis::Client,
    /// SQS, to read and delete failure messages.
    pub sqs: aws_sdk_sqs::Client,
    /// S3, to read and delete the objects of an S3 on-failure destination.
    pub s3: aws_sdk_s3::Client,
    /// The consumer, for [`Replay::Consumer`].
    pub consumer: Option<kinesis_stream_consumer::Consumer>,
    /// How to replay.
    pub replay: Replay,
}

fn stream_name(arn: &str) -> Result<&str> {
    arn.split_once(":stream/")
        .map(|(_, name)| name)
        .ok_or_else(|| anyhow!("{arn} is not a Kinesis stream ARN"))
}

fn arrival_seconds(record: &Record) -> Option<f64> {
    record
        .approximate_arrival_timestamp()
        .map(|t| t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9)
}

/// A record read from the stream, in the shape Lambda delivers it.
fn event_record(batch: &BatchInfo, record: &Record) -> KinesisEventRecord {
    KinesisEventRecord {
        event_id: Some(format!("{}:{}", batch.shard_id, record.sequence_number())),
        event_source_arn: Some(batch.stream_arn.clone()),
        kinesis: KinesisData {
            partition_key: record.partition_key().unwrap_or_default().to_owned(),
            sequence_number: record.sequence_number().to_owned(),
            data: base64::engine::general_purpose::STANDARD.encode(record.data().as_ref()),
            approximate_arrival_timestamp: arrival_seconds(record),
        },
    }
}

impl Recovery {
    /// Reads the records of `batch` back from its stream: those still retained, in order.
    pub async fn fetch(&self, batch: &BatchInfo) -> Result<Vec<KinesisEventRecord>> {
        let start = SequenceNumber::parse(&batch.start_sequence_number)
            .context("bad startSequenceNumber")?;
        let end =
            SequenceNumber::parse(&batch.end_sequence_number).context("bad endSequenceNumber")?;
        let iterator = self
            .kinesis
            .get_shard_iterator()
            .stream_name(stream_name(&batch.stream_arn)?)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .starting_sequence_number(&batch.start_sequence_number)
            .send()
            .await;
        // A trimmed start position (or a deleted stream) means the records are gone.
        let Ok(iterator) = iterator else {
            return Ok(Vec::new());
        };
        let mut iterator = iterator.shard_iterator;
        let mut found = Vec::new();
        while let Some(it) = iterator {
            let out = self
                .kinesis
                .get_records()
                .shard_iterator(it)
                .limit(1000)
                .send()
                .await?;
            let mut past_end = out.records().is_empty();
            for record in out.records() {
                let Some(seq) = SequenceNumber::parse(record.sequence_number()) else {
                    continue;
                };
                if seq > end {
                    past_end = true;
                    break;
                }
                if seq >= start {
                    found.push(event_record(batch, record));
                }
            }
            if past_end || found.len() >= batch.batch_size {
                break;
            }
            iterator = out.next_shard_iterator().map(str::to_owned);
        }
        Ok(found)
    }

    /// Replays `records` of `batch`; returns how many still failed.
    async fn replay(&self, batch: &BatchInfo, records: &[KinesisEventRecord]) -> Result<usize> {
        match self.replay {
            Replay::DryRun => Ok(0),
            Replay::Stream => {
                let name = stream_name(&batch.stream_arn)?;
                let mut not_put = 0;
                for record in records {
                    let key = &record.kinesis.partition_key;
                    // Data that is not base64 cannot be put back; data whose envelope would be
                    // over Kinesis's limit neither: recover those through the consumer
                    // (`--replay consumer`) instead.
                    let Some(data) = stream_replay(&batch.shard_id, record)
                        .filter(|data| data.len() + key.len() <= MAX_RECORD_BYTES)
                    else {
                        not_put += 1;
                        continue;
                    };
                    self.kinesis
                        .put_record()
                        .stream_name(name)
                        .partition_key(key)
                        .data(aws_sdk_kinesis::primitives::Blob::new(data))
                        .send()
                        .await?;
                }
                Ok(not_put)
            }
            Replay::Consumer => {
                let consumer = self
                    .consumer
                    .as_ref()
                    .context("replay through the consumer needs its table (--table)")?;
                let event = KinesisEvent {
                    records: records.to_vec(),
                };
                let response = consumer.handle(event).await?;
                // The consumer names the lowest failed record: it and everything after it failed.
                Ok(
                    match response
                        .batch_item_failures
                        .first()
                        .and_then(|f| f.item_identifier.as_deref())
                    {
                        None => 0,
                        Some(failed) => {
                            let failed = SequenceNumber::parse(failed);
                            records
                                .iter()
                                .filter(|r| {
                                    SequenceNumber::parse(&r.kinesis.sequence_number) >= failed
                                })
                                .count()
                        }
                    },
                )
            }
        }
    }

    /// Replays the records of `batch` and says what happened.
    async fn recover_batch(
        &self,
        batch: &BatchInfo,
        records: &[KinesisEventRecord],
    ) -> Result<Recovered> {
        let still_failing = self.replay(batch, records).await?;
        let expired = batch.batch_size.saturating_sub(records.len());
        Ok(Recovered {
            shard_id: batch.shard_id.clone(),
            start: batch.start_sequence_number.clone(),
            end: batch.end_sequence_number.clone(),
            expected: batch.batch_size,
            recovered: records.len() - still_failing,
            expired,
            still_failing,
            complete: expired == 0 && still_failing == 0 && self.replay != Replay::DryRun,
            deleted: false,
        })
    }
}

/// Largest record Kinesis accepts by default: data plus partition key, 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The data [`Replay::Stream`] puts back for `record` of `shard_id`: the record in a replay
/// envelope naming its original sequence number, or, if it is a replay already, as it is.
/// `None` if the record's data is not base64.
pub fn stream_replay(shard_id: &str, record: &KinesisEventRecord) -> Option<Vec<u8>> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(record.kinesis.data.trim())
        .ok()?;
    if let Some(Ok(_)) = Replayed::from_bytes(&data) {
        return Some(data);
    }
    Some(
        Replayed::new(
            &record.kinesis.sequence_number,
            Some(record.shard_id().unwrap_or(shard_id)),
            record.kinesis.approximate_arrival_timestamp,
            &data,
        )
        .to_bytes(),
    )
}

/// Processes up to `max` failure messages from `queue_url`.
pub async fn recover(recovery: &Recovery, queue_url: &str, max: usize) -> Result<Vec<Recovered>> {
    let mut report = Vec::new();
    while report.len() < max {
        let out = recovery
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages((max - report.len()).min(10) as i32)
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .send()
            .await
            .context("ReceiveMessage on the on-failure queue failed")?;
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for message in messages {
            let batch = parse_failure(message.body().unwrap_or_default())?;
            let records = recovery.fetch(&batch).await?;
            let mut recovered = recovery.recover_batch(&batch, &records).await?;
            if recovered.complete {
                recovery
                    .sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
                recovered.deleted = true;
            }
            report.push(recovered);
        }
    }
    Ok(report)
}

/// Recovers the batch of one object an Amazon S3 on-failure destination wrote, read from `path`:
/// from the records in its `payload`, or, if it has none, from the stream as [`recover`] does.
pub async fn recover_file(recovery: &Recovery, path: &Path) -> Result<Recovered> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let object = parse_failure_object(&text).with_context(|| format!("in {}", path.display()))?;
    let records = match object.records {
        Some(records) => records,
        None => recovery.fetch(&object.batch).await?,
    };
    recovery.recover_batch(&object.batch, &records).await
}

/// Processes up to `max` objects of the S3 on-failure destination `bucket` (Lambda writes them
/// under `aws/lambda/`): each is recovered as [`recover_file`] recovers a downloaded one, and
/// deleted once all its records are recovered (a versioned bucket keeps the old version).
pub async fn recover_bucket(
    recovery: &Recovery,
    bucket: &str,
    max: usize,
) -> Result<Vec<Recovered>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = recovery
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix("aws/lambda/")
            .set_continuation_token(token)
            .send()
            .await
            .context("ListObjectsV2 on the on-failure bucket failed")?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() || keys.len() >= max {
            break;
        }
    }
    let mut report = Vec::new();
    for key in keys.into_iter().take(max) {
        let object = recovery
            .s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .with_context(|| format!("GetObject {key} failed"))?;
        let bytes = object
            .body
            .collect()
            .await
            .with_context(|| format!("reading {key} failed"))?
            .into_bytes();
        let kept = parse_failure_object(&String::from_utf8_lossy(&bytes))
            .with_context(|| format!("in {key}"))?;
        let records = match kept.records {
            Some(records) => records,
            None => recovery.fetch(&kept.batch).await?,
        };
        let mut recovered = recovery.recover_batch(&kept.batch, &records).await?;
        if recovered.complete {
            recovery
                .s3
                .delete_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .with_context(|| format!("DeleteObject {key} failed"))?;
            recovered.deleted = true;
        }
        report.push(recovered);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_failure_record_lambda_sends() {
        let body = r#"{"requestContext":{"condition":"RetryAttemptsExhausted","approximateInvokeCount":4},
            "KinesisBatchInfo":{"shardId":"shardId-000000000000","startSequenceNumber":"3","endSequenceNumber":"5",
            "batchSize":3,"streamArn":"arn:aws:kinesis:us-east-1:123456789012:stream/s-events",
            "approximateArrivalOfFirstRecord":"2026-11-22T05:57:50Z","approximateArrivalOfLastRecord":"2026-11-22T05:57:50Z"}}"#;
        let batch = parse_failure(body).expect("valid");
        assert_eq!(
            (batch.start_sequence_number.as_str(), batch.batch_size),
            ("3", 3)
        );
        assert_eq!(stream_name(&batch.stream_arn).expect("arn"), "s-events");
        assert!(parse_failure(r#"{"something":"else"}"#).is_err());
    }

    fn stream_record(sequence: &str, data: &[u8]) -> KinesisEventRecord {
        KinesisEventRecord {
            event_id: Some(format!("shardId-000000000001:{sequence}")),
            event_source_arn: None,
            kinesis: KinesisData {
                partition_key: "k".into(),
                sequence_number: sequence.into(),
                data: base64::engine::general_purpose::STANDARD.encode(data),
                approximate_arrival_timestamp: Some(2.5),
            },
        }
    }

    #[test]
    fn a_record_goes_back_on_the_stream_inside_an_envelope_naming_its_sequence_number() {
        let data = stream_replay("shardId-000000000001", &stream_record("41", br#"{"v":1}"#))
            .expect("base64");
        let envelope = Replayed::from_bytes(&data)
            .expect("an envelope")
            .expect("valid");
        assert_eq!(envelope.sequence_number, "41");
        assert_eq!(envelope.shard_id.as_deref(), Some("shardId-000000000001"));
        assert_eq!(envelope.approximate_arrival_timestamp, Some(2.5));
        assert_eq!(envelope.payload, Some(serde_json::json!({"v": 1})));
        // A replay that failed again keeps naming the first original.
        let again =
            stream_replay("shardId-000000000001", &stream_record("77", &data)).expect("base64");
        assert_eq!(again, data);
        let mut garbled = stream_record("78", b"{}");
        garbled.kinesis.data = "%%%".into();
        assert_eq!(stream_replay("shardId-000000000001", &garbled), None);
    }

    #[test]
    fn parses_the_object_an_s3_destination_writes_with_the_event_as_an_escaped_string() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/s3-on-failure-object.json"
        ))
        .expect("fixture");
        let object = parse_failure_object(&text).expect("valid");
        assert_eq!(object.batch.batch_size, 2);
        let records = object.records.expect("records in the payload");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].kinesis.partition_key, "order-7");
        assert_eq!(records[0].shard_id(), Some(object.batch.shard_id.as_str()));

        // The same event as an object, and an object without a payload.
        let mut value: Value = serde_json::from_str(&text).expect("json");
        let escaped = value["payload"].as_str().expect("string").to_owned();
        value["payload"] = serde_json::from_str(&escaped).expect("event");
        let as_object = parse_failure_object(&value.to_string()).expect("valid");
        assert_eq!(as_object.records.map(|r| r.len()), Some(2));
        value.as_object_mut().expect("object").remove("payload");
        assert!(
            parse_failure_object(&value.to_string())
                .expect("valid")
                .records
                .is_none()
        );
        value["payload"] = serde_json::json!(42);
        assert!(parse_failure_object(&value.to_string()).is_err());
    }
}
