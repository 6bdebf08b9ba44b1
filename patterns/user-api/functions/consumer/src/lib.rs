//! user-api consumer: turns queued "create user" requests into users, exactly once, and gives
//! every request a terminal status the client can poll.
//!
//! - **The request id.** The API's mapping template sends an id API Gateway generates
//!   (`$context.extendedRequestId`, made URL-safe) with each message, as the String message
//!   attribute `requestId`, and answers the client with it.
//!   Everything the consumer records is keyed on it: the user id is a UUID v5 of it, and the
//!   item's `messageId` attribute (the key of the `byMessageId` index behind
//!   `GET /status/{messageId}`) holds it. Unlike SQS's MessageId, it survives a redrive: a
//!   redriven message is a new message with a new MessageId, but the same body and attributes.
//!   A message without the attribute (sent by another producer) falls back to its MessageId.
//! - **Exactly one user.** A redelivered or redriven message derives the same user id again,
//!   which the conditional write turns into a no-op: never a second user.
//! - **Unique emails.** The user and an email claim are written in one DynamoDB transaction; if
//!   another user holds the email, no user is created and the status says `EMAIL_TAKEN`.
//! - **A terminal answer for every body.** The body is read as the API's model reads it
//!   ([`request`]); whatever cannot become a user gets the status `INVALID` with its reason.
//!   Only a failure to write the table (after the retries of [`Backoff`]) is reported for
//!   redelivery, so only an outage can lead a message to the dead-letter queue.
//! - **The API request.** Beside `requestId`, the mapping template sends API Gateway's own
//!   request id (`$context.requestId`) as the String message attribute `apiRequestId`: the user
//!   item and the status item get it as the attribute `apiRequestId`, and every log line about
//!   the message carries it as the field `apiRequestId` (absent when the message has none).
//!   `requestId` stays the id the client polls.
//! - **Metrics.** Every invocation writes one EMF document ([`batch_metrics`]): users created,
//!   deliveries of a request already done, `EMAIL_TAKEN` (conflicts), `INVALID` requests, and
//!   records reported for redelivery.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use batch_consumer::api_request::{API_REQUEST_ID, sqs_api_request_id};
use batch_consumer::{BatchError, process_sqs_batch};
use batch_metrics::{Function, Invocation, Metrics, Outcome, Pattern};
use dynamo_writer::{Backoff, CallFailed};
use futures::future::BoxFuture;

/// Partition key of the users table.
pub const KEY_ATTRIBUTE: &str = "userId";
/// The message attribute carrying the request id (set by the `POST /users` mapping template).
pub const REQUEST_ID_ATTRIBUTE: &str = "requestId";
/// Namespace of the user ids derived from request ids.
pub const USER_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1d_2c3b_4a59_4687_9a8b_7c6d_5e4f_3a2b);

pub mod request;

pub use request::{Invalid, NewUser};

/// The user id a request creates: the same for every delivery of it, redriven ones included.
pub fn user_id_for(request_id: &str) -> String {
    uuid::Uuid::new_v5(&USER_ID_NAMESPACE, request_id.as_bytes()).to_string()
}

/// The request id a record carries in its `requestId` attribute (a `String`, or a `String.*`
/// custom type), if any.
pub fn request_id_attribute(record: &SqsMessage) -> Option<&str> {
    let attribute = record.message_attributes.get(REQUEST_ID_ATTRIBUTE)?;
    let is_string = attribute
        .data_type
        .as_deref()
        .is_some_and(|t| t == "String" || t.starts_with("String."));
    attribute
        .string_value
        .as_deref()
        .filter(|id| is_string && !id.is_empty())
}

/// The ids of one delivery of a create request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery<'a> {
    /// The id the client polls: the `requestId` attribute, else the SQS message id.
    pub request_id: &'a str,
    /// SQS's id of this delivery's message (a redrive changes it); kept for tracing.
    pub message_id: &'a str,
    /// API Gateway's id of the request (the `apiRequestId` attribute), if the message has it.
    pub api_request_id: Option<&'a str>,
}

/// What a create did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The user now exists.
    New,
    /// This message had already created the user (a redelivery).
    Again,
    /// Another user holds the email; nothing was created.
    EmailTaken,
}

/// Errors writing the table: reported for retry.
#[derive(Debug, thiserror::Error)]
#[error("users table write failed")]
pub struct StoreError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// The users table.
pub trait UserStore: Send + Sync {
    /// Creates the user `user_id` for `delivery` unless it exists or the email is taken.
    fn create<'a>(
        &'a self,
        user_id: &'a str,
        delivery: Delivery<'a>,
        user: &'a NewUser,
    ) -> BoxFuture<'a, Result<Created, StoreError>>;
    /// Records the state of a request that created no user (the first state recorded stays).
    fn record_status<'a>(
        &'a self,
        delivery: Delivery<'a>,
        state: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

fn now_millis() -> String {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
        .to_string()
}

/// [`UserStore`] on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbUsers {
    client: aws_sdk_dynamodb::Client,
    table: String,
    backoff: Backoff,
}

impl DynamoDbUsers {
    /// Users in `table`, transient failures retried with [`Backoff::CONSUMER`].
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            backoff: Backoff::CONSUMER,
        }
    }

    /// The same store, retrying transient failures as `backoff` says.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

impl UserStore for DynamoDbUsers {
    fn create<'a>(
        &'a self,
        user_id: &'a str,
        delivery: Delivery<'a>,
        user: &'a NewUser,
    ) -> BoxFuture<'a, Result<Created, StoreError>> {
        Box::pin(async move {
            let email = user.normalized_email();
            let now = now_millis();
            let mut item = std::collections::HashMap::from([
                (KEY_ATTRIBUTE.to_owned(), s(user_id)),
                ("kind".to_owned(), s("user")),
                // The index key: the id the client polls (see the module's documentation).
                ("messageId".to_owned(), s(delivery.request_id)),
                ("sqsMessageId".to_owned(), s(delivery.message_id)),
                ("state".to_owned(), s("CREATED")),
                ("name".to_owned(), s(&user.name)),
                ("email".to_owned(), s(&email)),
                ("createdAt".to_owned(), AttributeValue::N(now.clone())),
            ]);
            if let Some(locale) = &user.locale {
                item.insert("locale".to_owned(), s(locale));
            }
            if let Some(id) = delivery.api_request_id {
                item.insert(API_REQUEST_ID.to_owned(), s(id));
            }
            let put_user = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", KEY_ATTRIBUTE)
                .build()
                .map_err(|e| StoreError(Box::new(e)))?;
            // The email claim: a second item keyed on the email, owned by this user id.
            let put_claim = Put::builder()
                .table_name(&self.table)
                .item(KEY_ATTRIBUTE, s(&format!("email#{email}")))
                .item("kind", s("email"))
                .item("owner", s(user_id))
                .condition_expression("attribute_not_exists(#k) OR #o = :me")
                .expression_attribute_names("#k", KEY_ATTRIBUTE)
                .expression_attribute_names("#o", "owner")
                .expression_attribute_values(":me", s(user_id))
                .build()
                .map_err(|e| StoreError(Box::new(e)))?;
            // Two creates with one email at once conflict on AWS (TransactionConflict); the
            // backoff retries them, and the retry meets the winner's claim: EMAIL_TAKEN.
            let call = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_user).build())
                .transact_items(TransactWriteItem::builder().put(put_claim).build());
            let result = self
                .backoff
                .run("TransactWriteItems", || call.clone().send())
                .await;
            match result {
                Ok(_) => Ok(Created::New),
                Err(error) => {
                    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                    let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
                        error.as_service_error()
                    else {
                        return Err(StoreError(Box::new(CallFailed::new(
                            "TransactWriteItems",
                            error,
                        ))));
                    };
                    let failed = |i: usize| {
                        cancel.cancellation_reasons().get(i).and_then(|r| r.code())
                            == Some("ConditionalCheckFailed")
                    };
                    if failed(0) {
                        Ok(Created::Again)
                    } else if failed(1) {
                        Ok(Created::EmailTaken)
                    } else {
                        Err(StoreError(Box::new(CallFailed::new(
                            "TransactWriteItems",
                            error,
                        ))))
                    }
                }
            }
        })
    }

    fn record_status<'a>(
        &'a self,
        delivery: Delivery<'a>,
        state: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut call = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(
                    KEY_ATTRIBUTE,
                    s(&format!("message#{}", delivery.request_id)),
                )
                .item("kind", s("status"))
                .item("messageId", s(delivery.request_id))
                .item("sqsMessageId", s(delivery.message_id))
                .item("state", s(state))
                .item("reason", s(reason))
                .item("recordedAt", AttributeValue::N(now_millis()))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", KEY_ATTRIBUTE);
            if let Some(id) = delivery.api_request_id {
                call = call.item(API_REQUEST_ID, s(id));
            }
            let result = self.backoff.run("PutItem", || call.clone().send()).await;
            match result {
                Ok(_) => Ok(()),
                Err(e) if matches!(
                    e.as_service_error(),
                    Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(_))
                ) => Ok(()),
                Err(e) => Err(StoreError(Box::new(CallFailed::new("PutItem", e)))),
            }
        })
    }
}

/// Settings of the consumer, read once at start-up: its table.
pub use dynamo_writer::{MissingVariable as ConfigError, TableConfig as Config};

/// Why one record failed (it is retried, then dead-lettered): never its content, which has a
/// terminal answer whatever it is, only the table.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record has no message id.
    #[error("record has no message id")]
    NoMessageId,
    /// The table could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The consumer, built once per execution environment.
#[derive(Clone)]
pub struct Consumer {
    store: Arc<dyn UserStore>,
    metrics: Metrics,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer writing to `store`, writing no metrics ([`Consumer::with_metrics`]).
    pub fn new(store: Arc<dyn UserStore>) -> Self {
        Self {
            store,
            metrics: Metrics::disabled(Pattern::UserApi, Function::Consumer),
        }
    }

    /// The same consumer, writing one document per batch to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// A consumer writing to the table named in `config`.
    pub fn from_config(config: &Config, client: aws_sdk_dynamodb::Client) -> Self {
        Self::new(Arc::new(DynamoDbUsers::new(
            client,
            config.table_name.clone(),
        )))
    }

    /// Handles one SQS batch; answers with the records to retry; writes the batch's metrics
    /// before it answers.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, BatchError> {
        let metrics = self.metrics.invocation();
        let records = event.records.len() as u64;
        let answer = metrics
            .time_writes(process_sqs_batch(
                event,
                batch_consumer::DEFAULT_CONCURRENCY,
                |record| self.create_counted(record, &metrics),
            ))
            .await;
        if answer.is_err() {
            // Refused as a whole: every record comes back.
            metrics.count_many(Outcome::Failed, records);
        }
        answer
    }

    async fn create_counted(
        &self,
        record: SqsMessage,
        metrics: &Invocation,
    ) -> Result<(), RecordError> {
        let created = self.create(&record).await;
        // Every body has a terminal answer: only an error is a failure.
        metrics.count(created.as_ref().copied().unwrap_or(Outcome::Failed));
        created.map(drop)
    }

    async fn create(&self, record: &SqsMessage) -> Result<Outcome, RecordError> {
        let message_id = record
            .message_id
            .as_deref()
            .ok_or(RecordError::NoMessageId)?;
        let api_request_id = sqs_api_request_id(record);
        let request_id = match request_id_attribute(record) {
            Some(id) => id,
            None => {
                tracing::warn!(
                    message_id = %message_id,
                    apiRequestId = api_request_id,
                    "no requestId attribute; keyed on the message id, which a redrive changes"
                );
                message_id
            }
        };
        let delivery = Delivery {
            request_id,
            message_id,
            api_request_id,
        };
        let user = match NewUser::parse(record.body.as_deref().unwrap_or_default()) {
            Ok(user) => user,
            Err(invalid) => {
                tracing::info!(
                    request_id = %request_id,
                    message_id = %message_id,
                    apiRequestId = api_request_id,
                    reason = %invalid,
                    "invalid request; status recorded"
                );
                let reason = invalid.to_string();
                self.store
                    .record_status(delivery, "INVALID", &reason)
                    .await?;
                return Ok(Outcome::Invalid);
            }
        };
        let user_id = user_id_for(request_id);
        Ok(match self.store.create(&user_id, delivery, &user).await? {
            Created::New => {
                tracing::info!(
                    request_id = %request_id,
                    message_id = %message_id,
                    apiRequestId = api_request_id,
                    user_id = %user_id,
                    "user created"
                );
                Outcome::Stored
            }
            Created::Again => {
                tracing::info!(
                    request_id = %request_id,
                    message_id = %message_id,
                    apiRequestId = api_request_id,
                    user_id = %user_id,
                    "delivered again; user already created"
                );
                Outcome::Duplicate
            }
            Created::EmailTaken => {
                tracing::info!(
                    request_id = %request_id,
                    message_id = %message_id,
                    apiRequestId = api_request_id,
                    "email already taken; no user created"
                );
                self.store
                    .record_status(delivery, "EMAIL_TAKEN", "another user has this email")
                    .await?;
                Outcome::Conflict
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The users table in memory: users by id (with the request id that made them), email
    /// claims, statuses by request id. `down` makes every call fail, as an outage does.
    #[derive(Default)]
    struct Memory {
        users: Mutex<HashMap<String, (String, NewUser)>>,
        claims: Mutex<HashMap<String, String>>,
        statuses: Mutex<HashMap<String, (String, String)>>,
        down: AtomicBool,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("table unreachable")]
    struct Down;

    impl UserStore for Memory {
        fn create<'a>(
            &'a self,
            user_id: &'a str,
            delivery: Delivery<'a>,
            user: &'a NewUser,
        ) -> BoxFuture<'a, Result<Created, StoreError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(StoreError(Box::new(Down)));
                }
                let mut users = self.users.lock().expect("lock");
                if users.contains_key(user_id) {
                    return Ok(Created::Again);
                }
                let mut claims = self.claims.lock().expect("lock");
                let email = user.normalized_email();
                if claims.get(&email).is_some_and(|owner| owner != user_id) {
                    return Ok(Created::EmailTaken);
                }
                claims.insert(email, user_id.to_owned());
                users.insert(
                    user_id.to_owned(),
                    (delivery.request_id.to_owned(), user.clone()),
                );
                Ok(Created::New)
            })
        }

        fn record_status<'a>(
            &'a self,
            delivery: Delivery<'a>,
            state: &'a str,
            reason: &'a str,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                if self.down.load(Ordering::SeqCst) {
                    return Err(StoreError(Box::new(Down)));
                }
                self.statuses
                    .lock()
                    .expect("lock")
                    .entry(delivery.request_id.to_owned())
                    .or_insert((state.to_owned(), reason.to_owned()));
                Ok(())
            })
        }
    }

    /// Records of (message id, request id attribute, body).
    fn batch(records: &[(&str, Option<&str>, &str)]) -> SqsEvent {
        let records: Vec<_> = records
            .iter()
            .map(|(id, request_id, body)| {
                let attributes = match request_id {
                    Some(r) => {
                        serde_json::json!({"requestId": {"stringValue": r, "dataType": "String",
                        "stringListValues": [], "binaryListValues": []}})
                    }
                    None => serde_json::json!({}),
                };
                serde_json::json!({"messageId": id, "body": body, "messageAttributes": attributes})
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).expect("event")
    }

    fn consumer() -> (Arc<Memory>, Consumer) {
        let memory = Arc::new(Memory::default());
        (memory.clone(), Consumer::new(memory))
    }

    fn failed(answer: &SqsBatchResponse) -> Vec<&str> {
        answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    const ADA: &str = r#"{"name":"Ada","email":"ada@example.com"}"#;

    #[test]
    fn user_ids_are_stable_per_request() {
        assert_eq!(user_id_for("r-1"), user_id_for("r-1"));
        assert_ne!(user_id_for("r-1"), user_id_for("r-2"));
    }

    #[tokio::test]
    async fn the_request_id_attribute_keys_the_user_and_a_redriven_copy_finds_the_same_user() {
        let (memory, consumer) = consumer();
        let answer = consumer
            .handle(batch(&[("m-1", Some("req-1"), ADA)]))
            .await
            .expect("answered");
        assert!(answer.batch_item_failures.is_empty());
        // Redriven: a new message id, the same body and attributes.
        let answer = consumer
            .handle(batch(&[("m-2-after-redrive", Some("req-1"), ADA)]))
            .await
            .expect("answered");
        assert!(answer.batch_item_failures.is_empty());
        let users = memory.users.lock().expect("lock");
        assert_eq!(users.len(), 1);
        assert_eq!(users[&user_id_for("req-1")].0, "req-1");
        assert!(
            memory.statuses.lock().expect("lock").is_empty(),
            "a redriven copy is not an email conflict"
        );
    }

    #[tokio::test]
    async fn a_message_without_the_attribute_is_keyed_on_its_message_id() {
        let (memory, consumer) = consumer();
        let mut event = batch(&[("m-1", None, ADA), ("m-2", Some("req-2"), ADA)]);
        // An attribute of another type, or empty, is no request id either.
        let mut numeric = event.records[1].message_attributes["requestId"].clone();
        numeric.data_type = Some("Number".into());
        event.records[1]
            .message_attributes
            .insert("requestId".into(), numeric);
        consumer.handle(event).await.expect("answered");
        assert!(
            memory
                .users
                .lock()
                .expect("lock")
                .contains_key(&user_id_for("m-1"))
        );
        assert_eq!(
            memory.statuses.lock().expect("lock")["m-2"].0,
            "EMAIL_TAKEN"
        );
    }

    #[tokio::test]
    async fn every_body_that_can_become_no_user_gets_a_terminal_invalid_status_and_no_retry() {
        let (memory, consumer) = consumer();
        let bodies = [
            "this is not JSON",
            r#"{"name": "\ud800", "email": "lone@example.com"}"#,
            r#"{"name": "Ada"}"#,
            "[]",
            "",
        ];
        let records: Vec<(String, String)> = (0..bodies.len())
            .map(|i| (format!("m-{i}"), format!("req-{i}")))
            .collect();
        let event = batch(
            &records
                .iter()
                .zip(bodies)
                .map(|((m, r), body)| (m.as_str(), Some(r.as_str()), body))
                .collect::<Vec<_>>(),
        );
        let answer = consumer.handle(event).await.expect("answered");
        assert!(failed(&answer).is_empty(), "{:?}", failed(&answer));
        let statuses = memory.statuses.lock().expect("lock");
        assert_eq!(statuses.len(), bodies.len());
        assert!(statuses.values().all(|(state, _)| state == "INVALID"));
        assert_eq!(statuses["req-0"].1, "the body is not JSON");
        assert!(statuses["req-1"].1.contains("unpaired surrogate"));
        assert_eq!(statuses["req-2"].1, "email is required");
        assert!(memory.users.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn bodies_the_model_accepts_become_users() {
        let (memory, consumer) = consumer();
        let long_email = format!("{}@example.com", "é".repeat(242));
        let bodies = [
            r#"{"name": "First", "email": "dup@example.com", "name": "Last"}"#.to_owned(),
            serde_json::json!({"name": "ü".repeat(100), "email": long_email, "locale": "ü".repeat(35)})
                .to_string(),
        ];
        let event = batch(&[
            ("m-1", Some("req-1"), bodies[0].as_str()),
            ("m-2", Some("req-2"), bodies[1].as_str()),
        ]);
        let answer = consumer.handle(event).await.expect("answered");
        assert!(answer.batch_item_failures.is_empty());
        let users = memory.users.lock().expect("lock");
        assert_eq!(users[&user_id_for("req-1")].1.name, "Last");
        assert_eq!(users[&user_id_for("req-2")].1.email, long_email);
        assert!(memory.statuses.lock().expect("lock").is_empty());
    }

    /// `event` with the `apiRequestId` attribute `api_request_id` on record `index`.
    fn with_api_request_id(mut event: SqsEvent, index: usize, api_request_id: &str) -> SqsEvent {
        let attribute = serde_json::from_value(serde_json::json!({
            "stringValue": api_request_id, "dataType": "String",
            "stringListValues": [], "binaryListValues": []
        }))
        .expect("attribute");
        event.records[index]
            .message_attributes
            .insert("apiRequestId".into(), attribute);
        event
    }

    #[tokio::test]
    async fn each_batch_writes_one_document_counting_every_terminal_answer() {
        let (memory, _) = consumer();
        let (metrics, captured) = batch_metrics::Metrics::capture(
            "AsyncApiPatterns",
            Pattern::UserApi,
            Function::Consumer,
        );
        let consumer = Consumer::new(memory.clone()).with_metrics(metrics);
        consumer
            .handle(batch(&[("m-1", Some("req-1"), ADA)]))
            .await
            .expect("answered");
        assert_eq!(
            captured.only().expect("one document").counts,
            batch_metrics::Counts {
                stored: 1,
                ..Default::default()
            }
        );
        consumer
            .handle(batch(&[
                ("m-1-again", Some("req-1"), ADA),
                ("m-2", Some("req-2"), ADA),
                ("m-3", Some("req-3"), "not JSON"),
                (
                    "m-4",
                    Some("req-4"),
                    r#"{"name":"Bob","email":"bob@example.com"}"#,
                ),
            ]))
            .await
            .expect("answered");
        let written = captured.only().expect("one document");
        assert_eq!(
            written.counts,
            batch_metrics::Counts {
                stored: 1,
                duplicate: 1,
                conflict: 1,
                invalid: 1,
                failed: 0,
            }
        );
        assert_eq!(written.document["Pattern"], "user-api");
        memory.down.store(true, Ordering::SeqCst);
        consumer
            .handle(batch(&[("m-5", Some("req-5"), ADA), ("m-6", None, "[]")]))
            .await
            .expect("answered");
        assert_eq!(
            captured.only().expect("one document").counts,
            batch_metrics::Counts {
                failed: 2,
                ..Default::default()
            },
            "an INVALID that cannot be recorded is a failure"
        );
    }

    #[tokio::test]
    async fn every_line_about_a_message_carries_its_api_request_id_and_never_its_body() {
        let (memory, consumer) = consumer();
        let (logs, _guard) = aws_setup::CapturedLogs::start();
        let event = batch(&[
            (
                "m-1",
                Some("req-1"),
                r#"{"name":"Ada","email":"s3cr3t@example.com"}"#,
            ),
            (
                "m-2",
                None,
                r#"{"name":"Ada","email":"s3cr3t@example.com"}"#,
            ),
            ("m-3", Some("req-3"), "s3cr3t is not JSON"),
        ]);
        let event = with_api_request_id(event, 0, "api-1");
        let event = with_api_request_id(event, 1, "api-2");
        let event = with_api_request_id(event, 2, "api-3");
        consumer.handle(event.clone()).await.expect("answered");
        memory.down.store(true, Ordering::SeqCst);
        consumer.handle(event).await.expect("answered");
        let text = logs.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON"))
            .collect();
        for (message_id, api_request_id) in [("m-1", "api-1"), ("m-2", "api-2"), ("m-3", "api-3")] {
            let about: Vec<_> = lines
                .iter()
                .filter(|l| l["fields"]["message_id"] == message_id)
                .collect();
            assert!(about.len() >= 2, "{message_id}: {text}");
            for line in about {
                assert_eq!(line["fields"]["apiRequestId"], api_request_id, "{line}");
            }
        }
        assert!(!text.contains("s3cr3t"), "a body reached the logs: {text}");
    }

    #[tokio::test]
    async fn only_a_table_that_cannot_be_written_reports_the_record_for_redelivery() {
        let (memory, consumer) = consumer();
        memory.down.store(true, Ordering::SeqCst);
        let answer = consumer
            .handle(batch(&[
                ("m-1", Some("req-1"), ADA),
                ("m-2", Some("req-2"), "not JSON"),
            ]))
            .await
            .expect("answered");
        assert_eq!(failed(&answer), ["m-1", "m-2"]);
    }
}
