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

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, Projection,
};
use common::LocalStack;
use serde_json::Value;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(common::SETTLE)
        .build()
        .expect("client")
}

/// The state of the pattern's alarm `logical`, as moto's CloudWatch reports it.
async fn alarm_state(stack: &LocalStack, pattern: &str, logical: &str) -> String {
    let name = stack.pattern(pattern)["alarms"][logical]
        .as_str()
        .unwrap_or_else(|| panic!("no alarm {logical} in {}", stack.state))
        .to_owned();
    let out = aws_sdk_cloudwatch::Client::new(&stack.sdk)
        .describe_alarms()
        .alarm_names(&name)
        .send()
        .await
        .expect("describe-alarms");
    out.metric_alarms()
        .first()
        .and_then(|a| a.state_value())
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

async fn wait_for_state(
    stack: &LocalStack,
    pattern: &str,
    logical: &str,
    want: &str,
    bound: Duration,
) {
    testkit::eventually(&format!("{logical} in state {want}"), bound, || async {
        (alarm_state(stack, pattern, logical).await == want).then_some(())
    })
    .await;
}

/// A queue of the test's own subscribed to the pattern's alarm topic.
async fn subscribe(stack: &LocalStack, pattern: &str) -> String {
    let topic = stack.pattern(pattern)["topics"]["AlarmTopic"]
        .as_str()
        .expect("alarm topic")
        .to_owned();
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let url = sqs
        .create_queue()
        .queue_name(testkit::unique("alarm-inbox"))
        .send()
        .await
        .expect("create inbox")
        .queue_url()
        .expect("url")
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("inbox arn")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("arn");
    aws_sdk_sns::Client::new(&stack.sdk)
        .subscribe()
        .topic_arn(topic)
        .protocol("sqs")
        .endpoint(arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    url
}

/// Waits for a notification of `alarm` going to `state` in the inbox.
async fn notified(stack: &LocalStack, inbox: &str, alarm: &str, state: &str) -> Value {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    testkit::eventually(
        &format!("a notification of {alarm} going to {state}"),
        common::SETTLE,
        || async {
            let out = sqs
                .receive_message()
                .queue_url(inbox)
                .max_number_of_messages(10)
                .send()
                .await
                .ok()?;
            out.messages()
                .iter()
                .filter_map(|m| serde_json::from_str::<Value>(m.body()?).ok())
                .find(|n| n["AlarmName"] == alarm && n["NewStateValue"] == state)
        },
    )
    .await
}

/// Deletes `table` and gives back what recreates it as it was.
async fn take_table_away(stack: &LocalStack, table: &str) -> impl std::future::Future<Output = ()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let description = dynamodb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .expect("describe table")
        .table
        .expect("table");
    dynamodb
        .delete_table()
        .table_name(table)
        .send()
        .await
        .expect("delete table");
    let table = table.to_owned();
    async move {
        let keys = |k: &[KeySchemaElement]| -> Vec<KeySchemaElement> { k.to_vec() };
        let indexes: Vec<GlobalSecondaryIndex> = description
            .global_secondary_indexes()
            .iter()
            .map(|g| {
                GlobalSecondaryIndex::builder()
                    .index_name(g.index_name().unwrap_or_default())
                    .set_key_schema(Some(keys(g.key_schema())))
                    .projection(
                        g.projection()
                            .cloned()
                            .unwrap_or_else(|| Projection::builder().build()),
                    )
                    .build()
                    .expect("index")
            })
            .collect();
        let attributes: Vec<AttributeDefinition> = description.attribute_definitions().to_vec();
        dynamodb
            .create_table()
            .table_name(&table)
            .set_key_schema(Some(keys(description.key_schema())))
            .set_attribute_definitions(Some(attributes))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("recreate table");
    }
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
