//! sqs-buffer consumer: stores each buffered event in DynamoDB exactly once.
//!
//! For every SQS record:
//! - the body must be JSON, or the record is reported as failed (after `maxReceiveCount` receives
//!   SQS moves it to the dead-letter queue: nothing is lost, nothing blocks its neighbours);
//! - a body DynamoDB cannot store ends the same way: refused by DynamoDB (`ValidationException`,
//!   over 400 KB for example) or, for one nested deeper than DynamoDB's 32 levels, by the store
//!   itself before the call ([`dynamo_writer::check_nesting`]), so that moto, which would store
//!   it, refuses it as AWS does;
//! - the item key is the event's own id: `eventId` from the body when present, else the SQS
//!   message id, so a redelivery of the same event finds its item already there;
//! - the write is conditional (`attribute_not_exists`), so a redelivery neither duplicates nor
//!   overwrites; a throttled or failed write is reported for retry;
//! - the payload is stored whole as one attribute, beside receive metadata, so a client's body can
//!   never overwrite the item's key or metadata, and beside `payloadHash`, a SHA-256 of the body
//!   as parsed JSON (key order and whitespace do not count);
//! - when the key is taken, the stored item comes back with the failed condition: the same hash
//!   is a true duplicate (an SQS redelivery, a client retry) and changes nothing; a different
//!   hash is a *conflict*, another event reusing the id. The original stays untouched, and the
//!   newcomer is stored beside it as a conflict item (`conflict#<eventId>#<payloadHash>`, `kind:
//!   conflict`), conditionally, so recording it again changes nothing. A warning names the event
//!   and message ids (never the payload).
//! - a message the API sent carries the API Gateway request id in its message attribute
//!   `apiRequestId`: the item (and a conflict item) gets it as the String attribute
//!   `apiRequestId`, and every log line about the message carries it as the field
//!   `apiRequestId` (absent when the message has none).
//!
//! Records of a batch are written concurrently, up to a bound. Every invocation writes one EMF
//! document ([`batch_metrics`]): events stored, true duplicates, conflicts recorded, bodies that
//! can never be stored (invalid, reported for the dead-letter queue) and writes that failed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::AttributeValue;
use batch_consumer::api_request::{API_REQUEST_ID, sqs_api_request_id};
use batch_consumer::{BatchError, process_sqs_batch};
use batch_metrics::{Function, Invocation, Metrics, Outcome, Pattern};
use dynamo_writer::{EventStore, Item, PutOutcome, StoreError, Written, json_to_attribute};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Partition key attribute of the events table (`KeySchema` in the template).
pub const KEY_ATTRIBUTE: &str = "eventId";

/// Longest accepted `eventId`, in bytes (DynamoDB allows 2048 for a partition key, which leaves
/// room for the key of a conflict item: [`conflict_key`]).
pub const MAX_EVENT_ID_LEN: usize = 1024;

/// Attribute holding the SHA-256 (hex) of the payload as parsed JSON: [`payload_hash`].
pub const HASH_ATTRIBUTE: &str = "payloadHash";

/// `kind` of an item holding an event.
pub const KIND_EVENT: &str = "event";

/// `kind` of an item recording a conflicting duplicate: an event whose id was already taken by
/// an event with another payload.
pub const KIND_CONFLICT: &str = "conflict";

/// Settings of the consumer, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The events table.
    pub table_name: String,
    /// How many records of a batch are written at once.
    pub write_concurrency: usize,
}

/// Errors in the consumer's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// `WRITE_CONCURRENCY` is not a positive whole number.
    #[error("environment variable WRITE_CONCURRENCY must be a positive whole number, got {0:?}")]
    BadConcurrency(String),
}

impl Config {
    /// Reads `TABLE_NAME` and `WRITE_CONCURRENCY` from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the local gateway passes the function's environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let table_name = lookup("TABLE_NAME")
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError::Missing("TABLE_NAME"))?;
        let write_concurrency = match lookup("WRITE_CONCURRENCY") {
            None => batch_consumer::DEFAULT_CONCURRENCY,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if n > 0 => n,
                _ => return Err(ConfigError::BadConcurrency(raw)),
            },
        };
        Ok(Self {
            table_name,
            write_concurrency,
        })
    }
}

/// Why one record was not stored. Reported as a batch item failure.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The body is missing or not JSON: a poison message, bound for the dead-letter queue.
    #[error("body is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// `eventId` is present but not a usable key.
    #[error("eventId must be a non-empty string of at most {MAX_EVENT_ID_LEN} bytes")]
    BadEventId,
    /// The write failed and must be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RecordError {
    /// How the record counts in the metrics: a body that can never be stored is invalid
    /// (though reported, so that it reaches the dead-letter queue), any other error a failure.
    pub fn outcome(&self) -> Outcome {
        match self {
            RecordError::NotJson(_)
            | RecordError::BadEventId
            | RecordError::Store(StoreError::Rejected(_)) => Outcome::Invalid,
            RecordError::Store(_) => Outcome::Failed,
        }
    }
}

/// The consumer, built once per execution environment.
#[derive(Clone)]
pub struct Consumer {
    store: Arc<dyn EventStore>,
    write_concurrency: usize,
    metrics: Metrics,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("write_concurrency", &self.write_concurrency)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer writing to `store`, writing no metrics ([`Consumer::with_metrics`]).
    pub fn new(store: Arc<dyn EventStore>, write_concurrency: usize) -> Self {
        Self {
            store,
            write_concurrency,
            metrics: Metrics::disabled(Pattern::SqsBuffer, Function::Consumer),
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
        )
    }

    /// Handles one SQS batch and answers with the records to retry; writes the batch's metrics
    /// before it answers.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, BatchError> {
        let metrics = self.metrics.invocation();
        let records = event.records.len() as u64;
        let answer = metrics
            .time_writes(process_sqs_batch(event, self.write_concurrency, |record| {
                self.store_record(record, &metrics)
            }))
            .await;
        if answer.is_err() {
            // Refused as a whole: every record comes back.
            metrics.count_many(Outcome::Failed, records);
        }
        answer
    }

    async fn store_record(
        &self,
        record: SqsMessage,
        metrics: &Invocation,
    ) -> Result<(), RecordError> {
        let stored = self.store_message(&record).await;
        metrics.count(match &stored {
            Ok(outcome) => *outcome,
            Err(error) => error.outcome(),
        });
        stored.map(drop)
    }

    async fn store_message(&self, record: &SqsMessage) -> Result<Outcome, RecordError> {
        let item = build_item(record, now_millis())?;
        let message_id = record.message_id.as_deref().unwrap_or_default();
        let api_request_id = sqs_api_request_id(record);
        match self.store.put_if_absent_or_get(item.clone()).await? {
            Written::Created => Ok(Outcome::Stored),
            Written::Exists(Some(existing)) if same_payload(&existing, &item) => {
                tracing::info!(
                    message_id,
                    apiRequestId = api_request_id,
                    "event already stored; duplicate ignored"
                );
                Ok(Outcome::Duplicate)
            }
            Written::Exists(existing) => {
                self.record_conflict(item, existing, message_id, api_request_id)
                    .await
            }
        }
    }

    /// Stores `item`, whose key is taken by `existing` with another payload, as a conflict item.
    async fn record_conflict(
        &self,
        item: Item,
        existing: Option<Item>,
        message_id: &str,
        api_request_id: Option<&str>,
    ) -> Result<Outcome, RecordError> {
        let event_id = string(&item, KEY_ATTRIBUTE).to_owned();
        let original_message_id = existing
            .as_ref()
            .map(|e| string(e, "messageId").to_owned())
            .unwrap_or_default();
        let conflict = conflict_item(item, existing.as_ref());
        Ok(match self.store.put_if_absent(conflict).await? {
            PutOutcome::Created => {
                tracing::warn!(
                    event_id = %event_id,
                    message_id,
                    apiRequestId = api_request_id,
                    original_message_id = %original_message_id,
                    "eventId reused with a different payload: original kept, newcomer recorded as a conflict item"
                );
                Outcome::Conflict
            }
            PutOutcome::AlreadyExists => {
                tracing::info!(
                    event_id = %event_id,
                    message_id,
                    apiRequestId = api_request_id,
                    "conflict already recorded; duplicate ignored"
                );
                Outcome::Duplicate
            }
        })
    }
}

fn string<'a>(item: &'a Item, attribute: &str) -> &'a str {
    match item.get(attribute) {
        Some(AttributeValue::S(s)) => s,
        _ => "",
    }
}

/// Whether `existing` holds the same payload as `new`: by their hashes, or for an item stored
/// before hashes were (it has none) by the payload attributes themselves.
pub fn same_payload(existing: &Item, new: &Item) -> bool {
    match existing.get(HASH_ATTRIBUTE) {
        Some(hash) => Some(hash) == new.get(HASH_ATTRIBUTE),
        None => existing.get("payload") == new.get("payload"),
    }
}

/// The key of the conflict item for an event id and the conflicting payload's hash: one item per
/// distinct conflicting payload, so a redelivery or retry of the same conflicting event finds
/// its record already there.
pub fn conflict_key(event_id: &str, payload_hash: &str) -> String {
    format!("conflict#{event_id}#{payload_hash}")
}

/// The conflict item for `item` (built by [`build_item`]) whose key `existing` holds.
pub fn conflict_item(mut item: Item, existing: Option<&Item>) -> Item {
    let event_id = string(&item, KEY_ATTRIBUTE).to_owned();
    let key = conflict_key(&event_id, string(&item, HASH_ATTRIBUTE));
    item.insert(KEY_ATTRIBUTE.into(), AttributeValue::S(key));
    item.insert("kind".into(), AttributeValue::S(KIND_CONFLICT.into()));
    item.insert("conflictOf".into(), AttributeValue::S(event_id));
    if let Some(AttributeValue::S(original)) = existing.and_then(|e| e.get("messageId")) {
        item.insert(
            "originalMessageId".into(),
            AttributeValue::S(original.clone()),
        );
    }
    item
}

/// SHA-256 (hex) of `payload` written canonically: object keys sorted at every level, no
/// whitespace. Two bodies that parse to the same JSON have the same hash.
pub fn payload_hash(payload: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(payload, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Builds the item stored for `record`: key, payload attribute, receive metadata and the
/// `apiRequestId` the message carries, if any.
pub fn build_item(record: &SqsMessage, stored_at_millis: u128) -> Result<Item, RecordError> {
    let body = record.body.as_deref().unwrap_or_default();
    let payload: Value = serde_json::from_str(body).map_err(RecordError::NotJson)?;
    let message_id = record.message_id.clone().unwrap_or_default();
    let event_id = match payload.get(KEY_ATTRIBUTE) {
        None => message_id.clone(),
        Some(Value::String(id)) if !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN => id.clone(),
        Some(_) => return Err(RecordError::BadEventId),
    };
    let mut item = Item::new();
    item.insert(KEY_ATTRIBUTE.into(), AttributeValue::S(event_id));
    item.insert("kind".into(), AttributeValue::S(KIND_EVENT.into()));
    item.insert(
        HASH_ATTRIBUTE.into(),
        AttributeValue::S(payload_hash(&payload)),
    );
    item.insert("payload".into(), json_to_attribute(&payload));
    item.insert("messageId".into(), AttributeValue::S(message_id));
    item.insert(
        "storedAt".into(),
        AttributeValue::N(stored_at_millis.to_string()),
    );
    for (attribute, name) in [
        ("SentTimestamp", "sentAt"),
        ("ApproximateFirstReceiveTimestamp", "firstReceivedAt"),
        ("ApproximateReceiveCount", "receiveCount"),
    ] {
        if let Some(value) = record.attributes.get(attribute)
            && value.parse::<u64>().is_ok()
        {
            item.insert(name.into(), AttributeValue::N(value.clone()));
        }
    }
    if let Some(arn) = record.event_source_arn.as_deref() {
        item.insert("sourceArn".into(), AttributeValue::S(arn.to_owned()));
    }
    if let Some(id) = sqs_api_request_id(record) {
        item.insert(API_REQUEST_ID.into(), AttributeValue::S(id.to_owned()));
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
    use dynamo_writer::MemoryStore;
    use serde_json::json;

    fn record(id: &str, body: &str) -> SqsMessage {
        serde_json::from_value(json!({
            "messageId": id,
            "body": body,
            "attributes": {"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "1"},
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:buffer"
        }))
        .expect("valid record")
    }

    #[test]
    fn item_is_keyed_on_event_id_from_the_body() {
        let item = build_item(&record("m-1", r#"{"eventId":"e-1","message":"hi"}"#), 5)
            .expect("valid item");
        assert_eq!(item["eventId"], AttributeValue::S("e-1".into()));
        assert_eq!(item["messageId"], AttributeValue::S("m-1".into()));
        assert_eq!(item["sentAt"], AttributeValue::N("1700000000000".into()));
        assert_eq!(item["storedAt"], AttributeValue::N("5".into()));
        let AttributeValue::M(payload) = &item["payload"] else {
            panic!("payload must be a map")
        };
        assert_eq!(payload["message"], AttributeValue::S("hi".into()));
    }

    #[test]
    fn item_falls_back_to_message_id() {
        let item = build_item(&record("m-2", r#"{"message":"no id"}"#), 0).expect("valid item");
        assert_eq!(item["eventId"], AttributeValue::S("m-2".into()));
    }

    #[test]
    fn body_cannot_overwrite_the_key_or_metadata() {
        let item = build_item(
            &record(
                "m-3",
                r#"{"eventId":"e-3","messageId":"forged","storedAt":"x"}"#,
            ),
            7,
        )
        .expect("valid item");
        assert_eq!(item["messageId"], AttributeValue::S("m-3".into()));
        assert_eq!(item["storedAt"], AttributeValue::N("7".into()));
    }

    #[test]
    fn non_json_body_and_bad_event_ids_are_record_errors() {
        assert!(matches!(
            build_item(&record("m", "Test Message"), 0),
            Err(RecordError::NotJson(_))
        ));
        for body in [
            r#"{"eventId":""}"#,
            r#"{"eventId":42}"#,
            r#"{"eventId":null}"#,
        ] {
            assert!(
                matches!(
                    build_item(&record("m", body), 0),
                    Err(RecordError::BadEventId)
                ),
                "{body}"
            );
        }
        let long = json!({ "eventId": "x".repeat(MAX_EVENT_ID_LEN + 1) }).to_string();
        assert!(matches!(
            build_item(&record("m", &long), 0),
            Err(RecordError::BadEventId)
        ));
    }

    #[tokio::test]
    async fn poison_record_fails_alone_and_neighbours_are_stored() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4);
        let event: SqsEvent = serde_json::from_value(json!({"Records": [
            {"messageId": "m1", "body": "{\"eventId\":\"a\"}"},
            {"messageId": "m2", "body": "not json"},
            {"messageId": "m3", "body": "{\"n\":1}"}
        ]}))
        .expect("valid event");
        let response = consumer.handle(event).await.expect("answered");
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        assert_eq!(failed, ["m2"]);
        let items = store.items();
        assert_eq!(items.len(), 2);
        assert!(items.contains_key("a") && items.contains_key("m3"));
    }

    fn batch(records: &[(&str, &str)]) -> SqsEvent {
        let records: Vec<_> = records
            .iter()
            .map(|(id, body)| json!({"messageId": id, "body": body}))
            .collect();
        serde_json::from_value(json!({ "Records": records })).expect("valid event")
    }

    async fn no_failures(consumer: &Consumer, records: &[(&str, &str)]) {
        let response = consumer.handle(batch(records)).await.expect("answered");
        assert!(
            response.batch_item_failures.is_empty(),
            "{:?}",
            response.batch_item_failures
        );
    }

    #[tokio::test]
    async fn a_true_duplicate_neither_duplicates_nor_overwrites() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4);
        no_failures(&consumer, &[("m1", r#"{"eventId":"e","v":1,"w":[1,2]}"#)]).await;
        // A client retry: another message, the same JSON with other key order and spacing.
        no_failures(
            &consumer,
            &[("m9", r#"{ "w": [1, 2], "v": 1, "eventId": "e" }"#)],
        )
        .await;
        // An SQS redelivery: the same message again.
        no_failures(&consumer, &[("m1", r#"{"eventId":"e","v":1,"w":[1,2]}"#)]).await;
        let items = store.items();
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items["e"]["messageId"], AttributeValue::S("m1".into()));
    }

    #[tokio::test]
    async fn a_conflicting_duplicate_is_recorded_beside_the_untouched_original() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4);
        no_failures(&consumer, &[("m1", r#"{"eventId":"e","v":1}"#)]).await;
        no_failures(&consumer, &[("m2", r#"{"eventId":"e","v":2}"#)]).await;
        // Its redelivery, and a retry of the same conflicting body, record nothing more.
        no_failures(&consumer, &[("m2", r#"{"eventId":"e","v":2}"#)]).await;
        no_failures(&consumer, &[("m3", r#"{"v":2,"eventId":"e"}"#)]).await;

        let items = store.items();
        assert_eq!(items.len(), 2, "{items:?}");
        let original = &items["e"];
        assert_eq!(original["messageId"], AttributeValue::S("m1".into()));
        assert_eq!(original["kind"], AttributeValue::S("event".into()));
        let hash = payload_hash(&json!({"eventId": "e", "v": 2}));
        let conflict = &items[&conflict_key("e", &hash)];
        assert_eq!(conflict["kind"], AttributeValue::S("conflict".into()));
        assert_eq!(conflict["conflictOf"], AttributeValue::S("e".into()));
        assert_eq!(conflict["messageId"], AttributeValue::S("m2".into()));
        assert_eq!(
            conflict["originalMessageId"],
            AttributeValue::S("m1".into())
        );
        assert_eq!(conflict["payloadHash"], AttributeValue::S(hash));
        let AttributeValue::M(payload) = &conflict["payload"] else {
            panic!("payload must be a map")
        };
        assert_eq!(payload["v"], AttributeValue::N("2".into()));
    }

    /// Records of (message id, `apiRequestId` attribute, body).
    fn from_api(records: &[(&str, Option<&str>, &str)]) -> SqsEvent {
        let records: Vec<_> = records
            .iter()
            .map(|(id, api_request_id, body)| {
                let attributes = match api_request_id {
                    Some(r) => json!({"apiRequestId": {"stringValue": r, "dataType": "String",
                        "stringListValues": [], "binaryListValues": []}}),
                    None => json!({}),
                };
                json!({"messageId": id, "body": body, "messageAttributes": attributes})
            })
            .collect();
        serde_json::from_value(json!({ "Records": records })).expect("valid event")
    }

    /// A table that cannot be written.
    struct Down;

    impl EventStore for Down {
        fn put_if_absent(
            &self,
            _: Item,
        ) -> futures::future::BoxFuture<'_, Result<PutOutcome, StoreError>> {
            Box::pin(async { Err(StoreError::Unavailable("injected outage".into())) })
        }

        fn put_if_newer<'a>(
            &'a self,
            _: Item,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<PutOutcome, StoreError>> {
            Box::pin(async { Err(StoreError::Unavailable("injected outage".into())) })
        }
    }

    #[tokio::test]
    async fn the_item_and_a_conflict_item_carry_the_api_request_id_of_their_message() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store.clone(), 4);
        consumer
            .handle(from_api(&[
                ("m1", Some("req-1"), r#"{"eventId":"e","v":1}"#),
                ("m2", None, r#"{"eventId":"other"}"#),
            ]))
            .await
            .expect("answered");
        consumer
            .handle(from_api(&[(
                "m3",
                Some("req-3"),
                r#"{"eventId":"e","v":2}"#,
            )]))
            .await
            .expect("answered");
        let items = store.items();
        assert_eq!(
            items["e"]["apiRequestId"],
            AttributeValue::S("req-1".into())
        );
        assert!(!items["other"].contains_key("apiRequestId"));
        let hash = payload_hash(&json!({"eventId": "e", "v": 2}));
        assert_eq!(
            items[&conflict_key("e", &hash)]["apiRequestId"],
            AttributeValue::S("req-3".into()),
            "the conflicting newcomer's own request"
        );
    }

    #[tokio::test]
    async fn every_line_about_a_message_carries_its_api_request_id_and_never_its_body() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let consumer = Consumer::new(store, 4);
        let (logs, _guard) = aws_setup::CapturedLogs::start();
        for batch in [
            from_api(&[(
                "m1",
                Some("req-1"),
                r#"{"eventId":"e","secret":"s3cr3t-1"}"#,
            )]),
            from_api(&[(
                "m1",
                Some("req-1"),
                r#"{"eventId":"e","secret":"s3cr3t-1"}"#,
            )]),
            from_api(&[(
                "m2",
                Some("req-2"),
                r#"{"eventId":"e","secret":"s3cr3t-2"}"#,
            )]),
            from_api(&[(
                "m2",
                Some("req-2"),
                r#"{"eventId":"e","secret":"s3cr3t-2"}"#,
            )]),
            from_api(&[("m3", Some("req-3"), "s3cr3t-3 is not JSON")]),
        ] {
            consumer.handle(batch).await.expect("answered");
        }
        let text = logs.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        let about = |id: &str| {
            lines
                .iter()
                .filter(|l| l["fields"]["message_id"] == id)
                .map(|l| l["fields"]["apiRequestId"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(about("m1"), [json!("req-1")], "the duplicate: {text}");
        assert_eq!(
            about("m2"),
            [json!("req-2"), json!("req-2")],
            "the conflict, twice: {text}"
        );
        assert_eq!(about("m3"), [json!("req-3")], "the failure: {text}");
        assert!(!text.contains("s3cr3t"), "a body reached the logs: {text}");
    }

    #[tokio::test]
    async fn each_batch_writes_one_document_counting_every_outcome() {
        let store = Arc::new(MemoryStore::new(KEY_ATTRIBUTE));
        let (metrics, captured) = batch_metrics::Metrics::capture(
            "AsyncApiPatterns",
            Pattern::SqsBuffer,
            Function::Consumer,
        );
        let consumer = Consumer::new(store, 4).with_metrics(metrics);
        no_failures(&consumer, &[("m1", r#"{"eventId":"a","v":1}"#)]).await;
        let first = captured.only().expect("one document");
        assert_eq!(
            first.counts,
            batch_metrics::Counts {
                stored: 1,
                ..Default::default()
            }
        );
        consumer
            .handle(batch(&[
                ("m2", r#"{"eventId":"b"}"#),
                ("m1", r#"{"eventId":"a","v":1}"#),
                ("m3", r#"{"eventId":"a","v":2}"#),
                ("m4", r#"{"eventId":"a","v":2}"#),
                ("m5", "not json"),
                ("m6", r#"{"eventId":42}"#),
            ]))
            .await
            .expect("answered");
        let second = captured.only().expect("one document");
        // m3 and m4 race for the conflict item: one records it, the other finds it recorded.
        assert_eq!(
            second.counts,
            batch_metrics::Counts {
                stored: 1,
                duplicate: 2,
                conflict: 1,
                invalid: 2,
                failed: 0,
            }
        );
        assert_eq!(second.document["Pattern"], "sqs-buffer");
        assert_eq!(second.document["Function"], "consumer");
        assert!(second.batch_write_latency_ms >= 0.0);

        let (metrics, captured) =
            batch_metrics::Metrics::capture("Ns", Pattern::SqsBuffer, Function::Consumer);
        let down = Consumer::new(Arc::new(Down), 4).with_metrics(metrics);
        let answer = down
            .handle(batch(&[("m1", r#"{"v":1}"#), ("m2", "not json")]))
            .await
            .expect("answered");
        assert_eq!(answer.batch_item_failures.len(), 2);
        assert_eq!(
            captured.only().expect("one document").counts,
            batch_metrics::Counts {
                failed: 1,
                invalid: 1,
                ..Default::default()
            }
        );
        // A batch refused as a whole comes back whole.
        let mut refused = batch(&[("m1", "{}"), ("m2", "{}")]);
        refused.records[1].message_id = None;
        assert!(down.handle(refused).await.is_err());
        assert_eq!(captured.only().expect("one document").counts.failed, 2);
    }

    #[test]
    fn payload_hash_ignores_key_order_and_whitespace_but_not_values() {
        let a: Value =
            serde_json::from_str(r#"{"a":1,"b":{"c":[true,null],"d":"x"}}"#).expect("json");
        let b: Value =
            serde_json::from_str(r#"{ "b": { "d": "x", "c": [ true, null ] }, "a": 1 }"#)
                .expect("json");
        assert_eq!(payload_hash(&a), payload_hash(&b));
        assert_eq!(payload_hash(&a).len(), 64);
        let c: Value =
            serde_json::from_str(r#"{"a":1,"b":{"c":[null,true],"d":"x"}}"#).expect("json");
        assert_ne!(payload_hash(&a), payload_hash(&c), "array order counts");
        assert_ne!(payload_hash(&json!("1")), payload_hash(&json!(1)));
    }

    #[test]
    fn an_item_stored_before_hashes_is_compared_by_its_payload() {
        let new = build_item(&record("m-2", r#"{"eventId":"e","v":1}"#), 0).expect("item");
        let mut legacy = build_item(&record("m-1", r#"{"eventId":"e","v":1}"#), 0).expect("item");
        legacy.remove(HASH_ATTRIBUTE);
        assert!(same_payload(&legacy, &new));
        let other = build_item(&record("m-3", r#"{"eventId":"e","v":2}"#), 0).expect("item");
        assert!(!same_payload(&legacy, &other));
    }

    #[test]
    fn config_requires_table_and_validates_concurrency() {
        let ok =
            Config::from_lookup(|k| (k == "TABLE_NAME").then(|| "t".to_owned())).expect("valid");
        assert_eq!(ok.write_concurrency, batch_consumer::DEFAULT_CONCURRENCY);
        assert!(matches!(
            Config::from_lookup(|_| None),
            Err(ConfigError::Missing("TABLE_NAME"))
        ));
        let bad = Config::from_lookup(|k| Some(if k == "TABLE_NAME" { "t" } else { "0" }.into()));
        assert!(matches!(bad, Err(ConfigError::BadConcurrency(_))));
    }
}
