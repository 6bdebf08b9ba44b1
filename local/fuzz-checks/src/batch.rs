//! The event decoders of the batch consumers: `shared/batch-consumer` (the SQS and the lenient
//! Kinesis event, sequence numbers, the per-record and per-key batch drivers) with the record
//! decoders the patterns' consumers run under them (the Kinesis record's base64 data, size limit,
//! JSON and replay envelope; the SQS body as sqs-buffer and user-api read it).
//!
//! The input is an event as JSON (an SQS event, a Kinesis event, or both at once); when it is
//! neither, it is a single record's body (SQS) and data (Kinesis, both as base64 of the input and
//! as the input itself). Properties:
//! - [`SequenceNumber::parse`] accepts exactly 1-130 ASCII digits; its order is the numbers'
//!   order, its `sortable` form is 130 characters and sorts the same way;
//! - [`process_sqs_batch`] fails the batch for exactly the first record without a message id,
//!   and otherwise reports exactly the records whose handler failed, in batch order;
//! - [`process_kinesis_batch`] refuses exactly the first record without a valid sequence number,
//!   applies each partition key's records in sequence order and none after the key's first
//!   failure, and reports the lowest first-failure over all keys (or none);
//! - what the record decoders accept is consistent: a Kinesis item carries the partition key and
//!   the 130-digit guard, an SQS item the body's `eventId` or the message id; a user request
//!   that parses parses again from its own fields; a replay envelope round-trips.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use base64::Engine as _;
use batch_consumer::kinesis::{
    KinesisData, KinesisEvent, KinesisEventRecord, SORTABLE_WIDTH, SequenceNumber,
    process_kinesis_batch,
};
use batch_consumer::{BatchError, process_sqs_batch};
use kinesis_stream_consumer::replay::Replayed;
use serde_json::Value;

/// The record limit the Kinesis consumer is checked with (small, so the fuzzer reaches it).
const MAX_RECORD_BYTES: usize = 256;

/// Checks one input (see the module's documentation).
pub fn check(data: &[u8]) {
    let concurrency = data.first().map_or(1, |b| usize::from(b % 4) + 1);
    let text = String::from_utf8_lossy(data);
    check_sequence_number(&text, data);
    let json: Option<Value> = serde_json::from_slice(data).ok();
    let sqs = json
        .clone()
        .and_then(|v| serde_json::from_value::<SqsEvent>(v).ok());
    let kinesis = json
        .clone()
        .and_then(|v| serde_json::from_value::<KinesisEvent>(v).ok());
    let events_found = sqs.as_ref().is_some_and(|e| !e.records.is_empty())
        || kinesis.as_ref().is_some_and(|e| !e.records.is_empty());
    if events_found {
        if let Some(event) = sqs {
            check_sqs(event, concurrency);
        }
        if let Some(event) = kinesis {
            check_kinesis(event, concurrency);
        }
        return;
    }
    let mut message = SqsMessage::default();
    message.message_id = Some("fuzz-1".into());
    message.body = Some(text.clone().into_owned());
    let mut event = SqsEvent::default();
    event.records.push(message);
    check_sqs(event, concurrency);
    let record = |data: String| KinesisEventRecord {
        event_id: Some("shardId-000000000000:10".into()),
        event_source_arn: None,
        kinesis: KinesisData {
            partition_key: "fuzz".into(),
            sequence_number: "10".into(),
            data,
            approximate_arrival_timestamp: None,
        },
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(data);
    check_kinesis(
        KinesisEvent {
            records: vec![record(encoded), record(text.into_owned())],
        },
        concurrency,
    );
}

fn is_sequence_number(text: &str) -> bool {
    !text.is_empty() && text.len() <= SORTABLE_WIDTH && text.bytes().all(|b| b.is_ascii_digit())
}

fn check_one_sequence_number(text: &str) {
    let parsed = SequenceNumber::parse(text);
    assert_eq!(parsed.is_some(), is_sequence_number(text), "{text:?}");
    if let Some(n) = parsed {
        let sortable = n.sortable();
        assert_eq!(sortable.len(), SORTABLE_WIDTH);
        assert_eq!(SequenceNumber::parse(&sortable), Some(n.clone()));
        assert_eq!(SequenceNumber::parse(n.as_str()), Some(n.clone()));
        assert!(n.as_str() == "0" || !n.as_str().starts_with('0'), "{n}");
    }
}

fn check_sequence_number(text: &str, data: &[u8]) {
    check_one_sequence_number(text);
    // Two numbers from the input's digits: their order is the numbers' order.
    let digits: String = data.iter().map(|b| char::from(b'0' + b % 10)).collect();
    let (a, b) = digits.split_at(digits.len() / 2);
    let (a, b) = (
        &a[..a.len().min(SORTABLE_WIDTH)],
        &b[..b.len().min(SORTABLE_WIDTH)],
    );
    check_one_sequence_number(a);
    check_one_sequence_number(b);
    if let (Some(x), Some(y)) = (SequenceNumber::parse(a), SequenceNumber::parse(b)) {
        let numeric = |s: &str| {
            let s = s.trim_start_matches('0');
            (s.len(), s.to_owned())
        };
        assert_eq!(x.cmp(&y), numeric(a).cmp(&numeric(b)), "{a} vs {b}");
        assert_eq!(x.cmp(&y), x.sortable().cmp(&y.sortable()), "{a} vs {b}");
        if let (Ok(p), Ok(q)) = (a.parse::<u128>(), b.parse::<u128>()) {
            assert_eq!(x.cmp(&y), p.cmp(&q), "{a} vs {b}");
        }
    }
}

/// Whether the sqs-buffer consumer can store this record, with the consistency of what it builds
/// and of the user-api reading of the same body.
fn sqs_record_ok(record: &SqsMessage) -> bool {
    let body = record.body.as_deref().unwrap_or_default();
    if let Ok(user) = user_api_consumer::NewUser::parse(body) {
        let again =
            serde_json::json!({"name": user.name, "email": user.email, "locale": user.locale});
        assert_eq!(
            user_api_consumer::NewUser::parse(&again.to_string()),
            Ok(user.clone()),
            "{body:?}"
        );
        assert!(!user.normalized_email().is_empty());
    }
    match sqs_buffer_consumer::build_item(record, 0) {
        Ok(item) => {
            let key = item.get(sqs_buffer_consumer::KEY_ATTRIBUTE);
            let key = key.and_then(|k| k.as_s().ok()).map(String::as_str);
            let from_body = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v.get("eventId").and_then(Value::as_str).map(str::to_owned));
            let expected =
                from_body.or_else(|| Some(record.message_id.clone().unwrap_or_default()));
            assert_eq!(key, expected.as_deref(), "{body:?}");
            true
        }
        Err(_) => false,
    }
}

#[derive(Debug, thiserror::Error)]
#[error("record refused")]
struct Refused;

fn check_sqs(event: SqsEvent, concurrency: usize) {
    let first_missing = event
        .records
        .iter()
        .position(|r| r.message_id.as_deref().unwrap_or_default().is_empty());
    let failing: Vec<String> = event
        .records
        .iter()
        .filter(|r| !sqs_record_ok(r))
        .filter_map(|r| r.message_id.clone())
        .collect();
    let result =
        futures::executor::block_on(process_sqs_batch(event, concurrency, |r| async move {
            if sqs_record_ok(&r) {
                Ok(())
            } else {
                Err(Refused)
            }
        }));
    match (result, first_missing) {
        (Err(BatchError::MissingMessageId { index }), Some(first)) => assert_eq!(index, first),
        (Ok(response), None) => {
            let reported: Vec<String> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            assert_eq!(reported, failing);
        }
        (result, first) => panic!("{result:?} for a first record without an id at {first:?}"),
    }
}

/// Whether the Kinesis consumer can apply this record, with the consistency of what it builds.
fn kinesis_record_ok(record: &KinesisEventRecord) -> bool {
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(record.kinesis.data.trim())
        && let Some(Ok(envelope)) = Replayed::from_bytes(&bytes)
        && envelope
            .approximate_arrival_timestamp
            .is_none_or(f64::is_finite)
    {
        assert_eq!(
            Replayed::from_bytes(&envelope.to_bytes()).and_then(Result::ok),
            Some(envelope.clone())
        );
    }
    match kinesis_stream_consumer::build_item(record, MAX_RECORD_BYTES, 0) {
        Ok(item) => {
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
            assert_eq!(
                text(kinesis_stream_consumer::KEY_ATTRIBUTE).as_deref(),
                Some(record.kinesis.partition_key.as_str())
            );
            let guard = text(kinesis_stream_consumer::VERSION_ATTRIBUTE).unwrap_or_default();
            assert_eq!(guard.len(), SORTABLE_WIDTH, "{guard}");
            let own = SequenceNumber::parse(&record.kinesis.sequence_number);
            let guard = SequenceNumber::parse(&guard);
            assert!(guard.is_some() && guard <= own, "{record:?}");
            true
        }
        Err(_) => false,
    }
}

fn check_kinesis(event: KinesisEvent, concurrency: usize) {
    let first_bad = event
        .records
        .iter()
        .position(|r| SequenceNumber::parse(&r.kinesis.sequence_number).is_none());
    // The model: per key, records in sequence order (ties in batch order) up to the first that
    // fails; the answer is the lowest first failure.
    let mut by_key: HashMap<String, Vec<(SequenceNumber, usize, bool)>> = HashMap::new();
    if first_bad.is_none() {
        for (index, record) in event.records.iter().enumerate() {
            let sequence = SequenceNumber::parse(&record.kinesis.sequence_number);
            let Some(sequence) = sequence else { continue };
            by_key
                .entry(record.kinesis.partition_key.clone())
                .or_default()
                .push((sequence, index, kinesis_record_ok(record)));
        }
    }
    let mut expected_applied: HashMap<String, Vec<usize>> = HashMap::new();
    let mut lowest: Option<SequenceNumber> = None;
    for (key, records) in &mut by_key {
        records.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let applied = expected_applied.entry(key.clone()).or_default();
        for (sequence, index, ok) in records.iter() {
            applied.push(*index);
            if !ok {
                if lowest.as_ref().is_none_or(|l| sequence < l) {
                    lowest = Some(sequence.clone());
                }
                break;
            }
        }
    }
    // Each record is told apart by its position, carried in its event id.
    let mut tagged = event;
    for (index, record) in tagged.records.iter_mut().enumerate() {
        record.event_id = Some(format!("shardId-000000000000:{index}"));
    }
    let seen: Mutex<HashMap<String, Vec<usize>>> = Mutex::new(HashMap::new());
    let result = futures::executor::block_on(process_kinesis_batch(tagged, concurrency, |r| {
        let seen = &seen;
        async move {
            let index = r
                .event_id
                .as_deref()
                .and_then(|id| id.rsplit(':').next())
                .and_then(|i| i.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            if let Ok(mut seen) = seen.lock() {
                seen.entry(r.kinesis.partition_key.clone())
                    .or_default()
                    .push(index);
            }
            if kinesis_record_ok(&r) {
                Ok(())
            } else {
                Err(Refused)
            }
        }
    }));
    match (result, first_bad) {
        (Err(e), Some(first)) => {
            let batch_consumer::kinesis::KinesisBatchError::BadSequenceNumber { index } = e;
            assert_eq!(index, first);
        }
        (Ok(response), None) => {
            let reported: Vec<Option<String>> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            let expected: Vec<Option<String>> =
                lowest.iter().map(|s| Some(s.as_str().to_owned())).collect();
            assert_eq!(reported, expected);
            let seen = seen.into_inner().unwrap_or_default();
            assert_eq!(seen, expected_applied);
        }
        (result, first) => panic!("{result:?} for a first bad sequence number at {first:?}"),
    }
}
