//! The gateway survives its own restart: killed (SIGKILL) and started again with the same
//! command line while moto keeps running, it serves the same stack (same names, URLs and
//! credentials), resumes each Kinesis shard after its checkpoint, finishes the asynchronous
//! invokes it had accepted, and consumes the same queues.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

mod common;

use std::collections::BTreeMap;
use std::time::SystemTime;

use aws_sdk_dynamodb::types::AttributeValue;
use common::LocalStack;
use common::signing::Signer;
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(common::SETTLE)
        .build()
        .expect("http client")
}

/// Sequence numbers are decimal strings of up to 128 bits: the longer one is the later.
fn later(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// `text` without its terminal colours (`ESC [ ... m`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The Kinesis batches the gateway's log says it handed to a function: (first, last, records).
fn batches_handed_over(log: &str) -> Vec<(String, String, u64)> {
    let log = plain(log);
    let field = |line: &str, name: &str| -> Option<String> {
        let (_, rest) = line.split_once(&format!(" {name}="))?;
        Some(rest.split_whitespace().next()?.trim_matches('"').to_owned())
    };
    log.lines()
        .filter(|line| line.contains("Kinesis batch handed to the function"))
        .filter_map(|line| {
            Some((
                field(line, "first")?,
                field(line, "last")?,
                field(line, "records")?.parse().ok()?,
            ))
        })
        .collect()
}

/// The checkpoints the gateway keeps (mapping UUID -> shard -> sequence number).
fn checkpoints(stack: &LocalStack) -> BTreeMap<String, BTreeMap<String, String>> {
    let file = stack
        .state_file()
        .with_extension("d")
        .join("checkpoints.json");
    std::fs::read(file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

mod kinesis {
    use super::*;

    pub const P: &str = "KinesisStream";

    /// Posts `body` for `event_id`; the record's shard and sequence number.
    pub async fn put(stack: &LocalStack, event_id: &str, body: &str) -> (String, String) {
        let pattern = stack.pattern(P);
        let stream = pattern["streams"]["EventStream"].as_str().expect("stream");
        let url = format!(
            "{}/submit/{stream}/{event_id}",
            pattern["baseUrl"].as_str().expect("base URL")
        );
        let (user, password) = stack.credentials(P);
        let response = http()
            .post(url)
            .basic_auth(user, Some(password))
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200);
        let answer: Value = response.json().await.expect("JSON answer");
        (
            answer["ShardId"].as_str().expect("shard").to_owned(),
            answer["SequenceNumber"].as_str().expect("seq").to_owned(),
        )
    }

    /// The stored item's sequence number for `key`, once stored.
    pub async fn stored(stack: &LocalStack, key: &str) -> Option<String> {
        let item = aws_sdk_dynamodb::Client::new(&stack.sdk)
            .get_item()
            .table_name(stack.table(P, "EventsTable"))
            .key("eventId", AttributeValue::S(key.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get item")
            .item?;
        item["sequenceNumber"].as_s().ok().cloned()
    }
}

#[tokio::test]
async fn a_restarted_gateway_serves_the_same_stack_and_resumes_kinesis_after_its_checkpoint() {
    use kinesis::*;
    let mut stack = LocalStack::start(P, "").await;
    let mut last_by_shard: BTreeMap<String, String> = BTreeMap::new();
    let mut first_run = Vec::new();
    for n in 0..5 {
        let key = format!("before-{n}");
        let (shard, sequence) = put(&stack, &key, &json!({"n": n}).to_string()).await;
        let entry = last_by_shard.entry(shard).or_default();
        if later(&sequence, entry) {
            *entry = sequence.clone();
        }
        first_run.push((key, sequence));
    }
    for (key, sequence) in &first_run {
        testkit::eventually(key, common::SETTLE, || async {
            stored(&stack, key).await.filter(|s| s == sequence)
        })
        .await;
    }
    // Stored is not yet checkpointed: the checkpoint follows the function's answer. Once every
    // shard's checkpoint is its last record, nothing of the first run is left to deliver.
    testkit::eventually("every shard checkpointed", common::SETTLE, || async {
        let kept = checkpoints(&stack);
        last_by_shard
            .iter()
            .all(|(shard, last)| kept.values().any(|shards| shards.get(shard) == Some(last)))
            .then_some(())
    })
    .await;
    let before = stack.state.clone();
    stack.restart().await;
    assert_eq!(
        stack.state, before,
        "the restarted gateway describes the same stack: URLs, names, credentials"
    );
    assert!(
        stack
            .log()
            .contains("resuming the stack provisioned before"),
        "{}",
        stack.log()
    );
    assert!(
        stack
            .log()
            .contains("Kinesis poller resumes after its checkpoint")
    );

    let (_, after) = put(&stack, "after", r#"{"n": "after"}"#).await;
    testkit::eventually(
        "the record put after the restart",
        common::SETTLE,
        || async { stored(&stack, "after").await.filter(|s| *s == after) },
    )
    .await;
    // The first run handed over the first five records, the second run only the new one.
    let handed_before: u64 = batches_handed_over(&stack.log_before_restart())
        .iter()
        .map(|(_, _, n)| n)
        .sum();
    assert!(handed_before >= 5, "{}", stack.log_before_restart());
    let handed_after = batches_handed_over(&stack.log());
    assert_eq!(
        handed_after,
        vec![(after.clone(), after.clone(), 1)],
        "after the restart only the record after the checkpoint is delivered:\n{}",
        stack.log()
    );
    for (key, sequence) in &first_run {
        assert_eq!(stored(&stack, key).await.as_ref(), Some(sequence));
    }
}

mod jobs {
    use super::*;

    pub const P: &str = "AsyncInvoke";

    fn base(stack: &LocalStack) -> String {
        stack.pattern(P)["baseUrl"]
            .as_str()
            .expect("base URL")
            .to_owned()
    }

    async fn send(stack: &LocalStack, method: &str, url: &str, body: &str) -> (u16, Value) {
        let headers = [("content-type", "application/json")];
        let signed = Signer::of(stack).headers(
            method,
            url,
            &headers,
            aws_sigv4::http_request::SignableBody::Bytes(body.as_bytes()),
            aws_sigv4::http_request::SigningSettings::default(),
            SystemTime::now(),
        );
        let mut builder = http()
            .request(method.parse().expect("method"), url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        for (name, value) in signed {
            builder = builder.header(name, value);
        }
        let response = builder.send().await.expect("send");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn submit(stack: &LocalStack, body: &str) -> String {
        let (status, answer) = send(stack, "POST", &format!("{}/jobs", base(stack)), body).await;
        assert_eq!(status, 202, "{answer}");
        answer["jobId"].as_str().expect("jobId").to_owned()
    }

    pub async fn job(stack: &LocalStack, id: &str) -> Value {
        let (status, body) = send(stack, "GET", &format!("{}/jobs/{id}", base(stack)), "").await;
        if status == 200 { body } else { Value::Null }
    }
}

#[tokio::test]
async fn an_asynchronous_invoke_accepted_before_a_restart_still_finishes_its_job() {
    use jobs::*;
    // A short processor timeout: the lease the killed run took expires soon, so the retry of
    // the interrupted attempt takes the job (the template's default is 900 s).
    let mut stack = LocalStack::start(P, "ProcessorTimeout=8").await;
    let id = submit(&stack, r#"{"seconds": 4}"#).await;
    testkit::eventually("the job running", common::SETTLE, || async {
        (job(&stack, &id).await["status"] == "RUNNING").then_some(())
    })
    .await;
    let journal = stack.state_file().with_extension("d").join("async-events");
    assert_eq!(
        std::fs::read_dir(&journal).expect("journal").count(),
        1,
        "the accepted event is journaled"
    );
    stack.restart().await;
    assert!(
        stack
            .log()
            .contains("resuming a queued asynchronous invoke"),
        "{}",
        stack.log()
    );
    let done = testkit::eventually("a final job state", common::SETTLE, || async {
        let body = job(&stack, &id).await;
        matches!(body["status"].as_str(), Some("SUCCEEDED" | "FAILED")).then_some(body)
    })
    .await;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(done["result"], json!({"sleptSeconds": 4}));
    assert_eq!(done["attempts"], 2, "the interrupted run and the retry");
    testkit::eventually("the journal emptied", common::SETTLE, || async {
        (std::fs::read_dir(&journal).expect("journal").count() == 0).then_some(())
    })
    .await;
}

mod buffer {
    use super::*;

    pub const P: &str = "SqsBuffer";

    /// Posts an event; its SQS message id.
    pub async fn post(stack: &LocalStack, event_id: &str) -> String {
        let (user, password) = stack.credentials(P);
        let response = http()
            .post(format!(
                "{}/submit",
                stack.pattern(P)["baseUrl"].as_str().expect("base URL")
            ))
            .header("content-type", "application/json")
            .basic_auth(user, Some(password))
            .body(json!({"eventId": event_id, "message": "hello"}).to_string())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200);
        let xml = response.text().await.expect("body");
        xml.split_once("<MessageId>")
            .and_then(|(_, rest)| rest.split_once("</MessageId>"))
            .map(|(id, _)| id.to_owned())
            .expect("MessageId")
    }
}

#[tokio::test]
async fn a_restarted_gateway_consumes_the_same_queue() {
    use buffer::*;
    // The killed gateway's last long poll may still be open in moto and take a message posted
    // right after the restart: it comes back once its visibility timeout ends, as in AWS. A
    // short timeout keeps that wait short (the consumer's timeout stays below it).
    let visibility = std::time::Duration::from_secs(6);
    let mut stack = LocalStack::start(P, "QueueVisibilityTimeout=6 ConsumerTimeout=1").await;
    let table = stack.table(P, "EventsTable");
    let queue = stack.queue_url(P, "BufferQueue");
    let first = post(&stack, "before-restart").await;
    testkit::eventually("the first event stored", common::SETTLE, || async {
        (stack.items(&table).await.len() == 1).then_some(())
    })
    .await;
    let before = stack.state.clone();
    stack.restart().await;
    assert_eq!(stack.state, before);
    assert_eq!(stack.queue_url(P, "BufferQueue"), queue, "the same queue");
    let second = post(&stack, "after-restart").await;
    let bound = common::settle_after(visibility);
    let items = testkit::eventually("both events stored", bound, || async {
        Some(stack.items(&table).await).filter(|items| items.len() == 2)
    })
    .await;
    let stored: BTreeMap<String, String> = items
        .iter()
        .map(|item| {
            (
                item["eventId"].as_s().expect("eventId").clone(),
                item["messageId"].as_s().expect("messageId").clone(),
            )
        })
        .collect();
    assert_eq!(
        stored,
        BTreeMap::from([
            ("before-restart".to_owned(), first),
            ("after-restart".to_owned(), second),
        ])
    );
    testkit::eventually("the queue drained", bound, || async {
        (stack.queue_depth(&queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(stack.items(&table).await.len(), 2, "none stored twice");
}
