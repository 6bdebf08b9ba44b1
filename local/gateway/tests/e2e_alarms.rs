//! The templates' alarms, evaluated locally: a failure drives a pattern's alarm to `ALARM` in
//! moto's CloudWatch (what `aws cloudwatch describe-alarms` shows) and publishes the change to the
//! pattern's SNS topic; the fix and the redrive bring it back to `OK`, published too.
//!
//! The failure is an outage, not a poison message, so that a redrive can succeed: the pattern's
//! table is deleted, requests fail in the consumer until they are dead-lettered (or, for the
//! stream, until the iterator age grows), the table is recreated as it was, and the dead-lettered
//! messages are redriven and stored. A test subscribes its own SQS queue to the alarm topic and
//! reads the notifications CloudWatch would send.
//!
//! Periods run at the gateway's default scale (one CloudWatch minute lasts one second locally),
//! so every wait below is for a condition, bounded by `common::SETTLE` and its multiples.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

mod common;

use std::time::Duration;

use common::LocalStack;
use common::alarms::{notified, subscribe, take_table_away, wait_for_state};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(common::SETTLE)
        .build()
        .expect("client")
}

/// The dead-letter alarm of a queue pattern, through an outage, a dead letter, the fix and a
/// redrive. `post` sends one valid request and gives its status.
async fn dead_letter_alarm_round_trip<F, Fut>(pattern: &str, table: &str, post: F)
where
    F: Fn(&LocalStack) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    // Short visibility and two receives keep the failure path fast; the template is unchanged.
    let stack = LocalStack::start(
        pattern,
        "QueueVisibilityTimeout=1 ConsumerTimeout=1 MaxReceiveCount=2",
    )
    .await;
    let alarm = stack.pattern(pattern)["alarms"]["DeadLetterQueueAlarm"]
        .as_str()
        .expect("alarm name")
        .to_owned();
    let inbox = subscribe(&stack, pattern).await;
    // An empty dead-letter queue: the alarm settles on OK once the queue's metrics flow.
    wait_for_state(
        &stack,
        pattern,
        "DeadLetterQueueAlarm",
        "OK",
        common::SETTLE,
    )
    .await;

    let table = stack.table(pattern, table);
    let restore = take_table_away(&stack, &table).await;
    assert_eq!(post(&stack).await, pattern_ok_status(pattern));
    let dlq = stack.queue_url(pattern, "DeadLetterQueue");
    testkit::eventually(
        "the request dead-lettered",
        common::settle_after(Duration::from_secs(2)),
        || async { (stack.queue_depth(&dlq).await == 1).then_some(()) },
    )
    .await;
    wait_for_state(
        &stack,
        pattern,
        "DeadLetterQueueAlarm",
        "ALARM",
        common::SETTLE,
    )
    .await;
    let raised = notified(&stack, &inbox, &alarm, "ALARM").await;
    assert_eq!(
        raised["Trigger"]["MetricName"],
        "ApproximateNumberOfMessagesVisible"
    );
    assert_eq!(raised["OldStateValue"], "OK");
    assert!(
        stack.log().contains(&format!("alarm {alarm} is ALARM")),
        "the change is printed on the console"
    );

    // The fix, then the redrive: the message is stored and the dead-letter queue empties.
    restore.await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let source = sqs_redrive::source_queue_of(&sqs, &dlq)
        .await
        .expect("source");
    assert_eq!(
        sqs_redrive::redrive(&sqs, &dlq, &source, None)
            .await
            .expect("redrive"),
        1
    );
    testkit::eventually("the redriven request stored", common::SETTLE, || async {
        (!stack.items(&table).await.is_empty()).then_some(())
    })
    .await;
    wait_for_state(
        &stack,
        pattern,
        "DeadLetterQueueAlarm",
        "OK",
        common::SETTLE,
    )
    .await;
    let cleared = notified(&stack, &inbox, &alarm, "OK").await;
    assert_eq!(cleared["OldStateValue"], "ALARM");
}

fn pattern_ok_status(pattern: &str) -> u16 {
    if pattern == "UserApi" { 202 } else { 200 }
}

#[tokio::test]
async fn sqs_buffer_dead_letter_alarm_goes_to_alarm_and_back_after_a_redrive() {
    dead_letter_alarm_round_trip("SqsBuffer", "EventsTable", |stack| {
        let (user, password) = stack.credentials("SqsBuffer");
        let url = format!(
            "{}/submit",
            stack.pattern("SqsBuffer")["baseUrl"]
                .as_str()
                .expect("base")
        );
        async move {
            http()
                .post(url)
                .basic_auth(user, Some(password))
                .header("content-type", "application/json")
                .body(r#"{"eventId":"outage-1","detail":"kept through the outage"}"#)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    })
    .await;
}

#[tokio::test]
async fn user_api_dead_letter_alarm_goes_to_alarm_and_back_after_a_redrive() {
    dead_letter_alarm_round_trip("UserApi", "UsersTable", |stack| {
        let (user, password) = stack.credentials("UserApi");
        let url = format!(
            "{}/users",
            stack.pattern("UserApi")["baseUrl"].as_str().expect("base")
        );
        async move {
            http()
                .post(url)
                .basic_auth(user, Some(password))
                .header("content-type", "application/json")
                .body(r#"{"name":"Grace","email":"grace@example.com"}"#)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    })
    .await;
}
