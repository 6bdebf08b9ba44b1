//! The user-api consumer against a real DynamoDB API (moto): transactions and conditions are
//! where "never a second user" is decided, so this is where it is proven.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynamo_writer::Backoff;
use testkit::faults::{Fault, FaultProxy};
use user_api_consumer::{Config, Consumer, DynamoDbUsers, KEY_ATTRIBUTE, user_id_for};

async fn setup() -> (aws_sdk_dynamodb::Client, String, Consumer) {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = testkit::create_table(&client, "users", KEY_ATTRIBUTE).await;
    let config =
        Config::from_lookup(|k| (k == "TABLE_NAME").then(|| table.clone())).expect("config");
    let consumer = Consumer::from_config(&config, client.clone());
    (client, table, consumer)
}

fn batch(records: &[(&str, &str)]) -> SqsEvent {
    let records: Vec<_> = records
        .iter()
        .map(|(id, body)| serde_json::json!({"messageId": id, "body": body}))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("event")
}

/// One record as the API sends it: the request id in the `requestId` message attribute.
fn from_api(message_id: &str, request_id: &str, body: &str) -> SqsEvent {
    serde_json::from_value(serde_json::json!({"Records": [{
        "messageId": message_id,
        "body": body,
        "messageAttributes": {"requestId": {"stringValue": request_id, "dataType": "String",
                                            "stringListValues": [], "binaryListValues": []}},
    }]}))
    .expect("event")
}

async fn kinds(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    kind: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let items = client
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan")
        .items()
        .to_vec();
    items
        .into_iter()
        .filter(|i| {
            i.get("kind")
                .and_then(|k| k.as_s().ok())
                .map(String::as_str)
                == Some(kind)
        })
        .collect()
}

#[tokio::test]
async fn a_redelivered_message_creates_no_second_user() {
    let (client, table, consumer) = setup().await;
    let message = [("m-1", r#"{"name":"Ada","email":"ada@example.com"}"#)];
    for _ in 0..3 {
        let answer = consumer.handle(batch(&message)).await.expect("answered");
        assert!(answer.batch_item_failures.is_empty());
    }
    let users = kinds(&client, &table, "user").await;
    assert_eq!(users.len(), 1);
    assert_eq!(
        users[0][KEY_ATTRIBUTE],
        AttributeValue::S(user_id_for("m-1"))
    );
    assert!(
        kinds(&client, &table, "status").await.is_empty(),
        "a redelivery is not an email conflict"
    );
}

#[tokio::test]
async fn items_are_keyed_on_the_request_id_so_a_redriven_message_finds_its_user() {
    let (client, table, consumer) = setup().await;
    let body = r#"{"name":"Ada","email":"ada@example.com"}"#;
    let answer = consumer
        .handle(from_api("sqs-1", "req-1", body))
        .await
        .expect("answered");
    assert!(answer.batch_item_failures.is_empty());
    // A redrive sends the message again: new message id, same body and attributes.
    let answer = consumer
        .handle(from_api("sqs-2-redriven", "req-1", body))
        .await
        .expect("answered");
    assert!(answer.batch_item_failures.is_empty());
    let users = kinds(&client, &table, "user").await;
    assert_eq!(users.len(), 1, "no second user");
    let user = &users[0];
    assert_eq!(user[KEY_ATTRIBUTE], AttributeValue::S(user_id_for("req-1")));
    assert_eq!(user["messageId"], AttributeValue::S("req-1".into()));
    assert_eq!(user["sqsMessageId"], AttributeValue::S("sqs-1".into()));
    assert!(kinds(&client, &table, "status").await.is_empty());

    consumer
        .handle(from_api("sqs-3", "req-2", "not JSON"))
        .await
        .expect("answered");
    let statuses = kinds(&client, &table, "status").await;
    assert_eq!(
        statuses[0][KEY_ATTRIBUTE],
        AttributeValue::S("message#req-2".into())
    );
    assert_eq!(statuses[0]["messageId"], AttributeValue::S("req-2".into()));
    assert_eq!(
        statuses[0]["sqsMessageId"],
        AttributeValue::S("sqs-3".into())
    );
}

#[tokio::test]
async fn bodies_the_model_accepts_end_in_a_user_or_an_invalid_status_never_a_retry() {
    let (client, table, consumer) = setup().await;
    let records = [
        // Duplicate keys: the last value wins, as in the API's validator.
        (
            "m-1",
            r#"{"name":"First","email":"dup@example.com","name":"Last"}"#.to_owned(),
        ),
        // 100, 254 and 35 characters, more bytes than that.
        (
            "m-2",
            serde_json::json!({"name": "é".repeat(100),
                               "email": format!("{}@example.com", "é".repeat(242)),
                               "locale": "ü".repeat(35)})
            .to_string(),
        ),
        // An unpaired surrogate: a string for the model, no character for DynamoDB.
        (
            "m-3",
            r#"{"name":"\ud800","email":"lone@example.com"}"#.to_owned(),
        ),
    ];
    let refs: Vec<(&str, &str)> = records.iter().map(|(m, b)| (*m, b.as_str())).collect();
    let answer = consumer.handle(batch(&refs)).await.expect("answered");
    assert!(answer.batch_item_failures.is_empty(), "nothing is retried");
    let mut names: Vec<String> = kinds(&client, &table, "user")
        .await
        .iter()
        .map(|u| u["name"].as_s().expect("name").clone())
        .collect();
    names.sort();
    assert_eq!(names, ["Last".to_owned(), "é".repeat(100)]);
    let statuses = kinds(&client, &table, "status").await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["messageId"], AttributeValue::S("m-3".into()));
    assert_eq!(statuses[0]["state"], AttributeValue::S("INVALID".into()));
    assert!(
        statuses[0]["reason"]
            .as_s()
            .expect("reason")
            .contains("unpaired surrogate")
    );
}

#[tokio::test]
async fn a_taken_email_creates_no_second_user_and_says_so() {
    let (client, table, consumer) = setup().await;
    consumer
        .handle(batch(&[(
            "m-1",
            r#"{"name":"Ada","email":"ada@example.com"}"#,
        )]))
        .await
        .expect("first");
    let answer = consumer
        .handle(batch(&[(
            "m-2",
            r#"{"name":"Impostor","email":"  ADA@example.com "}"#,
        )]))
        .await
        .expect("second");
    assert!(
        answer.batch_item_failures.is_empty(),
        "a conflict is an answer, not a retry"
    );
    assert_eq!(kinds(&client, &table, "user").await.len(), 1);
    let statuses = kinds(&client, &table, "status").await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["messageId"], AttributeValue::S("m-2".into()));
    assert_eq!(
        statuses[0]["state"],
        AttributeValue::S("EMAIL_TAKEN".into())
    );
}

#[tokio::test]
async fn concurrent_requests_for_one_email_create_exactly_one_user() {
    let (client, table, consumer) = setup().await;
    let bodies: Vec<(String, String)> = (0..8)
        .map(|i| {
            (
                format!("race-{i}"),
                format!(r#"{{"name":"Racer {i}","email":"same@example.com"}}"#),
            )
        })
        .collect();
    let records: Vec<(&str, &str)> = bodies
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let answer = consumer.handle(batch(&records)).await.expect("answered");
    // Every request is answered in this one delivery: none waits for a redelivery.
    assert!(
        answer.batch_item_failures.is_empty(),
        "{:?}",
        answer.batch_item_failures
    );
    assert_eq!(kinds(&client, &table, "user").await.len(), 1);
    assert_eq!(kinds(&client, &table, "status").await.len(), 7);
}

#[tokio::test]
async fn creates_for_one_email_from_separate_invocations_at_once_end_in_one_user() {
    // As Lambda runs them: several invocations at once (one per batch), each with its own
    // records, all for one email. On AWS they conflict (TransactionConflict) and are retried
    // inside the invocation; here moto serialises them. Either way: one user, every other
    // request EMAIL_TAKEN, and nothing is reported for redelivery (so nothing can reach the
    // dead-letter queue).
    let (client, table, consumer) = setup().await;
    let invocations = (0..6).map(|n| {
        let consumer = consumer.clone();
        async move {
            let ids: Vec<(String, String)> = (0..4)
                .map(|i| {
                    (
                        format!("inv{n}-m{i}"),
                        format!(r#"{{"name":"Same {n}-{i}","email":"Same@Example.com"}}"#),
                    )
                })
                .collect();
            let records: Vec<(&str, &str)> =
                ids.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            consumer.handle(batch(&records)).await.expect("answered")
        }
    });
    let answers = futures::future::join_all(invocations).await;
    assert!(answers.iter().all(|a| a.batch_item_failures.is_empty()));
    assert_eq!(kinds(&client, &table, "user").await.len(), 1);
    let statuses = kinds(&client, &table, "status").await;
    assert_eq!(statuses.len(), 23);
    assert!(
        statuses
            .iter()
            .all(|s| s["state"] == AttributeValue::S("EMAIL_TAKEN".into()))
    );
}

/// A consumer whose DynamoDB calls go through `proxy` (the table itself is created in moto).
async fn through(
    proxy: &FaultProxy,
    backoff: Backoff,
) -> (aws_sdk_dynamodb::Client, String, Consumer) {
    let direct = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = testkit::create_table(&direct, "users", KEY_ATTRIBUTE).await;
    let proxied = aws_sdk_dynamodb::Client::new(&proxy.sdk_config().await);
    let store = DynamoDbUsers::new(proxied, table.clone()).with_backoff(backoff);
    (direct, table, Consumer::new(Arc::new(store)))
}

#[tokio::test]
async fn a_transaction_conflict_is_retried_within_the_invocation() {
    let proxy = FaultProxy::start(&testkit::moto_endpoint())
        .await
        .expect("proxy");
    let (client, table, consumer) = through(&proxy, Backoff::CONSUMER).await;
    proxy.inject("TransactWriteItems", Fault::TransactionConflict, 3);
    let answer = consumer
        .handle(batch(&[(
            "m-1",
            r#"{"name":"Ada","email":"ada@example.com"}"#,
        )]))
        .await
        .expect("answered");
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(proxy.injected("TransactWriteItems"), 3);
    assert_eq!(proxy.passed("TransactWriteItems"), 1);
    assert_eq!(kinds(&client, &table, "user").await.len(), 1);
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried_within_the_invocation() {
    let proxy = FaultProxy::start(&testkit::moto_endpoint())
        .await
        .expect("proxy");
    let (client, table, consumer) = through(&proxy, Backoff::CONSUMER).await;
    proxy.inject("TransactWriteItems", Fault::InternalServerError, 2);
    proxy.inject("TransactWriteItems", Fault::Throttling, 1);
    proxy.inject(
        "TransactWriteItems",
        Fault::ProvisionedThroughputExceeded,
        1,
    );
    proxy.inject("PutItem", Fault::InternalServerError, 2);
    let answer = consumer
        .handle(batch(&[
            ("m-1", r#"{"name":"Ada","email":"ada@example.com"}"#),
            ("m-2", r#"{"name":"","email":"nobody@example.com"}"#),
        ]))
        .await
        .expect("answered");
    assert!(answer.batch_item_failures.is_empty());
    assert_eq!(proxy.injected("TransactWriteItems"), 4);
    assert_eq!(proxy.injected("PutItem"), 2);
    assert_eq!(kinds(&client, &table, "user").await.len(), 1);
    assert_eq!(
        kinds(&client, &table, "status").await.len(),
        1,
        "the INVALID status"
    );
}

/// Log lines written while the guard lives (on this thread, as `#[tokio::test]` runs).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_fault_that_outlasts_the_retries_reports_the_record_and_logs_its_whole_cause() {
    let proxy = FaultProxy::start(&testkit::moto_endpoint())
        .await
        .expect("proxy");
    let quick = Backoff {
        attempts: 2,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(1),
    };
    let (client, table, consumer) = through(&proxy, quick).await;
    proxy.inject("TransactWriteItems", Fault::InternalServerError, 1000);
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let answer = consumer
        .handle(batch(&[(
            "m-1",
            r#"{"name":"Ada","email":"secret.ada@example.com"}"#,
        )]))
        .await
        .expect("answered");
    let ids: Vec<_> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(ids, ["m-1"], "reported for redelivery, not lost");
    assert!(kinds(&client, &table, "user").await.is_empty());
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).expect("utf-8");
    let failure = logs
        .lines()
        .find(|l| l.contains("record failed"))
        .unwrap_or_else(|| panic!("no failure line in {logs}"));
    for cause in [
        "users table write failed",
        "DynamoDB TransactWriteItems failed",
        "InternalServerError",
        "injected fault: internal server error",
        "HTTP 500",
        "m-1",
    ] {
        assert!(failure.contains(cause), "{cause:?} missing from {failure}");
    }
    assert!(
        !logs.contains("secret.ada"),
        "a payload reached the logs: {logs}"
    );
}

#[tokio::test]
async fn the_user_and_the_status_items_carry_the_api_request_id_of_their_message() {
    let (client, table, consumer) = setup().await;
    let message = |message_id: &str, request_id: &str, api_request_id: &str, body: &str| {
        let mut event = from_api(message_id, request_id, body);
        event.records[0].message_attributes.insert(
            "apiRequestId".into(),
            serde_json::from_value(serde_json::json!({"stringValue": api_request_id,
                "dataType": "String", "stringListValues": [], "binaryListValues": []}))
            .expect("attribute"),
        );
        event
    };
    let ada = r#"{"name":"Ada","email":"ada@example.com"}"#;
    for event in [
        message("m-1", "req-1", "c6af9ac6-7b61-11e6-9a41-93e8deadbee1", ada),
        message("m-2", "req-2", "c6af9ac6-7b61-11e6-9a41-93e8deadbee2", ada),
        message(
            "m-3",
            "req-3",
            "c6af9ac6-7b61-11e6-9a41-93e8deadbee3",
            "not JSON",
        ),
        from_api(
            "m-4",
            "req-4",
            r#"{"name":"Bob","email":"bob@example.com"}"#,
        ),
    ] {
        let answer = consumer.handle(event).await.expect("answered");
        assert!(answer.batch_item_failures.is_empty());
    }
    let api_request_id = |item: &std::collections::HashMap<String, AttributeValue>| {
        item.get("apiRequestId")
            .and_then(|v| v.as_s().ok())
            .cloned()
    };
    let users = kinds(&client, &table, "user").await;
    let ada = users
        .iter()
        .find(|u| u["email"] == AttributeValue::S("ada@example.com".into()))
        .expect("Ada");
    assert_eq!(
        api_request_id(ada).as_deref(),
        Some("c6af9ac6-7b61-11e6-9a41-93e8deadbee1")
    );
    let bob = users
        .iter()
        .find(|u| u["email"] == AttributeValue::S("bob@example.com".into()))
        .expect("Bob");
    assert_eq!(api_request_id(bob), None, "a message without it has none");
    let mut statuses: Vec<(String, Option<String>)> = kinds(&client, &table, "status")
        .await
        .iter()
        .map(|s| {
            (
                s["state"].as_s().cloned().unwrap_or_default(),
                api_request_id(s),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            (
                "EMAIL_TAKEN".to_owned(),
                Some("c6af9ac6-7b61-11e6-9a41-93e8deadbee2".to_owned())
            ),
            (
                "INVALID".to_owned(),
                Some("c6af9ac6-7b61-11e6-9a41-93e8deadbee3".to_owned())
            ),
        ]
    );
}
