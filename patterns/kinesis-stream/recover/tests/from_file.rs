//! `kinesis-recover --from-file`: a batch recovered from an object an Amazon S3 on-failure
//! destination wrote (the fixture has the documented shape: the metadata, and `payload`, the
//! original invocation record as an escaped JSON string), against moto with the real SDK.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::path::PathBuf;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use batch_consumer::kinesis::{KinesisData, KinesisEvent, KinesisEventRecord};
use kinesis_stream_consumer::replay::Replayed;
use kinesis_stream_recover::{Recovery, Replay, recover_file};
use serde_json::Value;

const OLD_ORDER_7: &str = "49656612000000000000000000000000000000000000000000000011";
const ORDER_8: &str = "49656612000000000000000000000000000000000000000000000012";
const NEWER_ORDER_7: &str = "49656612000000000000000000000000000000000000000000000020";

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/s3-on-failure-object.json")
}

/// A copy of the fixture, changed by `edit`, in a file of its own.
fn edited(edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture()).expect("fixture")).expect("json");
    edit(&mut value);
    let path = std::env::temp_dir().join(format!("{}.json", testkit::unique("s3-failure")));
    std::fs::write(&path, value.to_string()).expect("write");
    path
}

async fn recovery(replay: Replay, table: Option<&str>) -> Recovery {
    let sdk = testkit::sdk_config().await;
    let consumer = table.map(|table| {
        let config = kinesis_stream_consumer::Config::from_lookup(|k| {
            (k == "TABLE_NAME").then(|| table.to_owned())
        })
        .expect("config");
        kinesis_stream_consumer::Consumer::from_config(&config, aws_sdk_dynamodb::Client::new(&sdk))
    });
    Recovery {
        kinesis: aws_sdk_kinesis::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        s3: aws_sdk_s3::Client::new(&sdk),
        consumer,
        replay,
    }
}

async fn stored(client: &aws_sdk_dynamodb::Client, table: &str, key: &str) -> (String, Value) {
    let item = client
        .get_item()
        .table_name(table)
        .key("eventId", AttributeValue::S(key.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get")
        .item
        .unwrap_or_else(|| panic!("no item {key}"));
    (
        item["sequenceNumber"].as_s().cloned().unwrap_or_default(),
        dynamo_payload(&item["payload"]),
    )
}

fn dynamo_payload(value: &AttributeValue) -> Value {
    let AttributeValue::M(map) = value else {
        panic!("payload map")
    };
    map.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::String(v.as_s().cloned().unwrap_or_default()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test]
async fn a_batch_is_recovered_from_an_s3_failure_object_without_the_stream() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = testkit::create_table(&client, "recover-file", "eventId").await;
    let recovery = recovery(Replay::Consumer, Some(&table)).await;
    // order-7 moved on while its old record waited in the bucket.
    let newer = KinesisEventRecord {
        event_id: Some(format!("shardId-000000000000:{NEWER_ORDER_7}")),
        event_source_arn: None,
        kinesis: KinesisData {
            partition_key: "order-7".into(),
            sequence_number: NEWER_ORDER_7.into(),
            data: base64::engine::general_purpose::STANDARD.encode(r#"{"status":"shipped"}"#),
            approximate_arrival_timestamp: None,
        },
    };
    recovery
        .consumer
        .as_ref()
        .expect("consumer")
        .handle(KinesisEvent {
            records: vec![newer],
        })
        .await
        .expect("stored");

    // The fixture's stream does not exist here: the records come from the file alone.
    let report = recover_file(&recovery, &fixture())
        .await
        .expect("recovered");
    assert_eq!(
        (
            report.expected,
            report.recovered,
            report.expired,
            report.complete
        ),
        (2, 2, 0, true),
        "{report:?}"
    );
    assert_eq!(
        stored(&client, &table, "order-7").await,
        (
            NEWER_ORDER_7.into(),
            serde_json::json!({"status": "shipped"})
        ),
        "the older recovered record did not overwrite the newer one"
    );
    assert_eq!(
        stored(&client, &table, "order-8").await,
        (ORDER_8.into(), serde_json::json!({"status": "paid"})),
        "stored under its original sequence number"
    );
}

#[tokio::test]
async fn an_s3_failure_object_replayed_onto_the_stream_keeps_its_original_sequence_numbers() {
    let sdk = testkit::sdk_config().await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk);
    let stream = testkit::unique("recover-file");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .expect("create stream");
    let arn = format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}");
    let path = edited(|v| v["KinesisBatchInfo"]["streamArn"] = Value::String(arn));

    let report = recover_file(&recovery(Replay::Stream, None).await, &path)
        .await
        .expect("recovered");
    assert!(report.complete, "{report:?}");

    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator")
        .shard_iterator
        .expect("iterator");
    let out = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("records");
    let originals: Vec<(String, String)> = out
        .records()
        .iter()
        .map(|r| {
            let envelope = Replayed::from_bytes(r.data().as_ref())
                .expect("an envelope")
                .expect("valid");
            (
                r.partition_key().unwrap_or_default().to_owned(),
                envelope.sequence_number,
            )
        })
        .collect();
    assert_eq!(
        originals,
        [
            ("order-7".to_owned(), OLD_ORDER_7.to_owned()),
            ("order-8".to_owned(), ORDER_8.to_owned())
        ]
    );
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn an_object_without_records_falls_back_to_the_stream_and_reports_what_is_gone() {
    let sdk = testkit::sdk_config().await;
    let stream = testkit::unique("recover-file");
    aws_sdk_kinesis::Client::new(&sdk)
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .expect("create stream");
    let arn = format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}");
    let path = edited(|v| {
        v["KinesisBatchInfo"]["streamArn"] = Value::String(arn);
        v.as_object_mut().expect("object").remove("payload");
    });
    let report = recover_file(&recovery(Replay::DryRun, None).await, &path)
        .await
        .expect("reported");
    assert_eq!(
        (report.recovered, report.expired, report.complete),
        (0, 2, false),
        "{report:?}"
    );
    let _ = std::fs::remove_file(path);
}
