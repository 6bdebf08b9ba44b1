//! sqs-buffer end to end: real HTTP through the local gateway, the real handlers in-process, moto
//! behind them. Each test runs its own stack (unique names, free ports).

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::LocalStack;
use serde_json::{Value, json};

const P: &str = "SqsBuffer";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(common::SETTLE)
        .build()
        .expect("http client")
}

fn submit_url(stack: &LocalStack) -> String {
    format!(
        "{}/submit",
        stack.pattern(P)["baseUrl"].as_str().expect("base URL")
    )
}

async fn post(stack: &LocalStack, body: &str, auth: Option<(&str, &str)>) -> (u16, Value) {
    let mut request = client()
        .post(submit_url(stack))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    // Errors are API Gateway's JSON; an accepted message is SQS's own XML answer.
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The message id in SQS's XML answer (`<MessageId>...</MessageId>`).
fn message_id(answer: &Value) -> String {
    let xml = answer.as_str().unwrap_or_default();
    assert!(
        xml.starts_with("<?xml") && xml.contains("<SendMessageResponse"),
        "not SQS's XML answer: {answer}"
    );
    xml.split_once("<MessageId>")
        .and_then(|(_, rest)| rest.split_once("</MessageId>"))
        .map(|(id, _)| id.to_owned())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| panic!("no MessageId in {answer}"))
}

#[tokio::test]
async fn valid_credentials_get_200_and_a_message_id_and_the_event_is_stored() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    let (status, answer) = post(
        &stack,
        r#"{"eventId":"evt-1","message":"hello"}"#,
        Some((&user, &password)),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let id = message_id(&answer);

    let table = stack.table(P, "EventsTable");
    let item = testkit::eventually("the event in the table", common::SETTLE, || async {
        stack.items(&table).await.into_iter().next()
    })
    .await;
    assert_eq!(item["eventId"], AttributeValue::S("evt-1".into()));
    assert_eq!(item["messageId"], AttributeValue::S(id));
    let AttributeValue::M(payload) = &item["payload"] else {
        panic!("payload must be a map")
    };
    assert_eq!(payload["message"], AttributeValue::S("hello".into()));
}

#[tokio::test]
async fn bad_or_missing_credentials_are_refused_and_nothing_is_enqueued() {
    let stack = LocalStack::start(P, "").await;
    let (user, _) = stack.credentials(P);
    let (status, body) = post(
        &stack,
        r#"{"eventId":"x"}"#,
        Some((&user, "wrong-password")),
    )
    .await;
    assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    let (status, body) = post(&stack, r#"{"eventId":"y"}"#, None).await;
    assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
    let bearer = client()
        .post(submit_url(&stack))
        .header("authorization", "Bearer abc.def.ghi")
        .body(r#"{"eventId":"z"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(bearer.status().as_u16(), 403);

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stack.queue_depth(&stack.queue_url(P, "BufferQueue")).await,
        0
    );
    assert!(stack.items(&stack.table(P, "EventsTable")).await.is_empty());
}

#[tokio::test]
async fn non_json_body_is_accepted_then_dead_lettered_and_redrive_brings_it_back() {
    // Short visibility and two receives keep the failure path fast; the template is unchanged.
    let stack = LocalStack::start(
        P,
        "QueueVisibilityTimeout=1 ConsumerTimeout=1 MaxReceiveCount=2",
    )
    .await;
    let (user, password) = stack.credentials(P);
    let (status, answer) = post(&stack, "Test Message", Some((&user, &password))).await;
    assert_eq!(status, 200, "{answer}");
    let poison_id = message_id(&answer);
    let (status, _) = post(
        &stack,
        r#"{"eventId":"good-neighbour"}"#,
        Some((&user, &password)),
    )
    .await;
    assert_eq!(status, 200);

    let dlq = stack.queue_url(P, "DeadLetterQueue");
    testkit::eventually(
        "the poison message in the DLQ",
        common::settle_after(Duration::from_secs(2)),
        || async { (stack.queue_depth(&dlq).await == 1).then_some(()) },
    )
    .await;
    let items = stack.items(&stack.table(P, "EventsTable")).await;
    assert_eq!(items.len(), 1, "only the good neighbour is stored");
    assert_eq!(
        items[0]["eventId"],
        AttributeValue::S("good-neighbour".into())
    );

    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let source = sqs_redrive::source_queue_of(&sqs, &dlq)
        .await
        .expect("source queue");
    assert_eq!(source, stack.queue_url(P, "BufferQueue"));
    let moved = sqs_redrive::redrive(&sqs, &dlq, &source, None)
        .await
        .expect("redrive");
    assert_eq!(moved, 1);
    // Back on the source queue it is consumed again; still not JSON, it fails its two receives
    // and returns to the DLQ: nothing is lost on the way.
    testkit::eventually(
        "the redriven message back in the DLQ",
        common::settle_after(Duration::from_secs(2)),
        || async { (stack.queue_depth(&dlq).await == 1).then_some(()) },
    )
    .await;
    let back = sqs
        .receive_message()
        .queue_url(&dlq)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive");
    let message = &back.messages()[0];
    assert_eq!(message.body(), Some("Test Message"));
    assert_ne!(
        message.message_id(),
        Some(poison_id.as_str()),
        "a redriven message is a new message"
    );
}

#[tokio::test]
async fn the_same_event_posted_twice_is_stored_once() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    for _ in 0..2 {
        let (status, _) = post(
            &stack,
            r#"{"eventId":"twice","v":1}"#,
            Some((&user, &password)),
        )
        .await;
        assert_eq!(status, 200);
    }
    let url = stack.queue_url(P, "BufferQueue");
    testkit::eventually("the queue drained", common::SETTLE, || async {
        (stack.queue_depth(&url).await == 0).then_some(())
    })
    .await;
    assert_eq!(stack.items(&stack.table(P, "EventsTable")).await.len(), 1);
}

#[tokio::test]
async fn the_same_event_id_posted_with_another_body_is_kept_as_a_visible_conflict() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    let table = stack.table(P, "EventsTable");
    let (status, answer) = post(
        &stack,
        r#"{"eventId":"reused","amount":10}"#,
        Some((&user, &password)),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let first = message_id(&answer);
    let original = testkit::eventually("the original stored", common::SETTLE, || async {
        stack.items(&table).await.into_iter().next()
    })
    .await;

    let (status, answer) = post(
        &stack,
        r#"{"eventId":"reused","amount":99}"#,
        Some((&user, &password)),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let second = message_id(&answer);
    let conflict = testkit::eventually("the conflict item", common::SETTLE, || async {
        stack
            .items(&table)
            .await
            .into_iter()
            .find(|i| i.get("kind") == Some(&AttributeValue::S("conflict".into())))
    })
    .await;

    assert_eq!(conflict["conflictOf"], AttributeValue::S("reused".into()));
    assert_eq!(conflict["messageId"], AttributeValue::S(second));
    assert_eq!(conflict["originalMessageId"], AttributeValue::S(first));
    assert_eq!(
        conflict["payload"].as_m().expect("payload")["amount"],
        AttributeValue::N("99".into())
    );
    let queue = stack.queue_url(P, "BufferQueue");
    testkit::eventually("the queue drained", common::SETTLE, || async {
        (stack.queue_depth(&queue).await == 0).then_some(())
    })
    .await;
    let items = stack.items(&table).await;
    assert_eq!(items.len(), 2, "the original and one conflict item");
    let stored = items
        .iter()
        .find(|i| i["eventId"] == AttributeValue::S("reused".into()))
        .expect("the original");
    assert_eq!(*stored, original, "the original is untouched");
    assert_eq!(
        stack
            .queue_depth(&stack.queue_url(P, "DeadLetterQueue"))
            .await,
        0,
        "a conflict is recorded, never dead-lettered"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_posts_give_exactly_two_hundred_items() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    let url = submit_url(&stack);
    let http = client();
    // The first post goes alone and fills the authorizer's cache, as a client's first call does,
    // so the burst tests the buffer, not how many authorizer environments start at once (locally
    // at most 32 per function, README "How the local stack works"; AWS scales on). The burst
    // sends it again: the consumer keys on the eventId, so it is stored once.
    let first = http
        .post(&url)
        .basic_auth(&user, Some(&password))
        .body(json!({"eventId": "load-0", "n": 0}).to_string())
        .send()
        .await
        .expect("first post");
    assert_eq!(first.status().as_u16(), 200);
    let posts = (0..200).map(|i| {
        let request = http
            .post(&url)
            .basic_auth(&user, Some(&password))
            .body(json!({"eventId": format!("load-{i}"), "n": i}).to_string());
        tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
    });
    let statuses = futures::future::join_all(posts).await;
    let ok = statuses.iter().filter(|s| matches!(s, Ok(Ok(200)))).count();
    assert_eq!(ok, 200, "every post is accepted: {statuses:?}");

    let table = stack.table(P, "EventsTable");
    testkit::eventually("200 items", common::SETTLE, || async {
        (stack.items(&table).await.len() >= 200).then_some(())
    })
    .await;
    let queue = stack.queue_url(P, "BufferQueue");
    testkit::eventually("the queue drained", common::SETTLE, || async {
        (stack.queue_depth(&queue).await == 0).then_some(())
    })
    .await;
    let mut ids: Vec<String> = stack
        .items(&table)
        .await
        .iter()
        .map(|item| match &item["eventId"] {
            AttributeValue::S(s) => s.clone(),
            other => panic!("bad key {other:?}"),
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "none lost, none doubled");
    assert_eq!(
        stack
            .queue_depth(&stack.queue_url(P, "DeadLetterQueue"))
            .await,
        0
    );
}

#[tokio::test]
async fn parameter_overrides_reach_the_pattern_and_bad_ones_are_refused() {
    let stack = LocalStack::start(P, "BatchSize=3 MaxReceiveCount=7").await;
    let parameters = &stack.pattern(P)["parameters"];
    assert_eq!(parameters["BatchSize"], "3");
    assert_eq!(parameters["MaxReceiveCount"], "7");
    drop(stack);

    let (ok, output) = common::run_to_exit(P, "BatchSize=0");
    assert!(!ok, "BatchSize=0 must be refused");
    assert!(
        output.contains("BatchSize=0 is below its MinValue"),
        "{output}"
    );
    // The template's own rule refuses it before anything is created, as CloudFormation would,
    // in the words Lambda uses for CreateEventSourceMapping.
    let (ok, output) = common::run_to_exit(P, "BatchSize=50");
    assert!(
        !ok,
        "a batch above 10 with no batching window must be refused, as Lambda does"
    );
    assert!(
        output.contains("BatchingWindowForLargeBatches")
            && output.contains("Maximum batch window in seconds must be greater than 0"),
        "{output}"
    );
    let stack = LocalStack::start(P, "BatchSize=50 MaximumBatchingWindow=1").await;
    assert_eq!(stack.pattern(P)["parameters"]["BatchSize"], "50");
}

#[tokio::test]
async fn a_message_sqs_would_refuse_gets_500_and_nothing_is_enqueued() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    // U+FFFE is valid UTF-8 (and valid in JSON) but outside SQS's character set: SQS refuses
    // the call (InvalidMessageContents) and API Gateway answers the client 500. moto would have
    // queued it; the gateway checks what SQS checks.
    for body in ["{\"eventId\":\"x\",\"note\":\"\u{FFFE}\"}", "\u{1}control"] {
        let (status, answer) = post(&stack, body, Some((&user, &password))).await;
        assert_eq!(
            (status, answer),
            (500, json!({"message": "Internal Server Error"})),
            "{body:?}"
        );
    }
    assert_eq!(
        stack.queue_depth(&stack.queue_url(P, "BufferQueue")).await,
        0,
        "nothing acknowledged, nothing queued"
    );
}

#[tokio::test]
async fn a_failed_queue_call_gets_500_never_an_acknowledgement() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    sqs.delete_queue()
        .queue_url(stack.queue_url(P, "BufferQueue"))
        .send()
        .await
        .expect("delete queue");
    let (status, answer) = post(&stack, r#"{"eventId":"lost?"}"#, Some((&user, &password))).await;
    assert_eq!(
        (status, answer),
        (500, json!({"message": "Internal Server Error"}))
    );
}

#[tokio::test]
async fn empty_body_is_refused_with_400_and_nothing_is_enqueued() {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    let (status, body) = post(&stack, "", Some((&user, &password))).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("MessageBody"),
        "{body}"
    );
    assert_eq!(
        stack.queue_depth(&stack.queue_url(P, "BufferQueue")).await,
        0
    );
}

/// Posts `body` with the stack's credentials; the answer's status and `apigw-requestid`, which
/// is `$context.requestId`, the request's `apiRequestId`.
async fn post_for_id(stack: &LocalStack, body: &str) -> (u16, String) {
    let (user, password) = stack.credentials(P);
    let response = client()
        .post(submit_url(stack))
        .basic_auth(user, Some(password))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let id = response.headers()["apigw-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    (response.status().as_u16(), id)
}

#[tokio::test]
async fn one_request_is_found_by_its_api_request_id_in_the_access_log_the_consumers_log_and_the_item()
 {
    let stack = LocalStack::start(P, "").await;
    let table = stack.table(P, "EventsTable");
    let (status, first) = post_for_id(&stack, r#"{"eventId":"follow","n":1}"#).await;
    assert_eq!(status, 200);
    testkit::eventually("the first event stored", common::SETTLE, || async {
        stack.items(&table).await.into_iter().next()
    })
    .await;
    // The request to follow reuses the event id with another body: the consumer keeps it as a
    // conflict item and says so in a log line, both naming the request (a stored event that
    // raises no question gets no line of its own).
    let (status, id) = post_for_id(&stack, r#"{"eventId":"follow","n":2}"#).await;
    assert_eq!(status, 200);
    assert_ne!(id, first);

    let access = stack
        .lines_with("AccessLogGroup", "requestId", &id, Duration::ZERO)
        .await;
    assert_eq!(
        access.len(),
        1,
        "one access log line per request: {access:?}"
    );
    let line: Value = serde_json::from_str(&access[0]).expect("the stage's JSON format");
    assert_eq!(line["routeKey"], "POST /submit");
    assert_eq!(line["status"], "200");
    assert_eq!(line["integrationError"], "-");

    let consumer = stack
        .lines_with("ConsumerLogGroup", "apiRequestId", &id, Duration::ZERO)
        .await;
    assert!(
        consumer
            .iter()
            .any(|l| l.contains("recorded as a conflict item")),
        "{consumer:?}"
    );

    let conflict = testkit::eventually("the conflict item", common::SETTLE, || async {
        stack
            .items(&table)
            .await
            .into_iter()
            .find(|i| i.get("kind") == Some(&AttributeValue::S("conflict".into())))
    })
    .await;
    assert_eq!(conflict["apiRequestId"], AttributeValue::S(id));
    let original = stack
        .items(&table)
        .await
        .into_iter()
        .find(|i| i.get("kind") != Some(&AttributeValue::S("conflict".into())))
        .expect("the original event");
    assert_eq!(original["apiRequestId"], AttributeValue::S(first));
}
