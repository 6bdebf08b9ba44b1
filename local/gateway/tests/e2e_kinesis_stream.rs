//! kinesis-stream end to end: real HTTP through the local gateway, the Kinesis event source
//! emulation, the real consumer in-process, moto behind them. Each test runs its own stack.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::LocalStack;
use serde_json::{Value, json};

const P: &str = "KinesisStream";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(common::SETTLE)
        .build()
        .expect("http client")
}

fn stream(stack: &LocalStack) -> String {
    stack.pattern(P)["streams"]["EventStream"]
        .as_str()
        .expect("stream")
        .to_owned()
}

fn url(stack: &LocalStack, stream: &str, event_id: &str) -> String {
    format!(
        "{}/submit/{stream}/{event_id}",
        stack.pattern(P)["baseUrl"].as_str().expect("base URL")
    )
}

/// Posts `body` for `event_id` with the stack's credentials; returns status and answer.
async fn put(stack: &LocalStack, event_id: &str, body: &str) -> (u16, Value) {
    let (user, password) = stack.credentials(P);
    let response = http()
        .post(url(stack, &stream(stack), event_id))
        .basic_auth(user, Some(password))
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn item(stack: &LocalStack, key: &str) -> Option<HashMap<String, AttributeValue>> {
    aws_sdk_dynamodb::Client::new(&stack.sdk)
        .get_item()
        .table_name(stack.table(P, "EventsTable"))
        .key("eventId", AttributeValue::S(key.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get item")
        .item
}

fn s(item: &HashMap<String, AttributeValue>, key: &str) -> String {
    item[key].as_s().cloned().unwrap_or_default()
}

fn s3(stack: &LocalStack) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&stack.sdk)
            .force_path_style(true)
            .build(),
    )
}

fn failure_bucket(stack: &LocalStack) -> String {
    stack.pattern(P)["buckets"]["FailureBucket"]
        .as_str()
        .expect("bucket")
        .to_owned()
}

/// The failed batches the on-failure bucket holds (Lambda's `aws/lambda/` objects).
async fn failure_messages(stack: &LocalStack) -> Vec<Value> {
    let s3 = s3(stack);
    let bucket = failure_bucket(stack);
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("aws/lambda/")
        .send()
        .await
        .expect("list");
    let mut batches = Vec::new();
    for object in listed.contents() {
        let got = s3
            .get_object()
            .bucket(&bucket)
            .key(object.key().expect("key"))
            .send()
            .await
            .expect("get");
        let bytes = got.body.collect().await.expect("body").into_bytes();
        batches.push(serde_json::from_slice(&bytes).expect("JSON"));
    }
    batches
}

/// Runs the `kinesis-recover` tool as `make recover` does (its own binary, built by `cargo test
/// --workspace` and `make gateway`), against the test run's moto; its success and its report.
fn recover_tool(args: &[&str]) -> (bool, String) {
    let bin_dir = std::env::current_exe()
        .expect("test binary")
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf();
    let tool = bin_dir.join("kinesis-recover");
    assert!(
        tool.exists(),
        "{} is not built: `cargo test --workspace` or `make gateway` builds it",
        tool.display()
    );
    let output = std::process::Command::new(tool)
        .args(args)
        .env("AWS_ENDPOINT_URL", testkit::moto_endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run kinesis-recover");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// The `N of M <word>` counts of each report line, with whether its failure record was deleted.
fn report_lines(report: &str, word: &str) -> Vec<(u64, u64, bool)> {
    report
        .lines()
        .filter_map(|line| {
            let (counts, _) = line.split_once(&format!(" {word}"))?;
            let mut numbers = counts.rsplit(": ").next()?.split(" of ");
            let done = numbers.next()?.trim().parse().ok()?;
            let expected = numbers.next()?.trim().parse().ok()?;
            Some((done, expected, line.ends_with("deleted")))
        })
        .collect()
}

#[tokio::test]
async fn records_of_one_key_apply_in_order_and_the_newest_wins() {
    let stack = LocalStack::start(P, "").await;
    let mut last = String::new();
    for n in 0..5 {
        let (status, answer) = put(&stack, "order-1", &json!({"step": n}).to_string()).await;
        assert_eq!(status, 200, "{answer}");
        last = answer["SequenceNumber"]
            .as_str()
            .expect("sequence number")
            .to_owned();
    }
    let stored = testkit::eventually("the newest record applied", common::SETTLE, || async {
        item(&stack, "order-1")
            .await
            .filter(|i| s(i, "sequenceNumber") == last)
    })
    .await;
    assert_eq!(
        stored["payload"].as_m().expect("map")["step"],
        AttributeValue::N("4".into())
    );
}

#[tokio::test]
async fn wrong_stream_and_bad_credentials_are_refused_with_nothing_written() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    let wrong_stream = http()
        .post(url(&stack, "someone-elses-stream", "e1"))
        .basic_auth(&user, Some(&password))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_stream.status().as_u16(), 404);
    let wrong_password = http()
        .post(url(&stack, &stream(&stack), "e2"))
        .basic_auth(&user, Some("nope"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_password.status().as_u16(), 403);
    let anonymous = http()
        .post(url(&stack, &stream(&stack), "e3"))
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);

    let kinesis = aws_sdk_kinesis::Client::new(&stack.sdk);
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream(&stack))
        .shard_id("shardId-000000000000")
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator")
        .shard_iterator
        .expect("iterator");
    let records = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .expect("records");
    assert!(records.records().is_empty(), "nothing reached the stream");
    let items = stack.items(&stack.table(P, "EventsTable")).await;
    assert!(items.is_empty());
}

#[tokio::test]
async fn a_poison_record_is_bisected_retried_then_sent_to_the_on_failure_queue_while_neighbours_are_stored()
 {
    let stack = LocalStack::start(P, "KinesisStream.MaximumRetryAttempts=2").await;
    let (status, _) = put(&stack, "good-a", r#"{"v":"a"}"#).await;
    assert_eq!(status, 200);
    let (status, poison) = put(&stack, "bad", "this is not JSON").await;
    assert_eq!(
        status, 200,
        "the API accepts any body; the consumer judges it"
    );
    let poison_seq = poison["SequenceNumber"].as_str().expect("seq").to_owned();
    put(&stack, "good-b", r#"{"v":"b"}"#).await;
    put(&stack, "bad", r#"{"v":"fixed later"}"#).await;

    let failures = testkit::eventually("the on-failure record", common::SETTLE, || async {
        Some(failure_messages(&stack).await).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let info = &failures[0]["KinesisBatchInfo"];
    assert_eq!(
        info["startSequenceNumber"],
        poison_seq.as_str(),
        "bisection isolated the poison record"
    );
    assert_eq!(info["endSequenceNumber"], poison_seq.as_str());
    assert_eq!(info["batchSize"], 1);
    assert_eq!(
        failures[0]["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    // The bucket keeps the record itself, not only where it was.
    let payload: Value =
        serde_json::from_str(failures[0]["payload"].as_str().expect("payload")).expect("event");
    assert_eq!(
        payload["Records"][0]["kinesis"]["sequenceNumber"],
        poison_seq.as_str()
    );
    assert_eq!(payload["Records"][0]["kinesis"]["partitionKey"], "bad");
    let invokes = failures[0]["requestContext"]["approximateInvokeCount"]
        .as_u64()
        .expect("count");
    assert!(
        invokes >= 3,
        "one try and two retries at least, got {invokes}"
    );

    for key in ["good-a", "good-b"] {
        testkit::eventually(key, common::SETTLE, || async { item(&stack, key).await }).await;
    }
    // After the poison record was discarded, its key moved on.
    let later = testkit::eventually(
        "the later record of the poisoned key",
        common::SETTLE,
        || async { item(&stack, "bad").await },
    )
    .await;
    assert_eq!(
        later["payload"].as_m().expect("map")["v"],
        AttributeValue::S("fixed later".into())
    );
    // The record written to FailureBucket is counted by the mapping's
    // OnFailureDestinationDeliveredEventCount, whose alarm fires; nothing follows it, so its
    // next periods hold no data, treated as not breaching: back to OK.
    common::alarms::wait_for_state(
        &stack,
        P,
        "FailureBucketRecordsAlarm",
        "ALARM",
        common::SETTLE,
    )
    .await;
    common::alarms::wait_for_state(&stack, P, "FailureBucketRecordsAlarm", "OK", common::SETTLE)
        .await;
}

#[tokio::test]
async fn five_hundred_concurrent_posts_over_twenty_keys_give_exactly_the_expected_items() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    let client = http();
    let stream = stream(&stack);
    // A first request fills the authorizer's cache, as a client's first call does, so the burst
    // tests the stream and the consumer, not how many authorizer environments start at once
    // (locally at most 32 per function, README "How the local stack works"; AWS scales on).
    // Another stream name: authorized, then refused with 404, nothing written.
    let warm = client
        .post(url(&stack, "warm-up-not-the-stream", "key-0"))
        .basic_auth(&user, Some(&password))
        .body("{}")
        .send()
        .await
        .expect("warm-up");
    assert_eq!(warm.status().as_u16(), 404);
    let posts = (0..500).map(|n| {
        let request = client
            .post(url(&stack, &stream, &format!("key-{}", n % 20)))
            .basic_auth(&user, Some(&password))
            .body(json!({"n": n}).to_string());
        tokio::spawn(async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status().as_u16(), 200);
            let answer: Value = response.json().await.expect("JSON");
            (
                n,
                answer["SequenceNumber"].as_str().expect("seq").to_owned(),
            )
        })
    });
    let accepted: Vec<(usize, String)> = futures::future::join_all(posts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    assert_eq!(accepted.len(), 500);

    // For every key, the record with the highest sequence number must be the one stored.
    let mut newest: HashMap<String, (u128, usize, String)> = HashMap::new();
    for (n, seq) in &accepted {
        let key = format!("key-{}", n % 20);
        let value: u128 = seq.parse().expect("numeric sequence");
        if newest.get(&key).is_none_or(|(v, _, _)| value > *v) {
            newest.insert(key, (value, *n, seq.clone()));
        }
    }
    let table = stack.table(P, "EventsTable");
    testkit::eventually(
        "20 items at their newest record",
        common::SETTLE,
        || async {
            let items = stack.items(&table).await;
            let done = items.len() == 20
                && items.iter().all(|i| {
                    newest
                        .get(&s(i, "eventId"))
                        .is_some_and(|(_, _, seq)| *seq == s(i, "sequenceNumber"))
                });
            done.then_some(())
        },
    )
    .await;
    for item in stack.items(&table).await {
        let (_, n, _) = &newest[&s(&item, "eventId")];
        assert_eq!(
            item["payload"].as_m().expect("map")["n"],
            AttributeValue::N(n.to_string())
        );
    }
    assert!(failure_messages(&stack).await.is_empty(), "nothing failed");
}

#[tokio::test]
async fn a_batch_that_failed_while_the_table_was_down_is_recovered_from_the_bucket_after_the_stream_lost_it()
 {
    let stack = LocalStack::start(P, "KinesisStream.MaximumRetryAttempts=1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let table = stack.table(P, "EventsTable");
    // An outage: the table disappears, so every write fails and the batch is given up on.
    dynamodb
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete table");
    let (status, answer) = put(&stack, "during-outage", r#"{"v":"kept"}"#).await;
    assert_eq!(status, 200);
    let seq = answer["SequenceNumber"].as_str().expect("seq").to_owned();
    testkit::eventually("the on-failure record", common::SETTLE, || async {
        Some(failure_messages(&stack).await).filter(|m| !m.is_empty())
    })
    .await;
    // The cause is fixed: the table is back (empty).
    testkit::create_table_named(&dynamodb, &table, "eventId").await;

    // And the stream no longer holds the record (its retention passed, here: it is deleted):
    // the bucket's copy is all there is.
    aws_sdk_kinesis::Client::new(&stack.sdk)
        .delete_stream()
        .stream_name(stream(&stack))
        .send()
        .await
        .expect("delete stream");
    let (ok, report) = recover_tool(&[
        "--bucket",
        &failure_bucket(&stack),
        "--table",
        &table,
        "--replay",
        "consumer",
    ]);
    assert!(ok, "{report}");
    assert_eq!(
        report_lines(&report, "recovered"),
        [(1, 1, true)],
        "{report}"
    );
    assert!(report.contains("0 expired"), "{report}");
    let restored = item(&stack, "during-outage").await.expect("recovered item");
    assert_eq!(
        s(&restored, "sequenceNumber"),
        seq,
        "replayed with its original sequence number"
    );
    assert!(
        failure_messages(&stack).await.is_empty(),
        "the recovered batch's object is gone"
    );
}

#[tokio::test]
async fn recovery_from_a_metadata_queue_reports_records_the_stream_no_longer_holds() {
    let stack = LocalStack::start(P, "").await;
    // A metadata-only destination (an SQS queue, as other templates may use): the records must
    // come back from the stream, and these are no longer there.
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let queue = sqs
        .create_queue()
        .queue_name(testkit::unique("on-failure"))
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let stream_arn = format!(
        "arn:aws:kinesis:us-east-1:123456789012:stream/{}",
        stream(&stack)
    );
    // A failure record for a range the stream does not (or no longer) hold.
    let body = json!({"KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": "900000",
        "endSequenceNumber": "900001", "batchSize": 2, "streamArn": stream_arn}});
    sqs.send_message()
        .queue_url(&queue)
        .message_body(body.to_string())
        .send()
        .await
        .expect("send");
    let (ok, report) = recover_tool(&["--queue", &queue, "--replay", "dry-run"]);
    assert!(ok, "{report}");
    assert_eq!(
        report_lines(&report, "still retained"),
        [(0, 2, false)],
        "{report}"
    );
    assert!(report.contains("2 expired"), "{report}");
}

#[tokio::test]
async fn the_body_reaches_the_consumer_byte_for_byte_through_base64() {
    let stack = LocalStack::start(P, "").await;
    // Quotes, backslashes, a template-looking "$" and characters outside ASCII: the REST mapping
    // template must base64-encode the body as it came ($util.base64Encode), or Kinesis would
    // refuse it or the consumer would read something else.
    let body =
        json!({"text": "quote \" backslash \\ dollar $input ünïcödé 😀", "n": 1}).to_string();
    let (status, answer) = put(&stack, "exact-1", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["SequenceNumber"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let stored = testkit::eventually("the record stored", common::SETTLE, || async {
        item(&stack, "exact-1").await
    })
    .await;
    let AttributeValue::M(payload) = &stored["payload"] else {
        panic!("payload must be a map: {stored:?}")
    };
    assert_eq!(
        payload["text"],
        AttributeValue::S("quote \" backslash \\ dollar $input ünïcödé 😀".into())
    );
}

#[tokio::test]
async fn a_put_whose_stream_call_fails_gets_a_5xx_never_a_200() {
    let stack = LocalStack::start(P, "").await;
    aws_sdk_kinesis::Client::new(&stack.sdk)
        .delete_stream()
        .stream_name(stream(&stack))
        .send()
        .await
        .expect("delete stream");
    let (status, answer) = put(&stack, "lost-1", r#"{"n":1}"#).await;
    assert!(
        status == 500 || status == 503,
        "a failed put must be a 5xx: {status} {answer}"
    );
    assert!(answer.get("SequenceNumber").is_none(), "{answer}");
}

#[tokio::test]
async fn a_failed_record_replayed_through_the_stream_never_overwrites_newer_data_of_its_key() {
    let stack = LocalStack::start(P, "KinesisStream.MaximumRetryAttempts=1").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let table = stack.table(P, "EventsTable");
    // An outage: both records fail and are given up on.
    dynamodb
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete table");
    let (_, old) = put(&stack, "k", r#"{"v":"old"}"#).await;
    let (_, alone) = put(&stack, "k-alone", r#"{"v":"alone"}"#).await;
    let alone_seq = alone["SequenceNumber"].as_str().expect("seq").to_owned();
    testkit::eventually(
        "both records in the on-failure bucket",
        common::SETTLE,
        || async {
            let messages = failure_messages(&stack).await;
            let records: u64 = messages
                .iter()
                .map(|m| m["KinesisBatchInfo"]["batchSize"].as_u64().unwrap_or(0))
                .sum();
            (records >= 2).then_some(())
        },
    )
    .await;
    // The table is back; k gets a newer update before anyone recovers the old one.
    testkit::create_table_named(&dynamodb, &table, "eventId").await;
    let (_, new) = put(&stack, "k", r#"{"v":"new"}"#).await;
    let new_seq = new["SequenceNumber"].as_str().expect("seq").to_owned();
    testkit::eventually("the newer record of k", common::SETTLE, || async {
        item(&stack, "k")
            .await
            .filter(|i| s(i, "sequenceNumber") == new_seq)
    })
    .await;

    let (ok, report) = recover_tool(&["--bucket", &failure_bucket(&stack), "--replay", "stream"]);
    assert!(ok, "{report}");
    let lines = report_lines(&report, "recovered");
    let recovered: u64 = lines.iter().map(|(done, _, _)| done).sum();
    assert_eq!(recovered, 2, "{report}");
    assert!(lines.iter().all(|(_, _, deleted)| *deleted), "{report}");
    // One shard, read in order: once a record put after the replays is stored, the replays
    // have been processed too.
    let (_, sentinel) = put(&stack, "sentinel", r#"{"v":"after the replays"}"#).await;
    let sentinel_seq = sentinel["SequenceNumber"].as_str().expect("seq").to_owned();
    testkit::eventually("the record after the replays", common::SETTLE, || async {
        item(&stack, "sentinel")
            .await
            .filter(|i| s(i, "sequenceNumber") == sentinel_seq)
    })
    .await;

    let k = item(&stack, "k").await.expect("k");
    assert_eq!(
        (
            s(&k, "sequenceNumber"),
            k["payload"].as_m().expect("map")["v"].clone()
        ),
        (new_seq, AttributeValue::S("new".into())),
        "the replayed older record of k (originally {}) must not win",
        old["SequenceNumber"]
    );
    let restored = item(&stack, "k-alone").await.expect("the replayed record");
    assert_eq!(
        s(&restored, "sequenceNumber"),
        alone_seq,
        "stored under its original sequence number"
    );
    assert!(restored.contains_key("replaySequenceNumber"));
    assert!(failure_messages(&stack).await.is_empty());
}

#[tokio::test]
async fn an_outage_raises_the_iterator_age_and_failed_records_alarms_and_recovery_clears_them() {
    // Retries without end, so the consumer keeps falling behind while the table is gone; an
    // iterator-age threshold of two seconds (the template's lowest allowed is one) keeps the
    // test short. Periods are the gateway's default scale (a CloudWatch minute per second).
    let stack = LocalStack::start(
        P,
        "KinesisStream.MaximumRetryAttempts=10000 KinesisStream.IteratorAgeAlarmMilliseconds=2000",
    )
    .await;
    let inbox = common::alarms::subscribe(&stack, P).await;
    for alarm in ["IteratorAgeAlarm", "RecordsFailedAlarm"] {
        common::alarms::wait_for_state(&stack, P, alarm, "OK", common::SETTLE).await;
    }
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let table = stack.table(P, "EventsTable");
    let restore = common::alarms::take_table_away(&stack, &table).await;
    let (status, _) = put(&stack, "behind", r#"{"v":"waits for the table"}"#).await;
    assert_eq!(status, 200);
    // Every retry hands the same, ever older record to the consumer, which fails it.
    for alarm in ["IteratorAgeAlarm", "RecordsFailedAlarm"] {
        common::alarms::wait_for_state(&stack, P, alarm, "ALARM", common::SETTLE).await;
    }
    let name = |logical: &str| {
        stack.pattern(P)["alarms"][logical]
            .as_str()
            .expect("alarm")
            .to_owned()
    };
    let raised = common::alarms::notified(&stack, &inbox, &name("IteratorAgeAlarm"), "ALARM").await;
    assert_eq!(raised["Trigger"]["MetricName"], "IteratorAge");
    assert!(
        raised["NewStateReason"]
            .as_str()
            .unwrap_or_default()
            .contains("greater than the threshold (2000.0)"),
        "{raised}"
    );

    restore.await;
    testkit::eventually(
        "the record stored once the table is back",
        common::SETTLE,
        || async { item(&stack, "behind").await },
    )
    .await;
    // Caught up: no more late batches, no more failures; both alarms return to OK.
    for alarm in ["IteratorAgeAlarm", "RecordsFailedAlarm"] {
        common::alarms::wait_for_state(&stack, P, alarm, "OK", common::SETTLE).await;
    }
    common::alarms::notified(&stack, &inbox, &name("RecordsFailedAlarm"), "OK").await;
    drop(dynamodb);
}

/// Posts `body` for `event_id`; the answer's status and `x-amzn-requestid`, which is
/// `$context.requestId`, the request's `apiRequestId`.
async fn put_for_id(stack: &LocalStack, event_id: &str, body: &str) -> (u16, String) {
    let (user, password) = stack.credentials(P);
    let response = http()
        .post(url(stack, &stream(stack), event_id))
        .basic_auth(user, Some(password))
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let id = response.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    (response.status().as_u16(), id)
}

#[tokio::test]
async fn requests_are_found_by_their_api_request_id_in_the_access_log_the_consumers_log_and_what_is_kept()
 {
    // One retry keeps the poison record's way to FailureBucket short.
    let stack = LocalStack::start(P, "KinesisStream.MaximumRetryAttempts=1").await;
    let (status, stored_id) = put_for_id(&stack, "follow-ok", r#"{"n":1}"#).await;
    assert_eq!(status, 200);
    // A record the consumer applies gets no line of its own; one it cannot apply does, and
    // Lambda keeps it in FailureBucket.
    let (status, poison_id) = put_for_id(&stack, "follow-bad", "not JSON").await;
    assert_eq!(
        status, 200,
        "the API accepts any body; the consumer judges it"
    );

    for id in [&stored_id, &poison_id] {
        let access = stack
            .lines_with("AccessLogGroup", "requestId", id, Duration::ZERO)
            .await;
        let line: Value = serde_json::from_str(&access[0]).expect("the stage's JSON format");
        assert_eq!(line["status"], "200", "{line}");
        assert_eq!(line["integrationStatus"], "200", "{line}");
        assert_eq!(line["resourcePath"], "/submit/{streamName}/{eventId}");
        assert_eq!(line["principal"], "api-user", "the authorizer's principal");
    }

    let stored = testkit::eventually("the record stored", common::SETTLE, || async {
        item(&stack, "follow-ok").await
    })
    .await;
    assert_eq!(stored["apiRequestId"], AttributeValue::S(stored_id.clone()));

    let failed = stack
        .lines_with(
            "ConsumerLogGroup",
            "apiRequestId",
            &poison_id,
            Duration::ZERO,
        )
        .await;
    assert!(
        failed.iter().any(|l| l.contains("record failed")),
        "{failed:?}"
    );
    // The record Lambda kept is the API's envelope, naming the request.
    let kept = testkit::eventually("the on-failure record", common::SETTLE, || async {
        Some(failure_messages(&stack).await).filter(|m| !m.is_empty())
    })
    .await;
    let payload: Value =
        serde_json::from_str(kept[0]["payload"].as_str().expect("payload")).expect("event");
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD
        .decode(
            payload["Records"][0]["kinesis"]["data"]
                .as_str()
                .expect("data"),
        )
        .expect("base64");
    let envelope: Value = serde_json::from_slice(&data).expect("the API's envelope");
    assert_eq!(
        envelope["apiGatewayRequest"]["apiRequestId"],
        poison_id.as_str()
    );
}
