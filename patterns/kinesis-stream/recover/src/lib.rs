//! Recovery of failed Kinesis batches.
//!
//! The on-failure destination of a Kinesis event source mapping receives metadata only (shard,
//! sequence range, reason), never the records. [`recover`] reads those messages, fetches the
//! referenced records back from the stream while it still retains them, and replays them:
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
//! A message is deleted once all its records are recovered; when some have expired (retention
//! passed) or still fail, it stays, and the report says so.

use anyhow::{Context as _, Result, anyhow};
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use base64::Engine as _;
use batch_consumer::kinesis::{KinesisData, KinesisEvent, KinesisEventRecord, SequenceNumber};
use kinesis_stream_consumer::replay::Replayed;
use serde::Deserialize;

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
}

/// Parses one on-failure destination message.
pub fn parse_failure(body: &str) -> Result<BatchInfo> {
    Ok(serde_json::from_str::<FailureRecord>(body)
        .context("not a Kinesis on-failure record (no KinesisBatchInfo)")?
        .batch)
}

/// What happened to one failure message.
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
    /// Records found on the stream and replayed successfully.
    pub recovered: usize,
    /// Records no longer on the stream (retention passed).
    pub expired: usize,
    /// Records found but failing again (the cause is not fixed yet).
    pub still_failing: usize,
    /// Whether the failure message was deleted.
    pub deleted: bool,
}

/// Clients and settings for [`recover`].
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Kinesis, to read (and with [`Replay::Stream`], write) records.
    pub kinesis: aws_sdk_kinesis::Client,
    /// SQS, to read and delete failure messages.
    pub sqs: aws_sdk_sqs::Client,
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

impl Recovery {
    /// Reads the records of `batch` back from its stream: those still retained, in order.
    pub async fn fetch(&self, batch: &BatchInfo) -> Result<Vec<Record>> {
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
                    found.push(record.clone());
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
    async fn replay(&self, batch: &BatchInfo, records: &[Record]) -> Result<usize> {
        match self.replay {
            Replay::DryRun => Ok(0),
            Replay::Stream => {
                let name = stream_name(&batch.stream_arn)?;
                let mut too_large = 0;
                for record in records {
                    let data = stream_replay(&batch.shard_id, record);
                    if data.len() + record.partition_key().map_or(0, str::len) > MAX_RECORD_BYTES {
                        // It cannot go back on the stream with its envelope: recover it through
                        // the consumer (`--replay consumer`) instead.
                        too_large += 1;
                        continue;
                    }
                    self.kinesis
                        .put_record()
                        .stream_name(name)
                        .set_partition_key(record.partition_key().map(str::to_owned))
                        .data(aws_sdk_kinesis::primitives::Blob::new(data))
                        .send()
                        .await?;
                }
                Ok(too_large)
            }
            Replay::Consumer => {
                let consumer = self
                    .consumer
                    .as_ref()
                    .context("replay through the consumer needs its table (--table)")?;
                let event = KinesisEvent {
                    records: records
                        .iter()
                        .map(|r| KinesisEventRecord {
                            event_id: Some(format!("{}:{}", batch.shard_id, r.sequence_number())),
                            event_source_arn: Some(batch.stream_arn.clone()),
                            kinesis: KinesisData {
                                partition_key: r.partition_key().unwrap_or_default().to_owned(),
                                sequence_number: r.sequence_number().to_owned(),
                                data: base64::engine::general_purpose::STANDARD
                                    .encode(r.data().as_ref()),
                                approximate_arrival_timestamp: arrival_seconds(r),
                            },
                        })
                        .collect(),
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
                                .filter(|r| SequenceNumber::parse(r.sequence_number()) >= failed)
                                .count()
                        }
                    },
                )
            }
        }
    }
}

/// Largest record Kinesis accepts by default: data plus partition key, 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

fn arrival_seconds(record: &Record) -> Option<f64> {
    record
        .approximate_arrival_timestamp()
        .map(|t| t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9)
}

/// The data [`Replay::Stream`] puts back for `record` of `shard_id`: the record in a replay
/// envelope naming its original sequence number, or, if it is a replay already, as it is.
pub fn stream_replay(shard_id: &str, record: &Record) -> Vec<u8> {
    let data = record.data().as_ref();
    if let Some(Ok(_)) = Replayed::from_bytes(data) {
        return data.to_vec();
    }
    Replayed::new(
        record.sequence_number(),
        Some(shard_id),
        arrival_seconds(record),
        data,
    )
    .to_bytes()
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
            let still_failing = recovery.replay(&batch, &records).await?;
            let expired = batch.batch_size.saturating_sub(records.len());
            let complete = expired == 0 && still_failing == 0 && recovery.replay != Replay::DryRun;
            if complete {
                recovery
                    .sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await?;
            }
            report.push(Recovered {
                shard_id: batch.shard_id.clone(),
                start: batch.start_sequence_number.clone(),
                end: batch.end_sequence_number.clone(),
                expected: batch.batch_size,
                recovered: records.len() - still_failing,
                expired,
                still_failing,
                deleted: complete,
            });
        }
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

    fn stream_record(sequence: &str, data: &[u8]) -> Record {
        Record::builder()
            .sequence_number(sequence)
            .partition_key("k")
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .build()
            .expect("record")
    }

    #[test]
    fn a_record_goes_back_on_the_stream_inside_an_envelope_naming_its_sequence_number() {
        let data = stream_replay("shardId-000000000001", &stream_record("41", br#"{"v":1}"#));
        let envelope = Replayed::from_bytes(&data)
            .expect("an envelope")
            .expect("valid");
        assert_eq!(envelope.sequence_number, "41");
        assert_eq!(envelope.shard_id.as_deref(), Some("shardId-000000000001"));
        assert_eq!(envelope.payload, Some(serde_json::json!({"v": 1})));
        // A replay that failed again keeps naming the first original.
        let again = stream_replay("shardId-000000000001", &stream_record("77", &data));
        assert_eq!(again, data);
    }
}
