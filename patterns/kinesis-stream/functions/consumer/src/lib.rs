//! kinesis-stream consumer: applies each stream record to DynamoDB, in order per key, once.
//!
//! - The item key is the record's partition key, which the API sets to the path's `eventId`:
//!   every record of one event id updates the same item, in sequence order.
//! - Writes are guarded by the sequence number (zero-padded, so DynamoDB's string comparison is
//!   the numeric one): a retried batch re-applies nothing, and an older record never overwrites a
//!   newer one.
//! - Bad data (not base64, over the size limit, not JSON) is a reported failure of that record:
//!   the event source retries it, bisects around it, and finally hands its metadata to the
//!   on-failure destination. So is a payload DynamoDB refuses, one nested deeper than its 32
//!   levels included: the store refuses that one before the call
//!   ([`dynamo_writer::check_nesting`]), so that moto, which would store it, behaves as AWS. Failures are reported by the lowest failed sequence number, as Lambda
//!   requires to checkpoint.
//! - A record that `kinesis-recover --replay stream` put back on the stream carries its original
//!   sequence number in an envelope ([`replay`]); the guard compares that one, so a replayed old
//!   record never overwrites newer data.
//! - A record the API put on the stream is the client's body in the API's envelope
//!   ([`api_envelope`]), which names the API Gateway request: the item gets it as the String
//!   attribute `apiRequestId`, and every log line about the record carries it as the field
//!   `apiRequestId`. The body is then the payload, exactly as a record's whole data is without an
//!   envelope. A replayed record's original may be such an envelope in turn. A malformed
//!   envelope is bad data.
//! - Every invocation writes one EMF document ([`batch_metrics`]): records written, records that
//!   changed nothing (a retry, an older sequence number), bad data, failed writes.

pub mod api_envelope;
pub mod replay;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::streams::KinesisEventResponse;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use batch_consumer::api_request::{API_REQUEST_ID, FromApiRequest};
use batch_consumer::kinesis::{
    KinesisBatchError, KinesisEvent, KinesisEventRecord, SequenceNumber,
    process_kinesis_batch_traced,
};
use batch_metrics::{Function, Invocation, Metrics, Outcome, Pattern};
use dynamo_writer::{EventStore, Item, PutOutcome, StoreError, json_to_attribute};
use serde_json::Value;

/// Partition key attribute of the events table.
pub const KEY_ATTRIBUTE: &str = "eventId";
/// Attribute holding the zero-padded sequence number that guards writes.
pub const VERSION_ATTRIBUTE: &str = "sequenceKey";
/// Default largest payload accepted, in bytes (the Kinesis record limit is 1 MiB by default).
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Settings of the consumer, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The events table.
    pub table_name: String,
    /// Partition keys processed at once.
    pub write_concurrency: usize,
    /// Largest decoded payload accepted.
    pub max_record_bytes: usize,
}

/// Errors in the consumer's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// A variable is not a positive whole number.
    #[error("environment variable {name} must be a positive whole number, got {value:?}")]
    NotPositive {
        /// The variable.
        name: &'static str,
        /// What it held.
        value: String,
    },
}

fn positive(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: usize,
) -> Result<usize, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::NotPositive { name, value }),
        },
    }
}

impl Config {
    /// Reads `TABLE_NAME`, `WRITE_CONCURRENCY` and `MAX_RECORD_BYTES` from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the local gateway passes the function's environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table_name = lookup("TABLE_NAME")
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing("TABLE_NAME"))?;
        Ok(Self {
            table_name,
            write_concurrency: positive(
                &lookup,
                "WRITE_CONCURRENCY",
                batch_consumer::DEFAULT_CONCURRENCY,
            )?,
            max_record_bytes: positive(&lookup, "MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES)?,
        })
    }
}

/// Why one record was not applied. Reported through its sequence number.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// `data` is not base64.
    #[error("data is not base64")]
    NotBase64(#[source] base64::DecodeError),
    /// The decoded payload is larger than allowed.
    #[error("payload of {size} bytes is over the {limit}-byte limit")]
    TooLarge {
        /// Decoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload is not JSON.
    #[error("payload is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// The partition key is empty or the sequence number invalid.
    #[error("record has an empty partition key or an invalid sequence number")]
    BadRecord,
    /// The record is a replay envelope that cannot be used.
    #[error(transparent)]
    BadReplay(#[from] replay::EnvelopeError),
    /// The record (or the original a replay carries) is an API envelope that cannot be used.
    #[error(transparent)]
    BadEnvelope(#[from] api_envelope::EnvelopeError),
    /// The write failed and must be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RecordError {
    /// How the record counts in the metrics: bad data (reported, so that it ends at the
    /// on-failure destination) is invalid, a write that failed a failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            RecordError::Store(StoreError::Rejected(_)) => Outcome::Invalid,
            RecordError::Store(_) => Outcome::Failed,
            RecordError::NotBase64(_)
            | RecordError::TooLarge { .. }
            | RecordError::NotJson(_)
            | RecordError::BadRecord
            | RecordError::BadReplay(_)
            | RecordError::BadEnvelope(_) => Outcome::Invalid,
        }
    }
}

/// A record that was not applied, with the API request it came from when it names one (so the
/// batch's log line reporting it carries `apiRequestId`).
#[derive(Debug)]
pub struct Failed {
    /// The record's `apiRequestId`, if known.
    pub api_request_id: Option<String>,
    /// Why it was not applied.
    pub error: RecordError,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

/// Transparent: the record's error and its causes, as if it were the error itself.
impl std::error::Error for Failed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

impl FromApiRequest for Failed {
    fn api_request_id(&self) -> Option<&str> {
        self.api_request_id.as_deref()
    }
}

/// The consumer, built once per execution environment.
#[derive(Clone)]
pub struct Consumer {
    store: Arc<dyn EventStore>,
    write_concurrency: usize,
    max_record_bytes: usize,
    metrics: Metrics,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("write_concurrency", &self.write_concurrency)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer writing to `store`, writing no metrics ([`Consumer::with_metrics`]).
    pub fn new(
        store: Arc<dyn EventStore>,
        write_concurrency: usize,
        max_record_bytes: usize,
    ) -> Self {
        Self {
            store,
            write_concurrency,
            max_record_bytes,
            metrics: Metrics::disabled(Pattern::KinesisStream, Function::Consumer),
        }
    }

    /// The same consumer, writing one document per batch to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// A consumer writing to the table named in `config` through `client`.
    pub fn from_config(config: &Config, client: aws_sdk_dynamodb::Client) -> Self {
        Self::new(
            Arc::new(dynamo_writer::DynamoDbStore::new(
                client,
                config.table_name.clone(),
                KEY_ATTRIBUTE,
            )),
            config.write_concurrency,
            config.max_record_bytes,
        )
    }

    /// Handles one Kinesis batch; answers with the lowest failed sequence number, if any; writes
    /// the batch's metrics before it answers.
    pub async fn handle(
        &self,
        event: KinesisEvent,
    ) -> Result<KinesisEventResponse, KinesisBatchError> {
        let metrics = self.metrics.invocation();
        let records = event.records.len() as u64;
        let answer = metrics
            .time_writes(process_kinesis_batch_traced(
                event,
                self.write_concurrency,
                |record| self.apply_counted(record, &metrics),
            ))
            .await;
        if answer.is_err() {
            // Refused as a whole: every record comes back.
            metrics.count_many(Outcome::Failed, records);
        }
        answer
    }

    async fn apply_counted(
        &self,
        record: KinesisEventRecord,
        metrics: &Invocation,
    ) -> Result<(), Failed> {
        let applied = self.apply(record).await;
        metrics.count(match &applied {
            Ok(PutOutcome::Created) => Outcome::Stored,
            Ok(PutOutcome::AlreadyExists) => Outcome::Duplicate,
            Err(failed) => failed.error.outcome(),
        });
        applied.map(drop)
    }

    async fn apply(&self, record: KinesisEventRecord) -> Result<PutOutcome, Failed> {
        let Read {
            api_request_id,
            item,
        } = read_record(&record, self.max_record_bytes, now_millis());
        let failed = |error: RecordError| Failed {
            api_request_id: api_request_id.clone(),
            error,
        };
        let item = item.map_err(failed)?;
        let outcome = self
            .store
            .put_if_newer(item, VERSION_ATTRIBUTE)
            .await
            .map_err(|e| failed(e.into()))?;
        if outcome == PutOutcome::AlreadyExists {
            tracing::info!(
                partition_key = %record.kinesis.partition_key,
                sequence_number = %record.kinesis.sequence_number,
                apiRequestId = api_request_id.as_deref(),
                "record already applied or superseded; nothing written"
            );
        }
        Ok(outcome)
    }
}

/// What the consumer reads from one record: the item to write (or why there is none) and the
/// API request the record came from, when it names one (even when the item cannot be built, as
/// long as the request id could be read).
#[derive(Debug)]
pub struct Read {
    /// The `apiRequestId` of the API's envelope ([`api_envelope`]), if the record is in one.
    pub api_request_id: Option<String>,
    /// The item, or why the record cannot be applied.
    pub item: Result<Item, RecordError>,
}

/// Builds the item for `record`: key, payload, sequence guard, stream metadata and, for a
/// record the API put, `apiRequestId`.
pub fn build_item(
    record: &KinesisEventRecord,
    max_bytes: usize,
    stored_at_millis: u128,
) -> Result<Item, RecordError> {
    read_record(record, max_bytes, stored_at_millis).item
}

/// Reads `record` as [`build_item`] does, keeping the `apiRequestId` beside the outcome.
pub fn read_record(record: &KinesisEventRecord, max_bytes: usize, stored_at_millis: u128) -> Read {
    let mut api_request_id = None;
    let item = build(record, max_bytes, stored_at_millis, &mut api_request_id);
    Read {
        api_request_id,
        item,
    }
}

/// Reads a payload's bytes: within the size limit, and JSON.
fn parse_payload(bytes: &[u8], max_bytes: usize) -> Result<Value, RecordError> {
    if bytes.len() > max_bytes {
        return Err(RecordError::TooLarge {
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    serde_json::from_slice(bytes).map_err(RecordError::NotJson)
}

fn build(
    record: &KinesisEventRecord,
    max_bytes: usize,
    stored_at_millis: u128,
    api_request_id: &mut Option<String>,
) -> Result<Item, RecordError> {
    let kinesis = &record.kinesis;
    let sequence = SequenceNumber::parse(&kinesis.sequence_number).ok_or(RecordError::BadRecord)?;
    if kinesis.partition_key.is_empty() {
        return Err(RecordError::BadRecord);
    }
    // Refuse before decoding: base64 is 4/3 of the payload.
    if kinesis.data.len() / 4 * 3 > max_bytes + 3 {
        return Err(RecordError::TooLarge {
            size: kinesis.data.len() / 4 * 3,
            limit: max_bytes,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(kinesis.data.trim())
        .map_err(RecordError::NotBase64)?;
    let payload = parse_payload(&bytes, max_bytes)?;
    // A replayed record stands for its original: original sequence number (the guard), payload,
    // shard and arrival; its own sequence number is kept beside them.
    let (payload, guard, shard, arrival, replay_of) = match replay::Replayed::from_payload(&payload)
    {
        None => (
            payload,
            sequence.clone(),
            record.shard_id().map(str::to_owned),
            kinesis.approximate_arrival_timestamp,
            None,
        ),
        Some(envelope) => {
            let envelope = envelope?;
            (
                envelope.original_payload()?,
                envelope.original_sequence(&sequence)?,
                envelope
                    .shard_id
                    .clone()
                    .or_else(|| record.shard_id().map(str::to_owned)),
                envelope.approximate_arrival_timestamp,
                Some(sequence),
            )
        }
    };
    // The record's own payload, or the original a replay carries, may be the API's envelope:
    // opened once, its body is the payload (and is never opened again: it is the client's).
    let payload = match api_envelope::ApiGatewayRequest::from_payload(&payload) {
        None => payload,
        Some(envelope) => {
            let envelope = envelope.inspect_err(|error| {
                *api_request_id = error.api_request_id().map(str::to_owned);
            })?;
            *api_request_id = Some(envelope.api_request_id.clone());
            parse_payload(&envelope.body, max_bytes)?
        }
    };
    let mut item = Item::new();
    item.insert(
        KEY_ATTRIBUTE.into(),
        AttributeValue::S(kinesis.partition_key.clone()),
    );
    item.insert("payload".into(), json_to_attribute(&payload));
    item.insert(
        "sequenceNumber".into(),
        AttributeValue::S(guard.as_str().to_owned()),
    );
    item.insert(
        VERSION_ATTRIBUTE.into(),
        AttributeValue::S(guard.sortable()),
    );
    item.insert(
        "storedAt".into(),
        AttributeValue::N(stored_at_millis.to_string()),
    );
    if let Some(arrival) = arrival {
        item.insert(
            "arrivedAt".into(),
            AttributeValue::N(((arrival * 1000.0) as u64).to_string()),
        );
    }
    if let Some(shard) = shard {
        item.insert("shardId".into(), AttributeValue::S(shard));
    }
    if let Some(own) = replay_of {
        item.insert(
            "replaySequenceNumber".into(),
            AttributeValue::S(own.as_str().to_owned()),
        );
    }
    if let Some(arn) = record.event_source_arn.as_deref() {
        item.insert("sourceArn".into(), AttributeValue::S(arn.to_owned()));
    }
    if let Some(id) = api_request_id {
        item.insert(API_REQUEST_ID.into(), AttributeValue::S(id.clone()));
    }
    Ok(item)
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use batch_consumer::kinesis::KinesisData;
    use dynamo_writer::MemoryStore;
    use serde_json::json;

    fn record(key: &str, sequence: &str, payload: &[u8]) -> KinesisEventRecord {
        KinesisEventRecord {
            event_id: Some(format!("shardId-000000000000:{sequence}")),
            event_source_arn: Some("arn:aws:kinesis:us-east-1:123456789012:stream/s".into()),
            kinesis: KinesisData {
                partition_key: key.into(),
                sequence_number: sequence.into(),
                data: base64::engine::general_purpose::STANDARD.encode(payload),
                approximate_arrival_timestamp: Some(1_795_325_400.5),
            },
        }
    }

    fn failures(response: &KinesisEventResponse) -> Vec<String> {
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn item_carries_key_payload_and_a_sortable_sequence() {
        let item = build_item(&record("e-1", "42", br#"{"m":"hi"}"#), 1024, 7).expect("valid");
        assert_eq!(item["eventId"], AttributeValue::S("e-1".into()));
        assert_eq!(item["sequenceNumber"], AttributeValue::S("42".into()));
        assert_eq!(
            item["shardId"],
            AttributeValue::S("shardId-000000000000".into())
        );
        assert_eq!(item["arrivedAt"], AttributeValue::N("1795325400500".into()));
        let AttributeValue::S(key) = &item["sequenceKey"] else {
            panic!("string")
        };
        assert!(key.ends_with("42") && key.len() == batch_consumer::kinesis::SORTABLE_WIDTH);
    }

    #[test]
    fn bad_data_is_a_record_error_not_a_crash() {
        let mut not_base64 = record("k", "1", b"{}");
        not_base64.kinesis.data = "%%% not base64 %%%".into();
        assert!(matches!(
            build_item(&not_base64, 1024, 0),
            Err(RecordError::NotBase64(_))
        ));
        assert!(matches!(
            build_item(&record("k", "1", b"not json"), 1024, 0),
            Err(RecordError::NotJson(_))
        ));
        assert!(matches!(
            build_item(&record("k", "1", &[b' '; 2048]), 1024, 0),
            Err(RecordError::TooLarge { .. })
        ));
        assert!(matches!(
            build_item(&record("", "1", b"{}"), 1024, 0),
            Err(RecordError::BadRecord)
        ));
    }

    #[tokio::test]
    async fn a_retried_batch_applies_nothing_twice_and_older_never_overwrites_newer() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4, 1024);
        let batch = KinesisEvent {
            records: vec![
                record("k", "9", br#"{"v":9}"#),
                record("k", "10", br#"{"v":10}"#),
            ],
        };
        assert!(
            consumer
                .handle(batch.clone())
                .await
                .expect("ok")
                .batch_item_failures
                .is_empty()
        );
        assert!(
            consumer
                .handle(batch)
                .await
                .expect("retry ok")
                .batch_item_failures
                .is_empty()
        );
        let older = KinesisEvent {
            records: vec![record("k", "8", br#"{"v":8}"#)],
        };
        assert!(
            consumer
                .handle(older)
                .await
                .expect("ok")
                .batch_item_failures
                .is_empty()
        );
        let items = store.items();
        assert_eq!(items.len(), 1);
        assert_eq!(items["k"]["sequenceNumber"], AttributeValue::S("10".into()));
    }

    fn replay_of(original: &str, replay_sequence: &str, payload: &[u8]) -> KinesisEventRecord {
        let envelope =
            replay::Replayed::new(original, Some("shardId-000000000000"), Some(1.0), payload);
        record("k", replay_sequence, &envelope.to_bytes())
    }

    #[tokio::test]
    async fn a_replayed_record_is_guarded_by_its_original_sequence_number() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4, 1024);
        // k:5 failed; k:7 was stored meanwhile; k:5 is replayed onto the stream as k:9.
        let newer = KinesisEvent {
            records: vec![record("k", "7", br#"{"v":7}"#)],
        };
        assert!(
            consumer
                .handle(newer)
                .await
                .expect("ok")
                .batch_item_failures
                .is_empty()
        );
        let replayed = KinesisEvent {
            records: vec![replay_of("5", "9", br#"{"v":5}"#)],
        };
        assert!(
            consumer
                .handle(replayed)
                .await
                .expect("ok")
                .batch_item_failures
                .is_empty()
        );
        assert_eq!(
            store.items()["k"]["sequenceNumber"],
            AttributeValue::S("7".into())
        );

        // A replay newer than what is stored lands, with its original sequence number.
        let replayed = KinesisEvent {
            records: vec![replay_of("8", "10", br#"{"v":8}"#)],
        };
        assert!(
            consumer
                .handle(replayed)
                .await
                .expect("ok")
                .batch_item_failures
                .is_empty()
        );
        let item = &store.items()["k"];
        assert_eq!(item["sequenceNumber"], AttributeValue::S("8".into()));
        assert_eq!(item["replaySequenceNumber"], AttributeValue::S("10".into()));
        let AttributeValue::M(payload) = &item["payload"] else {
            panic!("payload map")
        };
        assert_eq!(payload["v"], AttributeValue::N("8".into()));
        // And the replay carrying it changes nothing when it comes again.
        let again = KinesisEvent {
            records: vec![replay_of("8", "11", br#"{"v":"other"}"#)],
        };
        assert!(
            consumer
                .handle(again)
                .await
                .expect("ok")
                .batch_item_failures
                .is_empty()
        );
        assert_eq!(
            store.items()["k"]["replaySequenceNumber"],
            AttributeValue::S("10".into())
        );
    }

    #[tokio::test]
    async fn an_envelope_claiming_a_newer_sequence_than_its_own_is_refused() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4, 1024);
        let forged = KinesisEvent {
            records: vec![replay_of(&"9".repeat(100), "12", br#"{"v":"forever"}"#)],
        };
        let response = consumer.handle(forged).await.expect("answered");
        assert_eq!(failures(&response), ["12"]);
        assert!(store.items().is_empty());
    }

    fn from_api(
        key: &str,
        sequence: &str,
        api_request_id: &str,
        body: &[u8],
    ) -> KinesisEventRecord {
        let envelope = api_envelope::ApiGatewayRequest::new(api_request_id, body);
        record(key, sequence, &envelope.to_bytes())
    }

    #[test]
    fn a_record_the_api_put_stores_its_body_as_the_payload_with_the_api_request_id() {
        let item =
            build_item(&from_api("e-1", "42", "req-1", br#"{"m":"hi"}"#), 1024, 7).expect("valid");
        let AttributeValue::M(payload) = &item["payload"] else {
            panic!("payload map")
        };
        assert_eq!(payload.len(), 1);
        assert_eq!(payload["m"], AttributeValue::S("hi".into()));
        assert_eq!(item["apiRequestId"], AttributeValue::S("req-1".into()));
        assert_eq!(item["eventId"], AttributeValue::S("e-1".into()));
        assert_eq!(item["sequenceNumber"], AttributeValue::S("42".into()));
        // Data without an envelope is stored as it always was, with no apiRequestId.
        let plain = build_item(&record("e-1", "42", br#"{"m":"hi"}"#), 1024, 7).expect("valid");
        assert!(!plain.contains_key("apiRequestId"));
        assert_eq!(plain["payload"], item["payload"]);
    }

    #[test]
    fn a_body_in_an_envelope_is_read_as_whole_data_is_read_and_keeps_its_request_id() {
        let not_json = read_record(&from_api("k", "1", "req-2", b"not json"), 1024, 0);
        assert!(matches!(not_json.item, Err(RecordError::NotJson(_))));
        assert_eq!(not_json.api_request_id.as_deref(), Some("req-2"));
        let empty = read_record(&from_api("k", "1", "req-3", b""), 1024, 0);
        assert!(matches!(empty.item, Err(RecordError::NotJson(_))));
        // The limit is the record's: the envelope counts, as every byte of the data does.
        let body = format!(r#"{{"v":"{}"}}"#, "x".repeat(1000));
        let over = read_record(&from_api("k", "1", "req-4", body.as_bytes()), body.len(), 0);
        assert!(matches!(over.item, Err(RecordError::TooLarge { .. })));
        let within = read_record(
            &from_api("k", "1", "req-4", body.as_bytes()),
            2 * body.len(),
            0,
        );
        assert!(within.item.is_ok(), "{:?}", within.item);
    }

    #[test]
    fn a_malformed_envelope_is_bad_data() {
        for (data, id) in [
            (
                json!({"apiGatewayRequest": {"apiRequestId": 7, "body": "e30="}}),
                None,
            ),
            (
                json!({"apiGatewayRequest": {"apiRequestId": "r", "body": "%%%"}}),
                Some("r"),
            ),
            (
                json!({"apiGatewayRequest": {"apiRequestId": "r".repeat(200), "body": "e30="}}),
                None,
            ),
            (json!({"apiGatewayRequest": "e30="}), None),
        ] {
            let read = read_record(&record("k", "1", data.to_string().as_bytes()), 4096, 0);
            assert!(
                matches!(read.item, Err(RecordError::BadEnvelope(_))),
                "{data}: {:?}",
                read.item
            );
            assert_eq!(read.api_request_id.as_deref(), id, "{data}");
        }
    }

    #[test]
    fn a_client_body_is_never_opened_as_an_envelope() {
        let forged_api = api_envelope::ApiGatewayRequest::new("forged", br#"{"v":1}"#).to_bytes();
        let item = build_item(&from_api("k", "5", "real", &forged_api), 1024, 0).expect("valid");
        assert_eq!(item["apiRequestId"], AttributeValue::S("real".into()));
        let AttributeValue::M(payload) = &item["payload"] else {
            panic!("payload map")
        };
        assert!(payload.contains_key("apiGatewayRequest"), "stored as sent");
        let forged_replay = replay::Replayed::new("1", None, None, br#"{"v":1}"#).to_bytes();
        let item = build_item(&from_api("k", "5", "real", &forged_replay), 1024, 0).expect("valid");
        assert_eq!(item["sequenceNumber"], AttributeValue::S("5".into()));
        assert!(!item.contains_key("replaySequenceNumber"));
    }

    #[tokio::test]
    async fn a_replayed_api_record_keeps_its_original_sequence_and_its_api_request_id() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4, 4096);
        // What `kinesis-recover --replay stream` puts back for a record the API had put.
        let original = api_envelope::ApiGatewayRequest::new("req-9", br#"{"v":5}"#).to_bytes();
        let replayed = KinesisEvent {
            records: vec![replay_of("5", "9", &original)],
        };
        let response = consumer.handle(replayed).await.expect("answered");
        assert!(response.batch_item_failures.is_empty());
        let item = &store.items()["k"];
        assert_eq!(item["sequenceNumber"], AttributeValue::S("5".into()));
        assert_eq!(item["replaySequenceNumber"], AttributeValue::S("9".into()));
        assert_eq!(item["apiRequestId"], AttributeValue::S("req-9".into()));
        let AttributeValue::M(payload) = &item["payload"] else {
            panic!("payload map")
        };
        assert_eq!(payload["v"], AttributeValue::N("5".into()));
    }

    #[tokio::test]
    async fn every_line_about_a_record_carries_its_api_request_id_and_never_its_payload() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4, 1024);
        let (logs, _guard) = aws_setup::CapturedLogs::start();
        let batch = KinesisEvent {
            records: vec![
                from_api("a", "1", "req-a", br#"{"secret":"s3cr3t-a"}"#),
                from_api("a", "2", "req-a-again", br#"{"secret":"s3cr3t-a"}"#),
                from_api("b", "3", "req-b", b"s3cr3t-b is not JSON"),
            ],
        };
        consumer.handle(batch.clone()).await.expect("answered");
        consumer.handle(batch).await.expect("answered");
        let text = logs.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        let about = |sequence: &str| {
            lines
                .iter()
                .filter(|l| l["fields"]["sequence_number"] == sequence)
                .map(|l| l["fields"]["apiRequestId"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            about("1"),
            [json!("req-a")],
            "the retry's duplicate line: {text}"
        );
        assert_eq!(
            about("3"),
            [json!("req-b"), json!("req-b")],
            "both failures: {text}"
        );
        assert!(
            !text.contains("s3cr3t"),
            "a payload reached the logs: {text}"
        );
    }

    #[tokio::test]
    async fn each_batch_writes_one_document_counting_stale_records_as_duplicates() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let (metrics, captured) = batch_metrics::Metrics::capture(
            "AsyncApiPatterns",
            Pattern::KinesisStream,
            Function::Consumer,
        );
        let consumer = Consumer::new(store, 4, 1024).with_metrics(metrics);
        let batch = KinesisEvent {
            records: vec![
                from_api("a", "1", "req-1", br#"{"v":1}"#),
                record("a", "2", br#"{"v":2}"#),
                record("b", "3", b"not json"),
                record("b", "4", br#"{"v":4}"#),
                record(
                    "c",
                    "5",
                    br#"{"apiGatewayRequest":{"apiRequestId":7,"body":""}}"#,
                ),
            ],
        };
        let response = consumer.handle(batch.clone()).await.expect("answered");
        assert_eq!(failures(&response), ["3"]);
        let first = captured.only().expect("one document");
        // b:4 waits behind b:3 and is not counted.
        assert_eq!(
            first.counts,
            batch_metrics::Counts {
                stored: 2,
                invalid: 2,
                ..Default::default()
            }
        );
        assert_eq!(first.document["Pattern"], "kinesis-stream");
        // The retry: a and its older replay change nothing.
        let retry = KinesisEvent {
            records: vec![
                batch.records[0].clone(),
                batch.records[1].clone(),
                replay_of("1", "9", br#"{"v":"old"}"#),
            ],
        };
        consumer.handle(retry).await.expect("answered");
        assert_eq!(
            captured.only().expect("one document").counts,
            batch_metrics::Counts {
                duplicate: 2,
                stored: 1,
                ..Default::default()
            },
            "k:9 replays k:1, new for key k"
        );
        // A batch refused as a whole comes back whole.
        let refused = KinesisEvent {
            records: vec![record("a", "1", b"{}"), record("a", "x", b"{}")],
        };
        assert!(consumer.handle(refused).await.is_err());
        assert_eq!(captured.only().expect("one document").counts.failed, 2);
    }

    #[tokio::test]
    async fn a_poison_record_is_reported_and_holds_back_only_its_own_key() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4, 1024);
        let batch = KinesisEvent {
            records: vec![
                record("a", "1", br#"{"v":1}"#),
                record("b", "2", b"not json"),
                record("c", "3", br#"{"v":3}"#),
                record("b", "4", br#"{"v":4}"#),
            ],
        };
        let response = consumer.handle(batch).await.expect("answered");
        assert_eq!(failures(&response), ["2"]);
        let items = store.items();
        assert!(items.contains_key("a") && items.contains_key("c"));
        assert!(
            !items.contains_key("b"),
            "b:4 must not be applied past the failed b:2"
        );
    }
}
