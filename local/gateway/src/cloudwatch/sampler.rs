//! The `AWS/SQS` metrics of the stack's queues, sampled from moto twice per local minute (SQS
//! publishes them once a minute: sampling twice keeps every scaled period supplied even when a
//! sample runs late).

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use super::store::{MetricId, record};

/// `AWS/SQS`.
pub const SQS: &str = "AWS/SQS";

/// A queue to sample.
#[derive(Debug, Clone)]
pub struct Queue {
    /// Its URL.
    pub url: String,
    /// Its name (the metrics' `QueueName`).
    pub name: String,
}

/// Where the emulator tells the age of each queue's oldest message (tools/moto_server.py): no
/// SQS API gives it, CloudWatch alone does.
pub const OLDEST_PATH: &str = "/_local/sqs/oldest-message-age";

/// Samples `queues` every half `minute`, for as long as the gateway runs.
pub fn start(
    queues: Vec<Queue>,
    sqs: aws_sdk_sqs::Client,
    endpoint: String,
    region: String,
    minute: Duration,
) {
    if queues.is_empty() {
        return;
    }
    let queues = Arc::new(queues);
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut tick = tokio::time::interval(minute / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let ages: Option<Value> = match http
                .get(format!("{}{OLDEST_PATH}", endpoint.trim_end_matches('/')))
                .timeout(Duration::from_secs(5))
                .send()
                .await
            {
                Ok(response) => response.json().await.ok(),
                Err(_) => None,
            };
            for queue in queues.iter() {
                sample(&sqs, queue, ages.as_ref(), &region).await;
            }
        }
    });
}

async fn sample(sqs: &aws_sdk_sqs::Client, queue: &Queue, ages: Option<&Value>, region: &str) {
    let Ok(out) = sqs
        .get_queue_attributes()
        .queue_url(&queue.url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
    else {
        // Nothing is published for a queue the emulator cannot describe (a missing datapoint).
        return;
    };
    let attributes = out.attributes();
    let put = |metric: &str, value: f64| {
        record(
            MetricId::new(SQS, metric, &[("QueueName", &queue.name)]),
            value,
        );
    };
    for (attribute, metric) in [
        (
            QueueAttributeName::ApproximateNumberOfMessages,
            "ApproximateNumberOfMessagesVisible",
        ),
        (
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            "ApproximateNumberOfMessagesNotVisible",
        ),
        (
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
            "ApproximateNumberOfMessagesDelayed",
        ),
    ] {
        if let Some(value) = attributes
            .and_then(|a| a.get(&attribute))
            .and_then(|v| v.parse::<f64>().ok())
        {
            put(metric, value);
        }
    }
    let key = format!("{}/{region}/{}", crate::ACCOUNT_ID, queue.name);
    if let Some(age) = ages.and_then(|a| a.get(&key)).and_then(Value::as_f64) {
        put("ApproximateAgeOfOldestMessage", age.floor());
    }
}
