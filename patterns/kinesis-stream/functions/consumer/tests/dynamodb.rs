//! The kinesis-stream consumer against a real DynamoDB API (moto), with the real SDK client:
//! the sequence guard is a DynamoDB condition expression, so it is checked on the wire here.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use aws_lambda_events::streams::KinesisEventResponse;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use batch_consumer::kinesis::{KinesisData, KinesisEvent, KinesisEventRecord};
use kinesis_stream_consumer::{Config, Consumer, KEY_ATTRIBUTE};

fn record(key: &str, sequence: &str, payload: &str) -> KinesisEventRecord {
    KinesisEventRecord {
        event_id: Some(format!("shardId-000000000000:{sequence}")),
        event_source_arn: Some("arn:aws:kinesis:us-east-1:123456789012:stream/test".into()),
        kinesis: KinesisData {
            partition_key: key.into(),
            sequence_number: sequence.into(),
            data: base64::engine::general_purpose::STANDARD.encode(payload),
            approximate_arrival_timestamp: None,
        },
    }
}

async fn setup() -> (aws_sdk_dynamodb::Client, String, Consumer) {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = testkit::create_table(&client, "kinesis-events", KEY_ATTRIBUTE).await;
    let config =
        Config::from_lookup(|k| (k == "TABLE_NAME").then(|| table.clone())).expect("config");
    let consumer = Consumer::from_config(&config, client.clone());
    (client, table, consumer)
}

async fn stored(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
) -> Option<(String, String)> {
    let out = client
        .get_item()
        .table_name(table)
        .key(KEY_ATTRIBUTE, AttributeValue::S(key.into()))
        .send()
        .await
        .expect("get item");
    let item = out.item()?;
    let payload = item["payload"].as_m().expect("payload map")["v"]
        .as_s()
        .cloned()
        .unwrap_or_default();
    Some((
        item["sequenceNumber"].as_s().cloned().unwrap_or_default(),
        payload,
    ))
}

fn no_failures(response: &KinesisEventResponse) -> bool {
    response.batch_item_failures.is_empty()
}

#[tokio::test]
async fn newer_sequence_numbers_win_compared_as_numbers_in_dynamodb() {
    let (client, table, consumer) = setup().await;
    // "10" sorts before "9" as text: the guard must compare numbers.
    let batch = KinesisEvent {
        records: vec![
            record("k", "9", r#"{"v":"nine"}"#),
            record("k", "10", r#"{"v":"ten"}"#),
        ],
    };
    assert!(no_failures(
        &consumer.handle(batch).await.expect("answered")
    ));
    assert_eq!(
        stored(&client, &table, "k").await,
        Some(("10".into(), "ten".into()))
    );

    let older = KinesisEvent {
        records: vec![record("k", "9", r#"{"v":"nine again"}"#)],
    };
    assert!(no_failures(
        &consumer.handle(older).await.expect("answered")
    ));
    assert_eq!(
        stored(&client, &table, "k").await,
        Some(("10".into(), "ten".into())),
        "an older record never overwrites a newer one"
    );
}

#[tokio::test]
async fn a_retried_batch_changes_nothing() {
    let (client, table, consumer) = setup().await;
    let batch = KinesisEvent {
        records: vec![
            record("a", "100", r#"{"v":"a1"}"#),
            record("b", "101", r#"{"v":"b1"}"#),
        ],
    };
    assert!(no_failures(
        &consumer.handle(batch.clone()).await.expect("first")
    ));
    let before = client
        .scan()
        .table_name(&table)
        .send()
        .await
        .expect("scan")
        .items()
        .to_vec();
    assert!(no_failures(&consumer.handle(batch).await.expect("retry")));
    let after = client
        .scan()
        .table_name(&table)
        .send()
        .await
        .expect("scan")
        .items()
        .to_vec();
    assert_eq!(before.len(), 2);
    assert_eq!(
        before, after,
        "a retry re-applies nothing (not even storedAt changes)"
    );
}

#[tokio::test]
async fn a_failed_write_is_reported_by_its_sequence_number() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let missing = testkit::unique("no-such-table");
    let config =
        Config::from_lookup(|k| (k == "TABLE_NAME").then(|| missing.clone())).expect("config");
    let consumer = Consumer::from_config(&config, client);
    let batch = KinesisEvent {
        records: vec![
            record("a", "7", r#"{"v":"x"}"#),
            record("b", "5", r#"{"v":"y"}"#),
        ],
    };
    let response = consumer.handle(batch).await.expect("answered");
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        ["5"],
        "the lowest failed sequence number, never an empty identifier"
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_within_the_invocation() {
    use testkit::faults::{Fault, FaultProxy};
    let proxy = FaultProxy::start(&testkit::moto_endpoint())
        .await
        .expect("proxy");
    let direct = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = testkit::create_table(&direct, "kinesis-events", KEY_ATTRIBUTE).await;
    let config =
        Config::from_lookup(|k| (k == "TABLE_NAME").then(|| table.clone())).expect("config");
    let proxied = aws_sdk_dynamodb::Client::new(&proxy.sdk_config().await);
    let consumer = Consumer::from_config(&config, proxied);
    proxy.inject("PutItem", Fault::InternalServerError, 3);
    proxy.inject("PutItem", Fault::ProvisionedThroughputExceeded, 2);
    let batch = KinesisEvent {
        records: vec![
            record("a", "1", r#"{"v":"a1"}"#),
            record("b", "2", r#"{"v":"b2"}"#),
            record("a", "3", r#"{"v":"a3"}"#),
        ],
    };
    assert!(no_failures(
        &consumer.handle(batch).await.expect("answered")
    ));
    assert_eq!(proxy.injected("PutItem"), 5);
    assert_eq!(
        stored(&direct, &table, "a").await,
        Some(("3".into(), "a3".into()))
    );
    assert_eq!(
        stored(&direct, &table, "b").await,
        Some(("2".into(), "b2".into()))
    );
}

#[tokio::test]
async fn a_record_replayed_onto_the_stream_never_overwrites_newer_data_in_dynamodb() {
    use kinesis_stream_consumer::replay::Replayed;
    let (client, table, consumer) = setup().await;
    // k:20 is stored; k:15 had failed and comes back through the stream as k:30.
    assert!(no_failures(
        &consumer
            .handle(KinesisEvent {
                records: vec![record("k", "20", r#"{"v":"newer"}"#)],
            })
            .await
            .expect("answered")
    ));
    let replay = |original: &str, own: &str, payload: &str| {
        let mut r = record("k", own, "");
        r.kinesis.data = base64::engine::general_purpose::STANDARD.encode(
            Replayed::new(
                original,
                Some("shardId-000000000000"),
                None,
                payload.as_bytes(),
            )
            .to_bytes(),
        );
        r
    };
    assert!(no_failures(
        &consumer
            .handle(KinesisEvent {
                records: vec![replay("15", "30", r#"{"v":"older"}"#)],
            })
            .await
            .expect("answered")
    ));
    assert_eq!(
        stored(&client, &table, "k").await,
        Some(("20".into(), "newer".into())),
        "the replayed older record lost to the newer one"
    );
    // A replay of a record newer than the stored one is applied, under its original number.
    assert!(no_failures(
        &consumer
            .handle(KinesisEvent {
                records: vec![replay("25", "31", r#"{"v":"recovered"}"#)],
            })
            .await
            .expect("answered")
    ));
    assert_eq!(
        stored(&client, &table, "k").await,
        Some(("25".into(), "recovered".into()))
    );
}

#[tokio::test]
async fn a_record_nested_deeper_than_dynamodb_stores_is_reported_and_holds_back_its_key() {
    let (client, table, consumer) = setup().await;
    let levels = dynamo_writer::MAX_NESTING_LEVELS;
    // `objects` JSON objects nested in one another, the payload itself the outermost: stored as
    // `payload`, a top-level attribute, that one is level 1.
    let nested = |objects: usize| {
        format!(
            r#"{}"leaf"{}"#,
            r#"{"v":"#.repeat(objects),
            "}".repeat(objects)
        )
    };
    let batch = KinesisEvent {
        records: vec![
            record("deepest", "1", &nested(levels - 1)),
            record("too-deep", "2", &nested(levels)),
            record("too-deep", "3", r#"{"v":"later"}"#),
            record("fine", "4", r#"{"v":"fine"}"#),
        ],
    };
    // Reported like bad data: Lambda retries from it, bisects, then sends it to the on-failure
    // destination (where a record that is not JSON also ends), as for AWS's ValidationException.
    let response = consumer.handle(batch).await.expect("answered");
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, ["2"]);
    assert_eq!(
        stored(&client, &table, "too-deep").await,
        None,
        "neither the refused record nor the later one of its key is applied"
    );
    assert_eq!(
        stored(&client, &table, "fine").await,
        Some(("4".into(), "fine".into()))
    );
    let deepest = client
        .get_item()
        .table_name(&table)
        .key(KEY_ATTRIBUTE, AttributeValue::S("deepest".into()))
        .send()
        .await
        .expect("get item");
    let mut value = &deepest.item().expect("the deepest document is stored")["payload"];
    for _ in 0..levels - 1 {
        value = &value.as_m().expect("a map")["v"];
    }
    assert_eq!(value, &AttributeValue::S("leaf".into()));
}

#[tokio::test]
async fn a_record_the_api_put_is_stored_with_its_api_request_id_and_its_body_as_payload() {
    use kinesis_stream_consumer::api_envelope::ApiGatewayRequest;
    use kinesis_stream_consumer::replay::Replayed;
    let (client, table, consumer) = setup().await;
    let from_api = |key: &str, sequence: &str, id: &str, body: &str| {
        let mut r = record(key, sequence, "");
        r.kinesis.data = base64::engine::general_purpose::STANDARD
            .encode(ApiGatewayRequest::new(id, body.as_bytes()).to_bytes());
        r
    };
    // The same API record replayed onto the stream by `kinesis-recover --replay stream`.
    let mut replayed = record("replayed", "40", "");
    replayed.kinesis.data = base64::engine::general_purpose::STANDARD.encode(
        Replayed::new(
            "35",
            Some("shardId-000000000000"),
            None,
            &ApiGatewayRequest::new("req-replayed", br#"{"v":"recovered"}"#.as_slice()).to_bytes(),
        )
        .to_bytes(),
    );
    let batch = KinesisEvent {
        records: vec![
            from_api(
                "api",
                "10",
                "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                r#"{"v":"from the api"}"#,
            ),
            record("other-producer", "11", r#"{"v":"no envelope"}"#),
            from_api("poison", "12", "req-poison", "not JSON"),
            replayed,
        ],
    };
    let response = consumer.handle(batch).await.expect("answered");
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failed,
        ["12"],
        "a body that is not JSON is a poison record, as today"
    );
    let item = |key: &str| {
        let client = client.clone();
        let table = table.clone();
        let key = key.to_owned();
        async move {
            client
                .get_item()
                .table_name(&table)
                .key(KEY_ATTRIBUTE, AttributeValue::S(key))
                .send()
                .await
                .expect("get item")
                .item
        }
    };
    let api = item("api").await.expect("stored");
    assert_eq!(
        api["apiRequestId"],
        AttributeValue::S("c6af9ac6-7b61-11e6-9a41-93e8deadbeef".into())
    );
    assert_eq!(
        stored(&client, &table, "api").await,
        Some(("10".into(), "from the api".into()))
    );
    let other = item("other-producer").await.expect("stored");
    assert!(!other.contains_key("apiRequestId"), "{other:?}");
    assert_eq!(
        stored(&client, &table, "other-producer").await,
        Some(("11".into(), "no envelope".into()))
    );
    assert_eq!(item("poison").await, None);
    let recovered = item("replayed").await.expect("stored");
    assert_eq!(
        recovered["apiRequestId"],
        AttributeValue::S("req-replayed".into())
    );
    assert_eq!(
        stored(&client, &table, "replayed").await,
        Some(("35".into(), "recovered".into()))
    );
}
