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
//!
//! Both stores refuse, before any call, an item nested deeper than DynamoDB stores
//! ([`check_nesting`]): moto does not make that check, so without it a consumer would store
//! locally what AWS refuses.

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
    /// DynamoDB refuses the item itself (too large, bad key, nested too deep, ...): retrying the
    /// same item will not help.
    #[error("DynamoDB refuses the item: {0}")]
    Rejected(Rejection),
    /// Any other failure: network, credentials, service error.
    #[error("DynamoDB write failed")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The item lacks its partition key attribute.
    #[error("item has no attribute {0:?} to use as its key")]
    MissingKey(String),
}

/// Why DynamoDB refuses an item: whether DynamoDB said so or this crate knew it beforehand, the
/// caller gets the same [`StoreError::Rejected`], so both take the same path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// DynamoDB answered `ValidationException` (item too large, bad key, ...), with its message.
    #[error("{0}")]
    Validation(String),
    /// The item nests deeper than DynamoDB allows ([`check_nesting`]), refused before the call.
    #[error(transparent)]
    TooDeep(#[from] TooDeep),
}

impl From<TooDeep> for StoreError {
    fn from(error: TooDeep) -> Self {
        StoreError::Rejected(Rejection::TooDeep(error))
    }
}

/// How deep DynamoDB nests maps and lists: "DynamoDB supports nested attributes up to 32 levels
/// deep" (developer guide, "Constraints in Amazon DynamoDB", Constraints.html, "Nested attribute
/// depth"; formerly ServiceQuotas.html#limits-attributes).
///
/// The guide does not say how levels are counted. AWS's own emulator, DynamoDB Local, counts the
/// item as level 0 and a top-level attribute's value as level 1 (its `InputConverter` refuses a
/// map or list at a level that is not `< 32`, checked before its members are read, so an empty
/// one too); real DynamoDB, probed at the boundary, stores a top-level attribute holding 31 maps
/// nested in one another around a scalar and refuses 32 with a `ValidationException`, "Nesting
/// Levels have exceeded supported limits: Attributes in the item have nested levels beyond
/// supported limit" (captured against eu-west-2 by the dynoxide emulator's conformance tests,
/// `tests/nesting_depth.rs`). So: the top-level attribute is level 1, the item itself is not a
/// level, and every member of a map or list is one level below it; a map or list may stand at
/// level 31 at most, a scalar at level 32.
pub const MAX_NESTING_LEVELS: usize = 32;

/// An item nests maps and lists deeper than DynamoDB stores ([`MAX_NESTING_LEVELS`]). Names the
/// top-level attribute, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "attribute {attribute:?} nests maps and lists deeper than the {MAX_NESTING_LEVELS} levels DynamoDB stores"
)]
pub struct TooDeep {
    /// The top-level attribute holding the too-deep value.
    pub attribute: String,
}

/// Checks that DynamoDB would store `item` as deep as it is nested: no map or list below level
/// 31, the top-level attributes being level 1 ([`MAX_NESTING_LEVELS`] says why).
///
/// DynamoDB refuses a deeper item with a `ValidationException`; moto stores it. Both stores here
/// make the check before the call, so an item is refused alike on moto and on AWS, and it is
/// refused as [`StoreError::Rejected`], the error a `ValidationException` from DynamoDB becomes:
/// the code above this crate cannot tell the two apart, and handles them alike. The consumers
/// report such a record like every record they cannot store (a body that is not JSON is
/// another): SQS delivers it again until `maxReceiveCount`, then moves it to the dead-letter
/// queue; Kinesis retries and bisects, then hands it to the on-failure destination. Retrying
/// cannot store it, but that is the terminal place where each pattern keeps, whole and visible,
/// every accepted record it could not store, to be fixed and redriven rather than lost (and
/// these patterns record no per-request status an `INVALID` could go to). Storing it locally,
/// as moto would, would show a success that AWS never gives.
///
/// The walk stops at the first level too deep, so it never recurses more than
/// [`MAX_NESTING_LEVELS`] calls, whatever the item holds.
pub fn check_nesting(item: &Item) -> Result<(), TooDeep> {
    match item
        .iter()
        .filter(|(_, value)| !fits(value, 1))
        .map(|(name, _)| name)
        .min()
    {
        None => Ok(()),
        Some(name) => Err(TooDeep {
            attribute: name.clone(),
        }),
    }
}

/// Whether `value`, standing at `level`, keeps every map and list above [`MAX_NESTING_LEVELS`].
/// A map or list opens the level below it for its members, so it needs one left even when it has
/// no member (DynamoDB Local checks the level on entering the map or list).
fn fits(value: &AttributeValue, level: usize) -> bool {
    match value {
        AttributeValue::M(map) => {
            level < MAX_NESTING_LEVELS && map.values().all(|member| fits(member, level + 1))
        }
        AttributeValue::L(list) => {
            level < MAX_NESTING_LEVELS && list.iter().all(|member| fits(member, level + 1))
        }
        _ => true,
    }
}

/// What every put checks before it writes (or calls DynamoDB).
fn check_item(item: &Item, key: &str) -> Result<(), StoreError> {
    if !item.contains_key(key) {
        return Err(StoreError::MissingKey(key.to_owned()));
    }
    check_nesting(item)?;
    Ok(())
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
            check_item(&item, &self.key)?;
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
            check_item(&item, &self.key)?;
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
            check_item(&item, &self.key)?;
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
            Some("ValidationException") => Err(StoreError::Rejected(Rejection::Validation(
                other.message().unwrap_or("validation error").to_owned(),
            ))),
            _ => Err(StoreError::Unavailable(failed(err))),
        },
    }
}

/// [`EventStore`] in memory, with the same conditional semantics as [`DynamoDbStore`] and the same
/// refusal of an item nested too deep ([`check_nesting`]).
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
            check_nesting(&item)?;
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
            check_nesting(&item)?;
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
            check_nesting(&item)?;
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
///
/// Any JSON maps, however deep; stored as a top-level attribute, its outermost object or array
/// is level 1, and DynamoDB stores no more than 31 of them nested in one another: the stores
/// refuse a deeper one ([`check_nesting`]).
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

/// Longest a function's init waits for [`preconnect`].
pub const PRECONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens `client`'s connection to DynamoDB before a record needs it (in a function's init): one
/// `DescribeEndpoints` call, which reads no table and needs only `dynamodb:DescribeEndpoints`.
/// What it saves the first invocation is measured by `make bench`. Its outcome is only logged,
/// at most [`PRECONNECT_LIMIT`] later: a function that cannot reach DynamoDB at init still
/// starts, and its first write says why.
pub async fn preconnect(client: &aws_sdk_dynamodb::Client) {
    match tokio::time::timeout(PRECONNECT_LIMIT, client.describe_endpoints().send()).await {
        Ok(Ok(_)) => tracing::debug!("connected to DynamoDB during init"),
        Ok(Err(error)) => tracing::warn!(
            error = %aws_setup::ErrorChain(&error),
            "could not reach DynamoDB during init; the first write will try again"
        ),
        Err(_) => tracing::warn!(
            limit_ms = PRECONNECT_LIMIT.as_millis() as u64,
            "DynamoDB did not answer during init in time; the first write will try again"
        ),
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

    /// `containers` maps (or lists, or both in turn) nested in one another around a scalar:
    /// `nested(1, ..)` is `{"n": "leaf"}`, the map at the level of the attribute that holds it.
    fn nested(containers: usize, kind: fn(usize) -> bool) -> AttributeValue {
        let mut value = AttributeValue::S("leaf".into());
        for depth in 0..containers {
            value = if kind(depth) {
                AttributeValue::M(HashMap::from([("n".to_owned(), value)]))
            } else {
                AttributeValue::L(vec![value])
            };
        }
        value
    }

    fn maps(_: usize) -> bool {
        true
    }

    fn lists(_: usize) -> bool {
        false
    }

    fn mixed(depth: usize) -> bool {
        depth.is_multiple_of(2)
    }

    fn with(attribute: &str, value: AttributeValue) -> Item {
        let mut item = item("k", "marker");
        item.insert(attribute.to_owned(), value);
        item
    }

    fn too_deep(attribute: &str) -> Result<(), TooDeep> {
        Err(TooDeep {
            attribute: attribute.to_owned(),
        })
    }

    #[test]
    fn the_deepest_nesting_dynamodb_stores_passes_and_one_level_more_is_refused() {
        for kind in [maps as fn(usize) -> bool, lists, mixed] {
            // 31 maps or lists: the innermost at level 31, its scalar at level 32.
            let deepest = with("payload", nested(MAX_NESTING_LEVELS - 1, kind));
            assert_eq!(check_nesting(&deepest), Ok(()));
            // 32: the innermost at level 32, its scalar at level 33.
            let deeper = with("payload", nested(MAX_NESTING_LEVELS, kind));
            assert_eq!(check_nesting(&deeper), too_deep("payload"));
        }
        // A map or list needs a level for its members even when it has none.
        let empty_at = |level: usize| {
            let mut value = AttributeValue::M(HashMap::new());
            for _ in 1..level {
                value = AttributeValue::L(vec![value]);
            }
            with("payload", value)
        };
        assert_eq!(check_nesting(&empty_at(MAX_NESTING_LEVELS - 1)), Ok(()));
        assert_eq!(
            check_nesting(&empty_at(MAX_NESTING_LEVELS)),
            too_deep("payload")
        );
        // Scalars and sets at the top level are level 1; the item itself is no level.
        assert_eq!(check_nesting(&item("k", "flat")), Ok(()));
    }

    #[test]
    fn a_json_document_counts_its_outermost_object_as_level_one() {
        let document = |objects: usize| {
            let body = format!("{}1{}", r#"{"n":"#.repeat(objects), "}".repeat(objects));
            let value: Value = serde_json::from_str(&body).expect("json");
            with("payload", json_to_attribute(&value))
        };
        assert_eq!(check_nesting(&document(MAX_NESTING_LEVELS - 1)), Ok(()));
        assert_eq!(
            check_nesting(&document(MAX_NESTING_LEVELS)),
            too_deep("payload")
        );
        // One too-deep member anywhere is enough, and the error names the top-level attribute.
        let mut wide = document(3);
        wide.insert("b".into(), nested(MAX_NESTING_LEVELS, maps));
        wide.insert("a".into(), nested(MAX_NESTING_LEVELS + 5, lists));
        assert_eq!(check_nesting(&wide), too_deep("a"));
    }

    #[tokio::test]
    async fn memory_store_refuses_a_too_deep_item_as_dynamodb_does_and_stores_nothing() {
        let store = MemoryStore::new("eventId");
        let deep = || {
            let mut item = with("payload", nested(MAX_NESTING_LEVELS, maps));
            item.insert("version".into(), AttributeValue::S("01".into()));
            item
        };
        let refused = |error: StoreError| {
            assert_eq!(
                error.to_string(),
                "DynamoDB refuses the item: attribute \"payload\" nests maps and lists deeper \
                 than the 32 levels DynamoDB stores"
            );
            matches!(error, StoreError::Rejected(Rejection::TooDeep(TooDeep { attribute })) if attribute == "payload")
        };
        assert!(store.put_if_absent(deep()).await.is_err_and(refused));
        assert!(store.put_if_absent_or_get(deep()).await.is_err_and(refused));
        assert!(
            store
                .put_if_newer(deep(), "version")
                .await
                .is_err_and(refused)
        );
        assert!(store.items().is_empty());
        let deepest = with("payload", nested(MAX_NESTING_LEVELS - 1, maps));
        assert_eq!(
            store.put_if_absent(deepest).await.ok(),
            Some(PutOutcome::Created)
        );
    }

    #[tokio::test]
    async fn item_without_key_is_an_error() {
        let store = MemoryStore::new("eventId");
        let result = store.put_if_absent(HashMap::new()).await;
        assert!(matches!(result, Err(StoreError::MissingKey(k)) if k == "eventId"));
    }
}
