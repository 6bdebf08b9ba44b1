//! Emulation of Lambda's asynchronous invocation (`InvocationType: Event`), as each function's
//! `EventInvokeConfig` declares it.
//!
//! An invoke is queued and answered at once; the function then runs in the background. On a
//! function error Lambda retries up to `MaximumRetryAttempts` (default 2), waiting between tries
//! (about 1 and 2 minutes in AWS; 1 and 2 seconds × `--async-retry-scale` locally), and gives up
//! early once the event is older than `MaximumEventAgeInSeconds`. Then it sends a destination
//! record (`requestContext`, `requestPayload`, `responseContext`, `responsePayload`) to
//! `DestinationConfig.OnFailure`: another function (invoked asynchronously in turn), an
//! EventBridge bus (`PutEvents` in moto, as `source: lambda`, `detail-type: Lambda Function
//! Invocation Result - Failure`) or an SQS queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cfn::scalar_to_string;
use crate::functions::{Function, FunctionError, InvokeError};

/// `EventInvokeConfig` of one function.
#[derive(Debug, Clone, PartialEq)]
pub struct AsyncConfig {
    /// Retries after the first try (0-2, default 2).
    pub max_retries: u32,
    /// Age after which an event is not tried again (default 6 hours).
    pub max_age: Duration,
    /// `DestinationConfig.OnFailure.Destination`.
    pub on_failure: Option<String>,
    /// `DestinationConfig.OnSuccess.Destination`.
    pub on_success: Option<String>,
}

impl AsyncConfig {
    /// Reads `EventInvokeConfig` from a function's resolved properties.
    pub fn from_properties(properties: &Value) -> Self {
        let config = &properties["EventInvokeConfig"];
        let number = |key: &str, default: u64| {
            config
                .get(key)
                .map(scalar_to_string)
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let destination = |kind: &str| {
            config
                .pointer(&format!("/DestinationConfig/{kind}/Destination"))
                .map(scalar_to_string)
        };
        Self {
            max_retries: number("MaximumRetryAttempts", 2).min(2) as u32,
            max_age: Duration::from_secs(number("MaximumEventAgeInSeconds", 21_600)),
            on_failure: destination("OnFailure"),
            on_success: destination("OnSuccess"),
        }
    }
}

/// Runs asynchronous invokes for every function of the local stack.
#[derive(Debug)]
pub struct EventQueue {
    functions: HashMap<String, (Arc<Function>, AsyncConfig)>,
    queues_by_arn: HashMap<String, String>,
    sqs: aws_sdk_sqs::Client,
    events: aws_sdk_eventbridge::Client,
    retry_unit: Duration,
}

fn iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    aws_sdk_eventbridge::primitives::DateTime::from_secs_f64(now.as_secs_f64())
        .fmt(aws_sdk_eventbridge::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default()
}

impl EventQueue {
    /// An invoker for `functions`; `retry_unit` is the wait before the first retry (doubled
    /// before the second).
    pub fn new(
        functions: &[Arc<Function>],
        queues_by_arn: HashMap<String, String>,
        sqs: aws_sdk_sqs::Client,
        events: aws_sdk_eventbridge::Client,
        retry_unit: Duration,
    ) -> Self {
        Self {
            functions: functions
                .iter()
                .map(|f| {
                    (
                        f.arn.clone(),
                        (f.clone(), AsyncConfig::from_properties(&f.properties)),
                    )
                })
                .collect(),
            queues_by_arn,
            sqs,
            events,
            retry_unit,
        }
    }

    /// Whether `arn` names a function of the stack.
    pub fn knows(&self, arn: &str) -> bool {
        self.functions
            .contains_key(arn.trim_end_matches(":$LATEST"))
    }

    /// Queues an asynchronous invoke of `arn` with `payload`; returns its request id at once.
    pub fn invoke(self: &Arc<Self>, arn: &str, payload: Value) -> Option<String> {
        let (function, config) = self
            .functions
            .get(arn.trim_end_matches(":$LATEST"))?
            .clone();
        let request_id = uuid::Uuid::new_v4().to_string();
        crate::cloudwatch::feed::async_event(&function.name, false);
        let this = self.clone();
        let id = request_id.clone();
        tokio::spawn(async move { this.run(function, config, payload, id).await });
        Some(request_id)
    }

    async fn run(
        self: Arc<Self>,
        function: Arc<Function>,
        config: AsyncConfig,
        payload: Value,
        request_id: String,
    ) {
        let queued = Instant::now();
        let mut attempts = 0u32;
        let mut throttles = 0u32;
        let mut last_error: Option<FunctionError> = None;
        let condition = loop {
            if queued.elapsed() > config.max_age {
                break "EventAgeExceeded";
            }
            // One request id for every attempt, as Lambda keeps it.
            match function.invoke_as(payload.clone(), &request_id).await {
                Err(InvokeError::Throttled { reason }) => {
                    // Throttles return the event to Lambda's queue: retried with a growing wait
                    // (1 s up to 5 min) until the event's maximum age, and not counted as a
                    // retry attempt (invocation-async-error-handling.html).
                    throttles += 1;
                    let wait = self
                        .retry_unit
                        .mul_f64(f64::from(1u32 << throttles.min(8)) / 2.0);
                    tracing::warn!(function = %function.id, request_id = %request_id, reason, "asynchronous invoke throttled; queued again");
                    tokio::time::sleep(wait.min(Duration::from_secs(300))).await;
                    continue;
                }
                Ok(answer) => {
                    attempts += 1;
                    tracing::info!(function = %function.id, request_id = %request_id, attempts, "asynchronous invoke succeeded");
                    if let Some(destination) = &config.on_success {
                        let record = self.record(
                            &function,
                            &request_id,
                            "Success",
                            attempts,
                            &payload,
                            None,
                            Some(answer),
                        );
                        self.deliver(destination, record, false).await;
                    }
                    return;
                }
                Err(InvokeError::Function(error)) => {
                    attempts += 1;
                    tracing::warn!(function = %function.id, request_id = %request_id, attempt = attempts, error = %error, "asynchronous invoke failed");
                    last_error = Some(error);
                    if attempts > config.max_retries {
                        break "RetriesExhausted";
                    }
                    tokio::time::sleep(self.retry_unit * attempts).await;
                }
            }
        };
        let record = self.record(
            &function,
            &request_id,
            condition,
            attempts,
            &payload,
            last_error.as_ref(),
            None,
        );
        // AsyncEventsDropped counts every event given up on, those then sent to an on-failure
        // destination too ("events are sent there before they're dropped", lambda developer
        // guide, monitoring-metrics-types).
        crate::cloudwatch::feed::async_event(&function.name, true);
        match &config.on_failure {
            Some(destination) => self.deliver(destination, record, true).await,
            None => {
                tracing::error!(function = %function.id, request_id = %request_id, condition, "event discarded: no on-failure destination")
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        function: &Function,
        request_id: &str,
        condition: &str,
        attempts: u32,
        payload: &Value,
        error: Option<&FunctionError>,
        answer: Option<Value>,
    ) -> Value {
        let failed = error.is_some();
        json!({
            "version": "1.0",
            "timestamp": iso_now(),
            "requestContext": {
                "requestId": request_id,
                "functionArn": format!("{}:$LATEST", function.arn),
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "requestPayload": payload,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": if failed { json!("Unhandled") } else { Value::Null },
            },
            "responsePayload": match (error, answer) {
                (Some(e), _) => e.payload(),
                (None, Some(a)) => a,
                (None, None) => Value::Null,
            },
        })
    }

    async fn deliver(self: &Arc<Self>, destination: &str, record: Value, failure: bool) {
        // The function whose record this is (`...:function:<name>:$LATEST`).
        let source = record["requestContext"]["functionArn"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches(":$LATEST")
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let outcome = if destination.starts_with("arn:aws:lambda:") {
            self.invoke(destination, record)
                .map(|_| ())
                .ok_or_else(|| format!("no function {destination} in the stack"))
        } else if let Some((_, bus)) = destination.split_once(":event-bus/") {
            let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .event_bus_name(bus)
                .source("lambda")
                .detail_type(if failure {
                    "Lambda Function Invocation Result - Failure"
                } else {
                    "Lambda Function Invocation Result - Success"
                })
                .detail(record.to_string())
                .resources(
                    record["requestContext"]["functionArn"]
                        .as_str()
                        .unwrap_or_default(),
                )
                .build();
            match self.events.put_events().entries(entry).send().await {
                Ok(out) if out.failed_entry_count() == 0 => Ok(()),
                Ok(_) => Err("PutEvents rejected the entry".to_owned()),
                Err(e) => Err(aws_sdk_eventbridge::error::DisplayErrorContext(&e).to_string()),
            }
        } else if let Some(url) = self.queues_by_arn.get(destination) {
            self.sqs
                .send_message()
                .queue_url(url)
                .message_body(record.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
        } else {
            Err(format!("destination {destination} is not served locally"))
        };
        match outcome {
            Ok(()) => tracing::info!(destination, failure, "destination record delivered"),
            Err(error) => {
                crate::cloudwatch::feed::destination_delivery_failure(&source);
                tracing::error!(destination, error = %error, "destination record lost")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_invoke_config_defaults_and_overrides() {
        let defaults = AsyncConfig::from_properties(&json!({}));
        assert_eq!(defaults.max_retries, 2);
        assert_eq!(defaults.max_age, Duration::from_secs(21_600));
        let set = AsyncConfig::from_properties(&json!({"EventInvokeConfig": {
            "MaximumRetryAttempts": "0", "MaximumEventAgeInSeconds": "60",
            "DestinationConfig": {"OnFailure": {"Type": "Lambda", "Destination": "arn:aws:lambda:r:a:function:f"}}}}));
        assert_eq!((set.max_retries, set.max_age.as_secs()), (0, 60));
        assert_eq!(
            set.on_failure.as_deref(),
            Some("arn:aws:lambda:r:a:function:f")
        );
    }
}
