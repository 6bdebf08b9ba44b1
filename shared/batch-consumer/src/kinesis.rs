//! Kinesis batches: order per partition key, concurrency across keys, and the checkpoint rule.
//!
//! Lambda's Kinesis event source checkpoints **before the lowest failed sequence number** a
//! function reports and retries from there; an empty identifier fails the whole batch.
//! [`process_kinesis_batch`] applies the records of one partition key strictly in sequence order,
//! stops a key at its first failure (later records of that key are not applied past it), runs
//! different keys concurrently up to a bound, and answers with the lowest failed sequence number.
//!
//! The event type here is deliberately lenient: a record whose `data` is not base64 must be a
//! reported failure of that record, not a batch that cannot even be deserialised.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::{self, Display};
use std::future::Future;

use aws_lambda_events::streams::KinesisEventResponse;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::api_request::FromApiRequest;

/// A Kinesis event as Lambda delivers it, with `data` kept as the base64 text it arrived as.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct KinesisEvent {
    /// The records, in shard order.
    #[serde(rename = "Records", default)]
    pub records: Vec<KinesisEventRecord>,
}

/// One record of a [`KinesisEvent`].
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisEventRecord {
    /// `shardId-...:sequenceNumber`.
    #[serde(rename = "eventID", default)]
    pub event_id: Option<String>,
    /// The stream ARN.
    #[serde(rename = "eventSourceARN", default)]
    pub event_source_arn: Option<String>,
    /// The Kinesis part of the record.
    pub kinesis: KinesisData,
}

/// The `kinesis` object of a record.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisData {
    /// The partition key the producer chose.
    pub partition_key: String,
    /// The record's sequence number: decimal digits, compared as a number.
    pub sequence_number: String,
    /// The payload, base64-encoded.
    #[serde(default)]
    pub data: String,
    /// When the record reached the stream, in seconds since the epoch.
    #[serde(default)]
    pub approximate_arrival_timestamp: Option<f64>,
}

impl KinesisEventRecord {
    /// The shard id, taken from `eventID` (`shardId-000000000000:4959...`).
    pub fn shard_id(&self) -> Option<&str> {
        self.event_id.as_deref().and_then(|id| id.split(':').next())
    }
}

/// A Kinesis sequence number, compared as the (arbitrarily large) decimal number it is: AWS
/// sequence numbers run to 56 digits and more, beyond any machine integer, and comparing them as
/// strings would put `"10"` before `"9"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

/// Width of [`SequenceNumber::sortable`]: the API allows up to 129 digits.
pub const SORTABLE_WIDTH: usize = 130;

impl SequenceNumber {
    /// Parses a sequence number: one or more ASCII digits (leading zeros are ignored).
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty()
            || text.len() > SORTABLE_WIDTH
            || !text.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let trimmed = text.trim_start_matches('0');
        Some(Self(if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        }))
    }

    /// The number as written, without leading zeros.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Zero-padded to a fixed width, so that comparing two of them as strings (as a DynamoDB
    /// condition does) compares the numbers.
    pub fn sortable(&self) -> String {
        format!("{:0>width$}", self.0, width = SORTABLE_WIDTH)
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Kinesis batch that cannot be answered record by record.
#[derive(Debug, thiserror::Error)]
pub enum KinesisBatchError {
    /// A record's sequence number is missing or not a number, so no checkpoint can be named.
    #[error("record {index} has no valid sequence number")]
    BadSequenceNumber {
        /// Position of the record in the batch.
        index: usize,
    },
}

/// Applies `handle` to every record of `event`: records of one partition key one after another
/// in sequence order, stopping at the key's first failure; different keys concurrently, at most
/// `concurrency` at a time. Answers with the lowest failed sequence number, or no failure.
pub async fn process_kinesis_batch<F, Fut, E>(
    event: KinesisEvent,
    concurrency: usize,
    handle: F,
) -> Result<KinesisEventResponse, KinesisBatchError>
where
    F: Fn(KinesisEventRecord) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
{
    run(event, concurrency, handle, |_| None).await
}

/// [`process_kinesis_batch`] for a handler whose errors name the API request of their record
/// ([`FromApiRequest`]): the log line reporting a failed record carries its `apiRequestId`.
pub async fn process_kinesis_batch_traced<F, Fut, E>(
    event: KinesisEvent,
    concurrency: usize,
    handle: F,
) -> Result<KinesisEventResponse, KinesisBatchError>
where
    F: Fn(KinesisEventRecord) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: FromApiRequest,
{
    run(event, concurrency, handle, |error: &E| {
        error.api_request_id()
    })
    .await
}

async fn run<F, Fut, E, I>(
    event: KinesisEvent,
    concurrency: usize,
    handle: F,
    api_request_id: I,
) -> Result<KinesisEventResponse, KinesisBatchError>
where
    F: Fn(KinesisEventRecord) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + 'static,
    I: Fn(&E) -> Option<&str>,
{
    let mut groups: Vec<Vec<(SequenceNumber, KinesisEventRecord)>> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (index, record) in event.records.into_iter().enumerate() {
        let sequence = SequenceNumber::parse(&record.kinesis.sequence_number)
            .ok_or(KinesisBatchError::BadSequenceNumber { index })?;
        let slot = *by_key
            .entry(record.kinesis.partition_key.clone())
            .or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
        groups[slot].push((sequence, record));
    }
    for group in &mut groups {
        group.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let handle = &handle;
    let api_request_id = &api_request_id;
    let failures: Vec<Option<SequenceNumber>> = futures::stream::iter(groups)
        .map(|group| async move {
            let total = group.len();
            for (position, (sequence, record)) in group.into_iter().enumerate() {
                let key = record.kinesis.partition_key.clone();
                if let Err(error) = handle(record).await {
                    tracing::warn!(
                        partition_key = %key,
                        sequence_number = %sequence,
                        apiRequestId = api_request_id(&error),
                        error = %crate::ErrorChain(&error),
                        held_back = total - position - 1,
                        "record failed; later records of its key wait for the retry"
                    );
                    return Some(sequence);
                }
            }
            None
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let lowest = failures.into_iter().flatten().min();
    let mut response = KinesisEventResponse::default();
    if let Some(sequence) = lowest {
        response.add_failure(sequence.as_str());
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::parse(s).expect("valid")
    }

    #[test]
    fn sequence_numbers_compare_as_numbers_not_strings() {
        assert!(seq("9") < seq("10"));
        assert!(
            seq("49590338271490256608559692538361571095921575989136588898")
                > seq("4959033827149025660855969253836157109592157598913658889")
        );
        assert_eq!(seq("007"), seq("7"));
        assert!(seq("9").sortable() < seq("10").sortable());
        assert_eq!(seq("10").sortable().len(), SORTABLE_WIDTH);
        for bad in ["", "-1", "12a", "1.5"] {
            assert!(SequenceNumber::parse(bad).is_none(), "{bad}");
        }
    }

    fn record(key: &str, sequence: &str) -> KinesisEventRecord {
        KinesisEventRecord {
            event_id: Some(format!("shardId-000000000000:{sequence}")),
            kinesis: KinesisData {
                partition_key: key.into(),
                sequence_number: sequence.into(),
                ..KinesisData::default()
            },
            ..KinesisEventRecord::default()
        }
    }

    fn event(records: &[(&str, &str)]) -> KinesisEvent {
        KinesisEvent {
            records: records.iter().map(|(k, s)| record(k, s)).collect(),
        }
    }

    fn failed(response: &KinesisEventResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap_or_default())
            .collect()
    }

    #[tokio::test]
    async fn same_key_records_apply_in_sequence_order_and_stop_at_the_first_failure() {
        let applied = Mutex::new(Vec::new());
        let response = process_kinesis_batch(
            event(&[("a", "1"), ("b", "2"), ("a", "3"), ("a", "10"), ("b", "11")]),
            4,
            |r| {
                let applied = &applied;
                async move {
                    let s = r.kinesis.sequence_number.clone();
                    if s == "3" {
                        return Err(std::io::Error::other("poison"));
                    }
                    applied
                        .lock()
                        .expect("lock")
                        .push((r.kinesis.partition_key.clone(), s));
                    Ok(())
                }
            },
        )
        .await
        .expect("answered");
        assert_eq!(failed(&response), ["3"]);
        let applied = applied.into_inner().expect("lock");
        assert!(applied.contains(&("a".into(), "1".into())));
        assert!(
            !applied.contains(&("a".into(), "10".into())),
            "a:10 must wait behind a:3"
        );
        assert!(
            applied.contains(&("b".into(), "2".into()))
                && applied.contains(&("b".into(), "11".into()))
        );
    }

    #[tokio::test]
    async fn the_lowest_failed_sequence_number_is_reported_numerically() {
        let response = process_kinesis_batch(
            event(&[("a", "9"), ("b", "10"), ("c", "100")]),
            3,
            |r| async move {
                if r.kinesis.partition_key == "a" {
                    Ok(())
                } else {
                    Err(std::io::Error::other("boom"))
                }
            },
        )
        .await
        .expect("answered");
        assert_eq!(failed(&response), ["10"]);
    }

    #[tokio::test]
    async fn success_reports_no_failure_and_never_an_empty_identifier() {
        let response = process_kinesis_batch(event(&[("a", "1")]), 1, |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect("answered");
        assert!(response.batch_item_failures.is_empty());
        let bad = process_kinesis_batch(event(&[("a", "")]), 1, |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await;
        assert!(matches!(
            bad,
            Err(KinesisBatchError::BadSequenceNumber { index: 0 })
        ));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("poison")]
    struct Poison(Option<String>);

    impl FromApiRequest for Poison {
        fn api_request_id(&self) -> Option<&str> {
            self.0.as_deref()
        }
    }

    #[tokio::test]
    async fn a_traced_failure_line_carries_the_api_request_id_its_error_names() {
        let (logs, _guard) = aws_setup::CapturedLogs::start();
        let response =
            process_kinesis_batch_traced(event(&[("a", "1"), ("b", "2")]), 2, |r| async move {
                Err(Poison(
                    (r.kinesis.partition_key == "a").then(|| "req-a".to_owned()),
                ))
            })
            .await
            .expect("answered");
        assert_eq!(failed(&response), ["1"]);
        let text = logs.text();
        let fields: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["fields"].clone())
            .collect();
        let of = |key: &str| {
            fields
                .iter()
                .find(|f| f["partition_key"] == key)
                .unwrap_or_else(|| panic!("no line for {key}: {text}"))
        };
        assert_eq!(of("a")["apiRequestId"], "req-a");
        assert!(of("b").get("apiRequestId").is_none());
    }

    #[tokio::test]
    async fn different_keys_run_concurrently() {
        let running = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let records: Vec<(String, String)> = (0..8)
            .map(|i| (format!("k{i}"), (i + 1).to_string()))
            .collect();
        let records: Vec<(&str, &str)> = records
            .iter()
            .map(|(k, s)| (k.as_str(), s.as_str()))
            .collect();
        process_kinesis_batch(event(&records), 4, |_| async {
            let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect("answered");
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 4);
    }
}
