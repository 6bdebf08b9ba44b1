//! The user-api consumer against a real DynamoDB API (moto): transactions and conditions are
//! where "never a second user" is decided, so this is where it is proven.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use user_api_consumer::{Config, Consumer, KEY_ATTRIBUTE, user_id_for};

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
    // A transaction that lost a race may be retried; retry those until none is left.
    let mut left: Vec<String> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    for _ in 0..5 {
        if left.is_empty() {
            break;
        }
        let retry: Vec<(&str, &str)> = records
            .iter()
            .filter(|(id, _)| left.iter().any(|l| l == id))
            .copied()
            .collect();
        left = consumer
            .handle(batch(&retry))
            .await
            .expect("retry")
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
    }
    assert!(left.is_empty(), "every request got an answer");
    assert_eq!(kinds(&client, &table, "user").await.len(), 1);
    assert_eq!(kinds(&client, &table, "status").await.len(), 7);
}
