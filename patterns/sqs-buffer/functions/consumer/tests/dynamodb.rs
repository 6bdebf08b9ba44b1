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
        .handle(event(&[("m2", r#"{"v":1,"eventId":"e"}"#)]))
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
async fn a_conflicting_duplicate_is_kept_as_a_conflict_item_and_the_original_is_untouched_in_dynamodb()
 {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = table(&client).await;
    let consumer = consumer(&client, &table);
    consumer
        .handle(event(&[("m1", r#"{"eventId":"e","v":1}"#)]))
        .await
        .expect("first");
    let before = items(&client, &table).await["e"].clone();
    for message in ["m2", "m2"] {
        // The conflicting event, then its redelivery.
        let answer = consumer
            .handle(event(&[(message, r#"{"eventId":"e","v":2}"#)]))
            .await
            .expect("conflict");
        assert!(
            answer.batch_item_failures.is_empty(),
            "a conflict is recorded, not retried into the DLQ"
        );
    }

    let stored = items(&client, &table).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored["e"], before, "the original is left as it was");
    let hash = sqs_buffer_consumer::payload_hash(&serde_json::json!({"eventId": "e", "v": 2}));
    let conflict = &stored[&sqs_buffer_consumer::conflict_key("e", &hash)];
    assert_eq!(conflict["kind"], AttributeValue::S("conflict".into()));
    assert_eq!(conflict["conflictOf"], AttributeValue::S("e".into()));
    assert_eq!(conflict["messageId"], AttributeValue::S("m2".into()));
    assert_eq!(
        conflict["originalMessageId"],
        AttributeValue::S("m1".into())
    );
    let AttributeValue::M(payload) = &conflict["payload"] else {
        panic!("payload must be a map")
    };
    assert_eq!(payload["v"], AttributeValue::N("2".into()));
}

#[tokio::test]
async fn an_event_stored_without_a_hash_is_compared_by_its_payload_in_dynamodb() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = table(&client).await;
    // An item as the consumer wrote it before payload hashes existed.
    let mut legacy = sqs_buffer_consumer::build_item(
        &event(&[("m0", r#"{"eventId":"old","v":1}"#)]).records[0],
        1,
    )
    .expect("item");
    legacy.remove(sqs_buffer_consumer::HASH_ATTRIBUTE);
    legacy.remove("kind");
    client
        .put_item()
        .table_name(&table)
        .set_item(Some(legacy))
        .send()
        .await
        .expect("legacy item");
    let consumer = consumer(&client, &table);
    consumer
        .handle(event(&[("m1", r#"{"eventId":"old","v":1}"#)]))
        .await
        .expect("duplicate");
    assert_eq!(items(&client, &table).await.len(), 1, "a true duplicate");
    consumer
        .handle(event(&[("m2", r#"{"eventId":"old","v":2}"#)]))
        .await
        .expect("conflict");
    assert_eq!(items(&client, &table).await.len(), 2, "a conflict");
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

/// A body of `objects` JSON objects nested in one another, the body itself the outermost: stored
/// as `payload`, a top-level attribute, that one is level 1 and the innermost is level `objects`.
fn nested_body(event_id: &str, objects: usize) -> String {
    let inner = objects - 1;
    format!(
        r#"{{"eventId":"{event_id}","n":{}1{}}}"#,
        r#"{"n":"#.repeat(inner),
        "}".repeat(inner)
    )
}

#[tokio::test]
async fn a_body_nested_deeper_than_dynamodb_stores_is_refused_as_dynamodb_refuses_an_item() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = table(&client).await;
    let consumer = consumer(&client, &table);
    let levels = dynamo_writer::MAX_NESTING_LEVELS;
    // moto stores an item of any depth (AWS refuses the 32-map one), but does refuse one over
    // 400 KB with AWS's own ValidationException: the two must end alike.
    let deepest = nested_body("deepest", levels - 1);
    let too_deep = nested_body("too-deep", levels);
    let too_large = format!(
        r#"{{"eventId":"too-large","pad":"{}"}}"#,
        "x".repeat(420_000)
    );
    let batch = event(&[
        ("m-deepest", deepest.as_str()),
        ("m-too-deep", too_deep.as_str()),
        ("m-too-large", too_large.as_str()),
        ("m-fine", r#"{"eventId":"fine"}"#),
    ]);
    // Every receive fails alike (here: the first and a redelivery), so SQS moves the message to
    // the dead-letter queue after MaxReceiveCount receives, where a non-JSON body also ends.
    for receive in ["first", "redelivery"] {
        let response = consumer.handle(batch.clone()).await.expect("answered");
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["m-too-deep", "m-too-large"], "{receive}");
    }

    let stored = items(&client, &table).await;
    let mut keys: Vec<_> = stored.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["deepest", "fine"], "nothing refused is stored");
    // The deepest document DynamoDB stores is stored whole: 31 maps, the last holding 1.
    let mut value = &stored["deepest"]["payload"];
    for _ in 0..levels - 1 {
        value = &value.as_m().expect("a map")["n"];
    }
    assert_eq!(value, &AttributeValue::N("1".into()));
}

#[tokio::test]
async fn the_api_request_id_attribute_of_a_message_is_stored_with_its_event_and_its_conflict() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = table(&client).await;
    let consumer = consumer(&client, &table);
    let from_api = |id: &str, api_request_id: &str, body: &str| -> SqsEvent {
        serde_json::from_value(serde_json::json!({"Records": [{
            "messageId": id, "body": body,
            "messageAttributes": {"apiRequestId": {"stringValue": api_request_id,
                "dataType": "String", "stringListValues": [], "binaryListValues": []}}
        }]}))
        .expect("valid event")
    };
    for batch in [
        from_api("m1", "JNlxtgE9IAMEPsQ=", r#"{"eventId":"e","v":1}"#),
        from_api("m2", "JNlxuFrMIAMEd2g=", r#"{"eventId":"e","v":2}"#),
        event(&[("m3", r#"{"eventId":"from-another-producer"}"#)]),
    ] {
        let answer = consumer.handle(batch).await.expect("answered");
        assert!(answer.batch_item_failures.is_empty());
    }
    let stored = items(&client, &table).await;
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert_eq!(
        stored["e"]["apiRequestId"],
        AttributeValue::S("JNlxtgE9IAMEPsQ=".into())
    );
    let conflict = stored
        .values()
        .find(|i| i["kind"] == AttributeValue::S("conflict".into()))
        .expect("a conflict item");
    assert_eq!(
        conflict["apiRequestId"],
        AttributeValue::S("JNlxuFrMIAMEd2g=".into())
    );
    assert!(!stored["from-another-producer"].contains_key("apiRequestId"));
}
