//! Idempotent writes of events to DynamoDB.
//!
//! Consumers of at-least-once sources (SQS, Kinesis, asynchronous invokes) see the same event more
//! than once. [`EventStore::put_if_absent`] writes an item only when its key is not taken yet
//! (`attribute_not_exists` on the partition key), so a redelivery neither duplicates nor
//! overwrites the stored event, and reports which of the two happened.
//! [`EventStore::put_if_absent_or_get`] does the same and, when the key is taken, also answers
//! with the stored item (in the same round trip), so a caller can tell a true duplicate from a
//! different event that reuses the key.
//!
//! The store is a small trait with two implementations: [`DynamoDbStore`] (the real SDK client,
//! tested against moto) and [`MemoryStore`] (for fast logic tests). Transient failures
//! (throttling, 5xx, transaction conflicts) are retried within the call by [`retry::Backoff`].

pub mod retry;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use futures::future::BoxFuture;
use serde_json::Value;

pub use retry::Backoff;

/// A DynamoDB call that failed, with what DynamoDB answered: the operation, the error code and
/// message, the HTTP status. The SDK's own error stays underneath as the source. (The SDK's
/// `Display` of an error it has no type for says only "unhandled error", without the message.)
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {operation} failed: {detail}")]
pub struct CallFailed {
    operation: &'static str,
    detail: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl CallFailed {
    /// Wraps the error of `operation`.
    pub fn new<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let detail = match &error {
            SdkError::ServiceError(service) => format!(
                "{}: {} (HTTP {})",
                service.err().code().unwrap_or("no error code"),
                service.err().message().unwrap_or("no message"),
                service.raw().status().as_u16()
            ),
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            SdkError::DispatchFailure(_) => "the request could not be sent".to_owned(),
            SdkError::ResponseError(_) => "the response could not be read".to_owned(),
            _ => "the request could not be built".to_owned(),
        };
        Self {
            operation,
            detail,
            source: Box::new(error),
        }
    }
}

/// The settings of a function whose only setting is its table (`TABLE_NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// The table.
    pub table_name: String,
}

/// A required environment variable is missing or empty.
#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is required")]
pub struct MissingVariable(pub &'static str);

impl TableConfig {
    /// Reads `TABLE_NAME` from the process environment.
    pub fn from_env() -> Result<Self, MissingVariable> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads `TABLE_NAME` through `lookup` (the local gateway passes a function's environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, MissingVariable> {
        let table_name = lookup("TABLE_NAME")
            .filter(|v| !v.is_empty())
            .ok_or(MissingVariable("TABLE_NAME"))?;
        Ok(Self { table_name })
    }
}

/// An item as DynamoDB sees it.
pub type Item = HashMap<String, AttributeValue>;

/// What a conditional put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The item was new and is now stored.
    Created,
    /// An item with that key was already there; nothing was written.
    AlreadyExists,
}

/// What [`EventStore::put_if_absent_or_get`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    /// The item was new and is now stored.
    Created,
    /// An item with that key was already there and is left as it was; here it is (`None` only
    /// from a store that cannot say what it holds: see [`EventStore::put_if_absent_or_get`]).
    Exists(Option<Item>),
}

/// Why a write did not happen. Every variant is a failure the caller must report (and so retry),
/// never a silent loss.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB throttled the write; it will likely succeed on retry.
    #[error("DynamoDB throttled the write")]
    Throttled(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// DynamoDB refused the item itself (too large, bad key, ...): retrying will not help.
    #[error("DynamoDB rejected the item: {0}")]
    Rejected(String),
    /// Any other failure: network, credentials, service error.
    #[error("DynamoDB write failed")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The item lacks its partition key attribute.
    #[error("item has no attribute {0:?} to use as its key")]
    MissingKey(String),
}

/// Storage of items keyed by one string partition key.
pub trait EventStore: Send + Sync {
    /// Writes `item` unless an item with the same partition key exists.
    fn put_if_absent(&self, item: Item) -> BoxFuture<'_, Result<PutOutcome, StoreError>>;

    /// Writes `item` unless an item with the same partition key exists, as
    /// [`EventStore::put_if_absent`]; when one exists, answers with it.
    ///
    /// [`DynamoDbStore`] and [`MemoryStore`] always return the stored item. The default, for
    /// other stores, only writes and answers `Exists(None)`: callers must treat an unknown
    /// stored item as possibly different from theirs.
    fn put_if_absent_or_get(&self, item: Item) -> BoxFuture<'_, Result<Written, StoreError>> {
        Box::pin(async move {
            Ok(match self.put_if_absent(item).await? {
                PutOutcome::Created => Written::Created,
                PutOutcome::AlreadyExists => Written::Exists(None),
            })
        })
    }

    /// Writes `item` unless an item with the same partition key exists whose string attribute
    /// `version` is greater than or equal to the item's (a retried or older record then changes
    /// nothing: [`PutOutcome::AlreadyExists`]). The versions must sort as strings the way they
    /// sort as values, for example zero-padded numbers.
    fn put_if_newer<'a>(
        &'a self,
        item: Item,
        version: &'a str,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>>;
}

/// [`EventStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    key: String,
    backoff: Backoff,
}

impl DynamoDbStore {
    /// A store writing to `table`, whose partition key attribute is `key`.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            client,
            table: table.into(),
            key: key.into(),
            backoff: Backoff::CONSUMER,
        }
    }

    /// The same store, retrying transient failures as `backoff` says.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

impl EventStore for DynamoDbStore {
    fn put_if_absent(&self, item: Item) -> BoxFuture<'_, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            if !item.contains_key(&self.key) {
                return Err(StoreError::MissingKey(self.key.clone()));
            }
            let call = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", &self.key);
            let result = self.backoff.run("PutItem", || call.clone().send()).await;
            match result {
                Ok(_) => Ok(PutOutcome::Created),
                Err(err) => classify(err),
            }
        })
    }

    fn put_if_absent_or_get(&self, item: Item) -> BoxFuture<'_, Result<Written, StoreError>> {
        Box::pin(async move {
            let Some(key) = item.get(&self.key).cloned() else {
                return Err(StoreError::MissingKey(self.key.clone()));
            };
            // On a failed condition DynamoDB answers with the item that failed it, in the same
            // round trip (`ReturnValuesOnConditionCheckFailure`, API reference of PutItem).
            let call = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", &self.key)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let err = match self.backoff.run("PutItem", || call.clone().send()).await {
                Ok(_) => return Ok(Written::Created),
                Err(err) => err,
            };
            if let Some(PutItemError::ConditionalCheckFailedException(failed)) =
                err.as_service_error()
            {
                if let Some(existing) = failed.item() {
                    return Ok(Written::Exists(Some(existing.clone())));
                }
                // Not expected from DynamoDB; read the item rather than answer without it.
                return self.get_consistent(key).await.map(Written::Exists);
            }
            // Every other error (the failed condition was handled above).
            classify(err).map(|_| Written::Exists(None))
        })
    }

    fn put_if_newer<'a>(
        &'a self,
        item: Item,
        version: &'a str,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            if !item.contains_key(&self.key) {
                return Err(StoreError::MissingKey(self.key.clone()));
            }
            let value = item
                .get(version)
                .cloned()
                .ok_or_else(|| StoreError::MissingKey(version.to_owned()))?;
            let call = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#k) OR #v < :v")
                .expression_attribute_names("#k", &self.key)
                .expression_attribute_names("#v", version)
                .expression_attribute_values(":v", value);
            let result = self.backoff.run("PutItem", || call.clone().send()).await;
            match result {
                Ok(_) => Ok(PutOutcome::Created),
                Err(err) => classify(err),
            }
        })
    }
}

impl DynamoDbStore {
    async fn get_consistent(&self, key: AttributeValue) -> Result<Option<Item>, StoreError> {
        let call = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(&self.key, key)
            .consistent_read(true);
        match self.backoff.run("GetItem", || call.clone().send()).await {
            Ok(out) => Ok(out.item),
            Err(err) => Err(StoreError::Unavailable(Box::new(CallFailed::new(
                "GetItem", err,
            )))),
        }
    }
}

fn classify(err: SdkError<PutItemError>) -> Result<PutOutcome, StoreError> {
    let failed = |err| Box::new(CallFailed::new("PutItem", err));
    let Some(service) = err.as_service_error() else {
        return Err(StoreError::Unavailable(failed(err)));
    };
    match service {
        PutItemError::ConditionalCheckFailedException(_) => Ok(PutOutcome::AlreadyExists),
        PutItemError::ProvisionedThroughputExceededException(_)
        | PutItemError::RequestLimitExceeded(_) => Err(StoreError::Throttled(failed(err))),
        other => match other.code() {
            Some("ThrottlingException") => Err(StoreError::Throttled(failed(err))),
            Some("ValidationException") => Err(StoreError::Rejected(
                other.message().unwrap_or("validation error").to_owned(),
            )),
            _ => Err(StoreError::Unavailable(failed(err))),
        },
    }
}

/// [`EventStore`] in memory, with the same conditional semantics as [`DynamoDbStore`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    key: String,
    items: Mutex<HashMap<String, Item>>,
}

impl MemoryStore {
    /// An empty store keyed on attribute `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            items: Mutex::default(),
        }
    }

    /// A copy of every stored item, keyed by partition key.
    pub fn items(&self) -> HashMap<String, Item> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl EventStore for MemoryStore {
    fn put_if_absent(&self, item: Item) -> BoxFuture<'_, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let key = match item.get(&self.key) {
                Some(AttributeValue::S(k)) => k.clone(),
                _ => return Err(StoreError::MissingKey(self.key.clone())),
            };
            let mut items = self
                .items
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if items.contains_key(&key) {
                return Ok(PutOutcome::AlreadyExists);
            }
            items.insert(key, item);
            Ok(PutOutcome::Created)
        })
    }

    fn put_if_absent_or_get(&self, item: Item) -> BoxFuture<'_, Result<Written, StoreError>> {
        Box::pin(async move {
            let key = match item.get(&self.key) {
                Some(AttributeValue::S(k)) => k.clone(),
                _ => return Err(StoreError::MissingKey(self.key.clone())),
            };
            let mut items = self
                .items
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(existing) = items.get(&key) {
                return Ok(Written::Exists(Some(existing.clone())));
            }
            items.insert(key, item);
            Ok(Written::Created)
        })
    }

    fn put_if_newer<'a>(
        &'a self,
        item: Item,
        version: &'a str,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            let key = match item.get(&self.key) {
                Some(AttributeValue::S(k)) => k.clone(),
                _ => return Err(StoreError::MissingKey(self.key.clone())),
            };
            let Some(AttributeValue::S(new)) = item.get(version).cloned() else {
                return Err(StoreError::MissingKey(version.to_owned()));
            };
            let mut items = self
                .items
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(AttributeValue::S(old)) = items.get(&key).and_then(|i| i.get(version))
                && *old >= new
            {
                return Ok(PutOutcome::AlreadyExists);
            }
            items.insert(key, item);
            Ok(PutOutcome::Created)
        })
    }
}

/// Maps a JSON value to a DynamoDB attribute value: objects to `M`, arrays to `L`, strings to `S`,
/// numbers to `N` (kept as written), booleans to `BOOL`, null to `NULL`.
pub fn json_to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(json_to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.clone(), json_to_attribute(v)))
                .collect(),
        ),
    }
}

/// Maps a DynamoDB attribute value back to JSON (numbers that do not parse stay strings; sets
/// become arrays; binary becomes base64 text is not needed here and maps to null).
pub fn attribute_to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => serde_json::from_str::<serde_json::Number>(n)
            .map(Value::Number)
            .unwrap_or_else(|_| Value::String(n.clone())),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(items) => Value::Array(items.iter().map(attribute_to_json).collect()),
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), attribute_to_json(v)))
                .collect(),
        ),
        AttributeValue::Ss(items) => {
            Value::Array(items.iter().cloned().map(Value::String).collect())
        }
        AttributeValue::Ns(items) => Value::Array(
            items
                .iter()
                .map(|n| attribute_to_json(&AttributeValue::N(n.clone())))
                .collect(),
        ),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_maps_to_attributes_and_back() {
        let value = json!({
            "s": "text", "n": 12.5, "i": -3, "b": true, "z": null,
            "l": [1, "two", {"three": 3}], "m": {"nested": {"deep": [false]}}, "e": ""
        });
        let attr = json_to_attribute(&value);
        let AttributeValue::M(map) = &attr else {
            panic!("object must map to M, got {attr:?}")
        };
        assert_eq!(map["s"], AttributeValue::S("text".into()));
        assert_eq!(map["n"], AttributeValue::N("12.5".into()));
        assert_eq!(map["b"], AttributeValue::Bool(true));
        assert_eq!(map["z"], AttributeValue::Null(true));
        assert_eq!(attribute_to_json(&attr), value);
    }

    fn item(key: &str, marker: &str) -> Item {
        HashMap::from([
            ("eventId".to_owned(), AttributeValue::S(key.into())),
            ("marker".to_owned(), AttributeValue::S(marker.into())),
        ])
    }

    #[tokio::test]
    async fn memory_store_writes_once_and_never_overwrites() {
        let store = MemoryStore::new("eventId");
        assert_eq!(
            store.put_if_absent(item("a", "first")).await.ok(),
            Some(PutOutcome::Created)
        );
        assert_eq!(
            store.put_if_absent(item("a", "second")).await.ok(),
            Some(PutOutcome::AlreadyExists)
        );
        assert_eq!(
            store.items()["a"]["marker"],
            AttributeValue::S("first".into())
        );
    }

    #[tokio::test]
    async fn memory_store_keeps_the_newest_version_only() {
        let store = MemoryStore::new("eventId");
        let versioned = |v: &str| {
            let mut i = item("k", v);
            i.insert("version".into(), AttributeValue::S(v.into()));
            i
        };
        assert_eq!(
            store.put_if_newer(versioned("02"), "version").await.ok(),
            Some(PutOutcome::Created)
        );
        assert_eq!(
            store.put_if_newer(versioned("01"), "version").await.ok(),
            Some(PutOutcome::AlreadyExists)
        );
        assert_eq!(
            store.put_if_newer(versioned("02"), "version").await.ok(),
            Some(PutOutcome::AlreadyExists)
        );
        assert_eq!(
            store.put_if_newer(versioned("10"), "version").await.ok(),
            Some(PutOutcome::Created)
        );
        assert_eq!(store.items()["k"]["marker"], AttributeValue::S("10".into()));
    }

    #[tokio::test]
    async fn memory_store_answers_with_the_item_that_holds_the_key() {
        let store = MemoryStore::new("eventId");
        assert_eq!(
            store.put_if_absent_or_get(item("a", "first")).await.ok(),
            Some(Written::Created)
        );
        assert_eq!(
            store.put_if_absent_or_get(item("a", "second")).await.ok(),
            Some(Written::Exists(Some(item("a", "first"))))
        );
        assert_eq!(
            store.items()["a"]["marker"],
            AttributeValue::S("first".into())
        );
    }

    #[tokio::test]
    async fn item_without_key_is_an_error() {
        let store = MemoryStore::new("eventId");
        let result = store.put_if_absent(HashMap::new()).await;
        assert!(matches!(result, Err(StoreError::MissingKey(k)) if k == "eventId"));
    }
}
