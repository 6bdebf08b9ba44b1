//! user-api consumer: turns queued "create user" requests into users, exactly once.
//!
//! - The user id is derived from the SQS message id (a UUID v5), so a redelivered message creates
//!   the same user again, which the conditional write turns into a no-op: never a second user.
//! - An email is unique: the user and an email claim are written in one DynamoDB transaction; if
//!   another user holds the email, no user is created and the message's status says
//!   `EMAIL_TAKEN`.
//! - Fields are validated again (the API validated them too); an invalid request gets the status
//!   `INVALID` rather than a retry that could never succeed. A body that is not JSON is a failure
//!   of that record only: after `maxReceiveCount` receives it waits in the dead-letter queue.
//!
//! Every item carries the message id, so the table's `byMessageId` index answers
//! `GET /status/{messageId}` with the user id and state.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use batch_consumer::{BatchError, process_sqs_batch};
use dynamo_writer::{Backoff, CallFailed};
use futures::future::BoxFuture;
use serde::Deserialize;

/// Partition key of the users table.
pub const KEY_ATTRIBUTE: &str = "userId";
/// Namespace of the user ids derived from message ids.
pub const USER_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6f1d_2c3b_4a59_4687_9a8b_7c6d_5e4f_3a2b);

/// What a create request carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser {
    /// Display name.
    pub name: String,
    /// Email address (unique, compared case-insensitively).
    pub email: String,
    /// Optional BCP 47 locale.
    #[serde(default)]
    pub locale: Option<String>,
}

impl NewUser {
    /// Validates the request again; `Err` says why it can never succeed.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err("name must be 1-100 characters".into());
        }
        let email = self.email.trim();
        let valid_email = email.len() <= 254
            && !email.contains(char::is_whitespace)
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            });
        if !valid_email {
            return Err("email is not a valid address".into());
        }
        if self
            .locale
            .as_ref()
            .is_some_and(|l| l.is_empty() || l.len() > 35)
        {
            return Err("locale must be 1-35 characters".into());
        }
        Ok(())
    }

    /// The email as compared for uniqueness.
    pub fn normalized_email(&self) -> String {
        self.email.trim().to_lowercase()
    }
}

/// The user id a message creates: the same for every delivery of that message.
pub fn user_id_for(message_id: &str) -> String {
    uuid::Uuid::new_v5(&USER_ID_NAMESPACE, message_id.as_bytes()).to_string()
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
    /// Creates the user `user_id` for message `message_id` unless it exists or the email is taken.
    fn create<'a>(
        &'a self,
        user_id: &'a str,
        message_id: &'a str,
        user: &'a NewUser,
    ) -> BoxFuture<'a, Result<Created, StoreError>>;
    /// Records the state of a message that created no user.
    fn record_status<'a>(
        &'a self,
        message_id: &'a str,
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
        message_id: &'a str,
        user: &'a NewUser,
    ) -> BoxFuture<'a, Result<Created, StoreError>> {
        Box::pin(async move {
            let email = user.normalized_email();
            let now = now_millis();
            let mut item = std::collections::HashMap::from([
                (KEY_ATTRIBUTE.to_owned(), s(user_id)),
                ("kind".to_owned(), s("user")),
                ("messageId".to_owned(), s(message_id)),
                ("state".to_owned(), s("CREATED")),
                ("name".to_owned(), s(user.name.trim())),
                ("email".to_owned(), s(&email)),
                ("createdAt".to_owned(), AttributeValue::N(now.clone())),
            ]);
            if let Some(locale) = &user.locale {
                item.insert("locale".to_owned(), s(locale));
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
        message_id: &'a str,
        state: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let call = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY_ATTRIBUTE, s(&format!("message#{message_id}")))
                .item("kind", s("status"))
                .item("messageId", s(message_id))
                .item("state", s(state))
                .item("reason", s(reason))
                .item("recordedAt", AttributeValue::N(now_millis()))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", KEY_ATTRIBUTE);
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

/// Why one record failed (it is retried, then dead-lettered).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The body is not a JSON object with the expected fields.
    #[error("body is not a create-user request")]
    NotARequest(#[source] serde_json::Error),
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
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").finish_non_exhaustive()
    }
}

impl Consumer {
    /// A consumer writing to `store`.
    pub fn new(store: Arc<dyn UserStore>) -> Self {
        Self { store }
    }

    /// A consumer writing to the table named in `config`.
    pub fn from_config(config: &Config, client: aws_sdk_dynamodb::Client) -> Self {
        Self::new(Arc::new(DynamoDbUsers::new(
            client,
            config.table_name.clone(),
        )))
    }

    /// Handles one SQS batch; answers with the records to retry.
    pub async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, BatchError> {
        process_sqs_batch(event, batch_consumer::DEFAULT_CONCURRENCY, |record| {
            self.create(record)
        })
        .await
    }

    async fn create(&self, record: SqsMessage) -> Result<(), RecordError> {
        let message_id = record.message_id.clone().ok_or(RecordError::NoMessageId)?;
        let user: NewUser = serde_json::from_str(record.body.as_deref().unwrap_or_default())
            .map_err(RecordError::NotARequest)?;
        if let Err(reason) = user.validate() {
            tracing::info!(message_id = %message_id, reason = %reason, "invalid request; status recorded");
            return Ok(self
                .store
                .record_status(&message_id, "INVALID", &reason)
                .await?);
        }
        let user_id = user_id_for(&message_id);
        match self.store.create(&user_id, &message_id, &user).await? {
            Created::New => {
                tracing::info!(message_id = %message_id, user_id = %user_id, "user created")
            }
            Created::Again => {
                tracing::info!(message_id = %message_id, user_id = %user_id, "redelivery; user already created")
            }
            Created::EmailTaken => {
                tracing::info!(message_id = %message_id, "email already taken; no user created");
                self.store
                    .record_status(&message_id, "EMAIL_TAKEN", "another user has this email")
                    .await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, email: &str) -> NewUser {
        NewUser {
            name: name.into(),
            email: email.into(),
            locale: None,
        }
    }

    #[test]
    fn user_ids_are_stable_per_message() {
        assert_eq!(user_id_for("m-1"), user_id_for("m-1"));
        assert_ne!(user_id_for("m-1"), user_id_for("m-2"));
    }

    #[test]
    fn requests_are_validated_again() {
        assert!(user("Ada", "ada@example.com").validate().is_ok());
        for bad in [
            user("", "a@b.co"),
            user("Ada", "nope"),
            user("Ada", "a b@c.de"),
            user("Ada", "a@b"),
            user(&"x".repeat(101), "a@b.co"),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(
            user("A", " Ada@Example.COM ").normalized_email(),
            "ada@example.com"
        );
    }
}
