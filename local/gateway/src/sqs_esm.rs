//! Emulation of Lambda's SQS event source mapping, as the template declares it.
//!
//! For each `Events.<name>` of `Type: SQS` on a function: pollers receive from the queue, gather up
//! to `BatchSize` messages for at most `MaximumBatchingWindowInSeconds`, invoke the function with
//! an SQS event, and delete what succeeded. With `ReportBatchItemFailures` only the listed
//! `itemIdentifier`s stay on the queue; an empty or unknown identifier, a function error or a
//! timeout leaves the whole batch. Messages left on the queue come back after the queue's
//! visibility timeout, and SQS (moto) moves them to the dead-letter queue once their receive count
//! passes `maxReceiveCount`: redrive is the queue's business, as in AWS.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::cfn::scalar_to_string;
use crate::functions::{Function, InvokeError};

/// Concurrent pollers per mapping when `ScalingConfig.MaximumConcurrency` is not set (Lambda
/// starts with five).
pub const DEFAULT_POLLERS: usize = 5;

/// One SQS event source mapping.
#[derive(Debug, Clone)]
pub struct SqsMapping {
    /// The function fed by the mapping.
    pub function: Arc<Function>,
    /// Queue URL and ARN.
    pub queue_url: String,
    /// Queue ARN (the records' `eventSourceARN`).
    pub queue_arn: String,
    /// `BatchSize` (default 10).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds` (default 0).
    pub batching_window: Duration,
    /// `FunctionResponseTypes` contains `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// Concurrent pollers.
    pub pollers: usize,
}

/// Reads the SQS event sources of `function`, with AWS's validation: a batch size above 10
/// requires a batching window, and the queue's visibility timeout must not be shorter than the
/// function's timeout.
pub async fn mappings_for(
    function: &Arc<Function>,
    queues_by_arn: &HashMap<String, String>,
    sqs: &aws_sdk_sqs::Client,
) -> Result<Vec<SqsMapping>> {
    let mut out = Vec::new();
    let events = function.properties.get("Events").and_then(Value::as_object);
    for (name, event) in events.into_iter().flatten() {
        if event.get("Type").and_then(Value::as_str) != Some("SQS") {
            continue;
        }
        let props = event.get("Properties").cloned().unwrap_or(Value::Null);
        if props.get("Enabled").map(scalar_to_string).as_deref() == Some("false") {
            continue;
        }
        let queue_arn = props.get("Queue").map(scalar_to_string).unwrap_or_default();
        let queue_url = queues_by_arn.get(&queue_arn).cloned().ok_or_else(|| {
            anyhow!(
                "{}: event {name} reads queue {queue_arn}, which the stack does not hold",
                function.id
            )
        })?;
        let number = |key: &str, default: u64| -> Result<u64> {
            props
                .get(key)
                .map(scalar_to_string)
                .map(|v| {
                    v.parse::<u64>()
                        .map_err(|_| anyhow!("{}: {key} {v:?} is not a number", function.id))
                })
                .transpose()
                .map(|v| v.unwrap_or(default))
        };
        let batch_size = number("BatchSize", 10)?;
        let window = number("MaximumBatchingWindowInSeconds", 0)?;
        if !(1..=10_000).contains(&batch_size) {
            bail!(
                "{}: BatchSize must be 1-10000, got {batch_size}",
                function.id
            );
        }
        if batch_size > 10 && window == 0 {
            // CreateEventSourceMapping's answer (InvalidParameterValueException), word for word.
            bail!(
                "{}: InvalidParameterValueException: Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
                function.id
            );
        }
        if window > 300 {
            bail!(
                "{}: MaximumBatchingWindowInSeconds must be 0-300, got {window}",
                function.id
            );
        }
        let visibility = queue_visibility(sqs, &queue_url).await?;
        if visibility < function.timeout.as_secs() {
            bail!(
                "{}: queue visibility timeout ({visibility} s) is less than the function timeout ({} s); Lambda refuses this mapping",
                function.id,
                function.timeout.as_secs()
            );
        }
        let report = props
            .get("FunctionResponseTypes")
            .and_then(Value::as_array)
            .is_some_and(|types| types.iter().any(|t| t == "ReportBatchItemFailures"));
        let pollers = max_concurrency(&props).map_err(|e| anyhow!("{}: {e}", function.id))?;
        out.push(SqsMapping {
            function: function.clone(),
            queue_url,
            queue_arn,
            batch_size: batch_size as usize,
            batching_window: Duration::from_secs(window),
            report_batch_item_failures: report,
            pollers,
        });
    }
    Ok(out)
}

/// The most batches the mapping has in flight at once: `ScalingConfig.MaximumConcurrency`
/// (2-1000, as Lambda validates it), else [`DEFAULT_POLLERS`]. Each poller holds one batch at a
/// time, so the gateway runs this many pollers.
pub fn max_concurrency(properties: &Value) -> Result<usize> {
    let Some(value) = properties.pointer("/ScalingConfig/MaximumConcurrency") else {
        return Ok(DEFAULT_POLLERS);
    };
    let text = scalar_to_string(value);
    match text.parse::<usize>() {
        Ok(n) if (2..=1000).contains(&n) => Ok(n),
        _ => bail!(
            "InvalidParameterValueException: ScalingConfig.MaximumConcurrency must be between 2 and 1000, got {text:?}"
        ),
    }
}

async fn queue_visibility(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .send()
        .await?;
    Ok(out
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
        .and_then(|v| v.parse().ok())
        .unwrap_or(30))
}

impl SqsMapping {
    /// Starts the mapping's pollers, supervised; they run until the gateway stops.
    pub fn start(self: Arc<Self>, sqs: aws_sdk_sqs::Client, region: String) {
        for n in 0..self.pollers {
            let mapping = self.clone();
            let sqs = sqs.clone();
            let region = region.clone();
            let name = format!("SQS poller {n} of {}", self.function.id);
            crate::tasks::supervise(name, move || {
                let (mapping, sqs, region) = (mapping.clone(), sqs.clone(), region.clone());
                async move {
                    let mut throttled = 0u32;
                    loop {
                        match mapping.poll_once(&sqs, &region).await {
                            Ok(Polled::Throttled) => {
                                // Lambda's pollers back off while the function is throttled; the
                                // batch returns to the queue after its visibility timeout, and
                                // that receive counts toward maxReceiveCount.
                                throttled = (throttled + 1).min(6);
                                tokio::time::sleep(Duration::from_millis(100 << throttled)).await;
                            }
                            Ok(Polled::Done) => throttled = 0,
                            Err(error) => {
                                tracing::warn!(function = %mapping.function.id, error = %format!("{error:#}"), "SQS poll failed");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                }
            });
        }
    }

    async fn receive(
        &self,
        sqs: &aws_sdk_sqs::Client,
        max: usize,
        wait: i32,
    ) -> Result<Vec<Message>> {
        let out = sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?;
        Ok(out.messages.unwrap_or_default())
    }

    /// Gathers one batch, invokes the function, deletes what succeeded.
    async fn poll_once(&self, sqs: &aws_sdk_sqs::Client, region: &str) -> Result<Polled> {
        let mut batch = self.receive(sqs, self.batch_size, 1).await?;
        if batch.is_empty() {
            return Ok(Polled::Done);
        }
        let deadline = Instant::now() + self.batching_window;
        while batch.len() < self.batch_size && Instant::now() < deadline {
            let more = self.receive(sqs, self.batch_size - batch.len(), 0).await?;
            if more.is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            batch.extend(more);
        }
        let event = sqs_event(&batch, &self.queue_arn, region);
        let outcome = self.function.invoke(event).await;
        let failed: HashSet<String> = match outcome {
            Err(error @ InvokeError::Throttled { .. }) => {
                tracing::warn!(function = %self.function.id, error = %error, batch = batch.len(), "throttled; the batch returns to the queue");
                return Ok(Polled::Throttled);
            }
            Err(error) => {
                tracing::warn!(function = %self.function.id, error = %error, batch = batch.len(), "function error; whole batch returns to the queue");
                return Ok(Polled::Done);
            }
            Ok(_) if !self.report_batch_item_failures => HashSet::new(),
            Ok(answer) => match failures(&answer, &batch) {
                Some(failed) => failed,
                None => {
                    tracing::warn!(function = %self.function.id, "invalid batchItemFailures; whole batch returns to the queue");
                    return Ok(Polled::Done);
                }
            },
        };
        let done: Vec<&Message> = batch
            .iter()
            .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
            .collect();
        tracing::debug!(function = %self.function.id, succeeded = done.len(), failed = failed.len(), "batch processed");
        for chunk in done.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await?;
            if !out.failed().is_empty() {
                tracing::warn!(
                    failed = out.failed().len(),
                    "some deletes failed; those messages will be delivered again"
                );
            }
        }
        Ok(Polled::Done)
    }
}

/// What one poll came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polled {
    /// A batch was handled, or there was none.
    Done,
    /// The function was throttled: back off.
    Throttled,
}

/// The failed message ids of a partial batch response, or `None` when the response would make
/// Lambda fail the whole batch (an identifier that is empty or not in the batch, or a malformed
/// list). A missing or null `batchItemFailures` means every record succeeded.
pub fn failures(answer: &Value, batch: &[Message]) -> Option<HashSet<String>> {
    let ids: HashSet<&str> = batch.iter().filter_map(|m| m.message_id()).collect();
    let list = match answer.get("batchItemFailures") {
        None | Some(Value::Null) => return Some(HashSet::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return None,
    };
    let mut failed = HashSet::new();
    for item in list {
        let id = item.get("itemIdentifier").and_then(Value::as_str)?;
        if id.is_empty() || !ids.contains(id) {
            return None;
        }
        failed.insert(id.to_owned());
    }
    Some(failed)
}

/// The SQS event Lambda would send for `batch`.
pub fn sqs_event(batch: &[Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = batch
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            let mut attribute = json!({
                                "stringValue": v.string_value(),
                                "dataType": v.data_type(),
                                "stringListValues": [],
                                "binaryListValues": []
                            });
                            // Binary values travel base64-encoded, as Lambda sends them.
                            if let Some(blob) = v.binary_value() {
                                attribute["binaryValue"] = json!(
                                    base64::engine::general_purpose::STANDARD.encode(blob.as_ref())
                                );
                            }
                            (k.clone(), attribute)
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ids: &[&str]) -> Vec<Message> {
        ids.iter()
            .map(|id| Message::builder().message_id(*id).build())
            .collect()
    }

    #[test]
    fn maximum_concurrency_bounds_the_pollers_as_lambda_validates_it() {
        assert_eq!(max_concurrency(&json!({})).ok(), Some(DEFAULT_POLLERS));
        let with = |n: Value| max_concurrency(&json!({"ScalingConfig": {"MaximumConcurrency": n}}));
        assert_eq!(with(json!(2)).ok(), Some(2));
        assert_eq!(with(json!("40")).ok(), Some(40));
        for bad in [json!(1), json!(1001), json!("many")] {
            let error = with(bad.clone()).expect_err("refused").to_string();
            assert!(error.contains("between 2 and 1000"), "{bad}: {error}");
        }
    }

    #[test]
    fn partial_batch_response_lists_failed_ids() {
        let answer = json!({"batchItemFailures": [{"itemIdentifier": "b"}]});
        let failed = failures(&answer, &batch(&["a", "b"])).expect("valid");
        assert_eq!(failed, HashSet::from(["b".to_owned()]));
    }

    #[test]
    fn missing_or_empty_list_means_all_succeeded() {
        assert_eq!(failures(&json!({}), &batch(&["a"])), Some(HashSet::new()));
        assert_eq!(
            failures(&json!({"batchItemFailures": []}), &batch(&["a"])),
            Some(HashSet::new())
        );
    }

    #[test]
    fn empty_or_unknown_identifier_fails_the_whole_batch() {
        let b = batch(&["a"]);
        assert_eq!(
            failures(&json!({"batchItemFailures": [{"itemIdentifier": ""}]}), &b),
            None
        );
        assert_eq!(
            failures(
                &json!({"batchItemFailures": [{"itemIdentifier": "zzz"}]}),
                &b
            ),
            None
        );
        assert_eq!(failures(&json!({"batchItemFailures": "a"}), &b), None);
    }

    #[test]
    fn event_carries_body_attributes_and_source() {
        let m = Message::builder()
            .message_id("m1")
            .receipt_handle("r1")
            .body("{}")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .build();
        let event = sqs_event(&[m], "arn:q", "us-east-1");
        let record = &event["Records"][0];
        assert_eq!(record["messageId"], "m1");
        assert_eq!(record["eventSourceARN"], "arn:q");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
        let parsed: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_value(event).expect("deserialises as Lambda's SQS event");
        assert_eq!(parsed.records[0].body.as_deref(), Some("{}"));
    }

    #[test]
    fn event_carries_message_attributes_in_lambdas_shape() {
        use aws_sdk_sqs::primitives::Blob;
        use aws_sdk_sqs::types::MessageAttributeValue;
        let string = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("req-1")
            .build()
            .expect("attribute");
        let binary = MessageAttributeValue::builder()
            .data_type("Binary")
            .binary_value(Blob::new(vec![0u8, 1]))
            .build()
            .expect("attribute");
        let m = Message::builder()
            .message_id("m1")
            .body("{}")
            .message_attributes("requestId", string)
            .message_attributes("blob", binary)
            .build();
        let event = sqs_event(&[m], "arn:q", "us-east-1");
        let attributes = &event["Records"][0]["messageAttributes"];
        assert_eq!(
            attributes["requestId"],
            json!({"stringValue": "req-1", "dataType": "String", "stringListValues": [], "binaryListValues": []})
        );
        assert_eq!(attributes["blob"]["binaryValue"], "AAE=");
        let parsed: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_value(event).expect("deserialises as Lambda's SQS event");
        assert_eq!(
            parsed.records[0].message_attributes["requestId"]
                .string_value
                .as_deref(),
            Some("req-1")
        );
    }
}
