//! Alarm helpers for the end-to-end tests: an alarm's state as moto's CloudWatch reports it, a
//! queue of the test's own subscribed to a pattern's alarm topic, the notifications it receives,
//! and a table outage that can be undone.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, Projection,
};
use serde_json::Value;

use super::LocalStack;

/// The state of the pattern's alarm `logical`, as moto's CloudWatch reports it.
pub async fn alarm_state(stack: &LocalStack, pattern: &str, logical: &str) -> String {
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

pub async fn wait_for_state(
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
pub async fn subscribe(stack: &LocalStack, pattern: &str) -> String {
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
pub async fn notified(stack: &LocalStack, inbox: &str, alarm: &str, state: &str) -> Value {
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    testkit::eventually(
        &format!("a notification of {alarm} going to {state}"),
        super::SETTLE,
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
pub async fn take_table_away(
    stack: &LocalStack,
    table: &str,
) -> impl std::future::Future<Output = ()> {
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
