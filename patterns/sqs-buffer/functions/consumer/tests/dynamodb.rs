//! The consumer against a real DynamoDB API (moto), with the real SDK client.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::collections::HashMap;

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use sqs_buffer_consumer::{Config, Consumer};

async fn table(client: &aws_sdk_dynamodb::Client) -> String {
    testkit::create_table(client, "events", sqs_buffer_consumer::KEY_ATTRIBUTE).await
}

fn consumer(client: &aws_sdk_dynamodb::Client, table: &str) -> Consumer {
    let config =
        Config::from_lookup(|k| (k == "TABLE_NAME").then(|| table.to_owned())).expect("config");
    Consumer::from_config(&config, client.clone())
}

fn event(records: &[(&str, &str)]) -> SqsEvent {
    let records: Vec<_> = records
        .iter()
        .map(|(id, body)| serde_json::json!({"messageId": id, "body": body, "attributes": {"ApproximateReceiveCount": "1"}}))
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("valid event")
}

async fn items(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> HashMap<String, HashMap<String, AttributeValue>> {
    let out = client.scan().table_name(table).send().await.expect("scan");
    out.items()
        .iter()
        .map(|item| {
            let AttributeValue::S(key) = &item["eventId"] else {
                panic!("key must be a string")
            };
            (key.clone(), item.clone())
        })
        .collect()
}

#[tokio::test]
async fn consumer_stores_each_event_with_its_payload_and_metadata() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = table(&client).await;
    let response = consumer(&client, &table)
        .handle(event(&[
            ("m1", r#"{"eventId":"e1","message":"hi"}"#),
            ("m2", r#"{"n":2}"#),
        ]))
        .await
        .expect("answered");
    assert!(response.batch_item_failures.is_empty());

    let stored = items(&client, &table).await;
    assert_eq!(stored.len(), 2);
    let e1 = &stored["e1"];
    assert_eq!(e1["messageId"], AttributeValue::S("m1".into()));
    let AttributeValue::M(payload) = &e1["payload"] else {
        panic!("payload must be a map")
    };
    assert_eq!(payload["message"], AttributeValue::S("hi".into()));
    assert!(
        stored.contains_key("m2"),
        "an event without eventId is keyed on its message id"
    );
}

#[tokio::test]
async fn redelivered_event_is_neither_duplicated_nor_overwritten_in_dynamodb() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = table(&client).await;
    let consumer = consumer(&client, &table);
    consumer
        .handle(event(&[("m1", r#"{"eventId":"e","v":1}"#)]))
        .await
        .expect("first");
    let again = consumer
        .handle(event(&[("m2", r#"{"eventId":"e","v":2}"#)]))
        .await
        .expect("again");
    assert!(
        again.batch_item_failures.is_empty(),
        "a duplicate is a success, not a retry"
    );

    let stored = items(&client, &table).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored["e"]["messageId"], AttributeValue::S("m1".into()));
}

#[tokio::test]
async fn failed_write_is_reported_for_retry_not_lost() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let missing_table = testkit::unique("no-such-table");
    let response = consumer(&client, &missing_table)
        .handle(event(&[("m1", r#"{"eventId":"e"}"#), ("m2", "not json")]))
        .await
        .expect("answered");
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m1", "m2"]);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_within_the_invocation() {
    let proxy = testkit::faults::FaultProxy::start(&testkit::moto_endpoint())
        .await
        .expect("proxy");
    let direct = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = table(&direct).await;
    let proxied = aws_sdk_dynamodb::Client::new(&proxy.sdk_config().await);
    use testkit::faults::Fault;
    proxy.inject("PutItem", Fault::ProvisionedThroughputExceeded, 2);
    proxy.inject("PutItem", Fault::InternalServerError, 2);
    proxy.inject("PutItem", Fault::Throttling, 2);
    let answer = consumer(&proxied, &table)
        .handle(event(&[
            ("m1", r#"{"eventId":"e1","message":"one"}"#),
            ("m2", r#"{"eventId":"e2","message":"two"}"#),
        ]))
        .await
        .expect("answered");
    assert!(
        answer.batch_item_failures.is_empty(),
        "{:?}",
        answer.batch_item_failures
    );
    assert_eq!(proxy.injected("PutItem"), 6);
    let stored = items(&direct, &table).await;
    assert!(stored.contains_key("e1") && stored.contains_key("e2"));
}
