//! Recovery of failed Kinesis batches.
//!
//! Two kinds of on-failure destination, two sources:
//! - an **S3 bucket** (this pattern's): Lambda writes the metadata *and* the whole invocation, the
//!   records' data included, so [`recover_bucket`] replays them from the object, however long ago
//!   the stream dropped them;
//! - an **SQS queue** (or SNS): metadata only (shard, sequence range, reason), never the records;
//!   [`recover`] fetches the referenced records back from the stream while it still retains them.
//!
//! Either way the records are replayed:
//! - [`Replay::Consumer`] (default) runs them through the consumer's own code with their
//!   **original** sequence numbers, so its ordering guard still holds: a recovered record never
//!   overwrites a newer one applied meanwhile;
//! - [`Replay::Stream`] puts them back on the stream (new sequence numbers, processed again by the
//!   deployed consumer).
//!
//! A message (or object) is deleted once all its records are recovered; when some have expired
//! (retention passed) or still fail, it stays, and the report says so.

use anyhow::{Context as _, Result, anyhow};
use aws_sdk_kinesis::types::{Record, ShardIteratorType};
use base64::Engine as _;
use batch_consumer::kinesis::{KinesisData, KinesisEvent, KinesisEventRecord, SequenceNumber};
use serde::Deserialize;

/// Where recovered records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Through the consumer's code, with the original sequence numbers.
    Consumer,
    /// Back onto the stream.
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

/// A failed batch as an S3 on-failure destination keeps it: the metadata and the records.
#[derive(Debug, Clone)]
pub struct KeptBatch {
    /// Shard, range and stream.
    pub batch: BatchInfo,
    /// The records, as the function received them (data in base64, original sequence numbers).
    pub records: Vec<KinesisEventRecord>,
}

#[derive(Debug, Deserialize)]
struct KeptObject {
    #[serde(rename = "KinesisBatchInfo")]
    batch: BatchInfo,
    payload: serde_json::Value,
}

/// Parses one object of an S3 on-failure destination: `KinesisBatchInfo` plus `payload`, the
/// invocation's event. The payload is read as a JSON string holding the event, or as the event
/// itself: which of the two Lambda writes is not shown in AWS's documentation.
pub fn parse_kept(body: &str) -> Result<KeptBatch> {
    let object: KeptObject = serde_json::from_str(body)
        .context("not a Kinesis on-failure object (no KinesisBatchInfo or payload)")?;
    let event: KinesisEvent = match object.payload {
        serde_json::Value::String(text) => serde_json::from_str(&text),
        other => serde_json::from_value(other),
    }
    .context("the payload is not a Kinesis event")?;
    Ok(KeptBatch {
        batch: object.batch,
        records: event.records,
    })
}

/// A record read from the stream, as the function receives it.
fn event_record(batch: &BatchInfo, r: &Record) -> KinesisEventRecord {
    KinesisEventRecord {
        event_id: Some(format!("{}:{}", batch.shard_id, r.sequence_number())),
        event_source_arn: Some(batch.stream_arn.clone()),
        kinesis: KinesisData {
            partition_key: r.partition_key().unwrap_or_default().to_owned(),
            sequence_number: r.sequence_number().to_owned(),
            data: base64::engine::general_purpose::STANDARD.encode(r.data().as_ref()),
            approximate_arrival_timestamp: r
                .approximate_arrival_timestamp()
                .map(|t| t.secs() as f64 + f64::from(t.subsec_nanos()) / 1e9),
        },
    }
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
    /// S3, to read and delete kept batches.
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
    async fn replay(&self, batch: &BatchInfo, records: &[KinesisEventRecord]) -> Result<usize> {
        match self.replay {
            Replay::DryRun => Ok(0),
            Replay::Stream => {
                let name = stream_name(&batch.stream_arn)?;
                for record in records {
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(&record.kinesis.data)
                        .context("a kept record's data is not base64")?;
                    self.kinesis
                        .put_record()
                        .stream_name(name)
                        .partition_key(&record.kinesis.partition_key)
                        .data(aws_sdk_kinesis::primitives::Blob::new(data))
                        .send()
                        .await?;
                }
                Ok(0)
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
            let records: Vec<KinesisEventRecord> = recovery
                .fetch(&batch)
                .await?
                .iter()
                .map(|r| event_record(&batch, r))
                .collect();
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

/// Processes up to `max` kept batches from the S3 on-failure destination `bucket` (objects under
/// Lambda's `aws/lambda/` prefix), replaying the records the objects hold.
pub async fn recover_bucket(
    recovery: &Recovery,
    bucket: &str,
    max: usize,
) -> Result<Vec<Recovered>> {
    let mut report = Vec::new();
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
        let kept = parse_kept(&String::from_utf8_lossy(&bytes))
            .with_context(|| format!("{key} is not a kept Kinesis batch"))?;
        let still_failing = recovery.replay(&kept.batch, &kept.records).await?;
        let expired = kept.batch.batch_size.saturating_sub(kept.records.len());
        let complete = expired == 0 && still_failing == 0 && recovery.replay != Replay::DryRun;
        if complete {
            recovery
                .s3
                .delete_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .with_context(|| format!("DeleteObject {key} failed"))?;
        }
        report.push(Recovered {
            shard_id: kept.batch.shard_id.clone(),
            start: kept.batch.start_sequence_number.clone(),
            end: kept.batch.end_sequence_number.clone(),
            expected: kept.batch.batch_size,
            recovered: kept.records.len() - still_failing,
            expired,
            still_failing,
            deleted: complete,
        });
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

    #[test]
    fn parses_a_kept_batch_whose_payload_is_a_string_or_an_object() {
        let event = r#"{"Records":[{"kinesis":{"partitionKey":"k","sequenceNumber":"7","data":"eyJ2IjoxfQ=="},
            "eventID":"shardId-000000000000:7","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/s"}]}"#;
        let info = r#""KinesisBatchInfo":{"shardId":"shardId-000000000000","startSequenceNumber":"7",
            "endSequenceNumber":"7","batchSize":1,"streamArn":"arn:aws:kinesis:us-east-1:123456789012:stream/s"}"#;
        for payload in [
            serde_json::Value::String(event.into()),
            serde_json::from_str(event).expect("json"),
        ] {
            let body = format!(r#"{{{info},"payload":{payload}}}"#);
            let kept = parse_kept(&body).expect("kept batch");
            assert_eq!(kept.batch.batch_size, 1);
            assert_eq!(kept.records[0].kinesis.sequence_number, "7");
            assert_eq!(kept.records[0].kinesis.data, "eyJ2IjoxfQ==");
        }
        assert!(
            parse_kept(&format!(r#"{{{info}}}"#)).is_err(),
            "no payload, no records"
        );
    }
}
