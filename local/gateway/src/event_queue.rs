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
//!
//! The queue is durable, as Lambda's is: with a journal folder ([`EventQueue::with_journal`])
//! every accepted event is written to `<request id>.json` there before [`EventQueue::invoke`]
//! answers, its attempts are updated as they are made, and the file is removed once the event is
//! done with (succeeded, or handed to its on-failure destination, or discarded). A gateway
//! started again resumes every journaled event ([`EventQueue::resume`]): its age counts from
//! when it was first queued, its attempts are kept, and an attempt the stop interrupted counts
//! as a failed one, retried once it would have timed out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
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
    /// Folder of the journal (one file per queued event); none: the queue is in memory only.
    journal: Option<PathBuf>,
}

/// Why an event was not queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The ARN names no function of the stack.
    #[error("no function {0} in the stack")]
    UnknownFunction(String),
    /// The journal could not hold the event: it is not accepted (no acknowledgement without
    /// the queue's receipt).
    #[error("the event could not be journaled")]
    Journal(#[source] anyhow::Error),
}

/// One queued event as the journal holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Journaled {
    /// The function's ARN.
    pub function_arn: String,
    /// The event.
    pub payload: Value,
    /// The request id every attempt runs under.
    pub request_id: String,
    /// When the event was first queued, in seconds since the epoch: its age counts from here.
    pub queued_at: f64,
    /// Attempts made so far (throttles are not attempts).
    pub attempts: u32,
    /// When the attempt under way started, in seconds since the epoch; none between attempts.
    #[serde(default)]
    pub running_since: Option<f64>,
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The journal file of the event `request_id` in `dir`.
fn journal_file(dir: &Path, request_id: &str) -> PathBuf {
    dir.join(format!("{request_id}.json"))
}

fn iso_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    aws_sdk_eventbridge::primitives::DateTime::from_secs_f64(now.as_secs_f64())
        .fmt(aws_sdk_eventbridge::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// The wait after the `throttles`-th throttle of one event. Lambda waits 1 s after the first and
/// doubles the wait up to 5 minutes (invocation-async-error-handling.html), on the scale where
/// its first function-error retry comes after a minute. `retry_unit` is that minute here (1 s
/// locally unless `--async-retry-seconds` says otherwise), so the throttle waits keep Lambda's
/// proportions: a 60th of the unit, doubling, at most 5 units. With the unwrapped waits (1 s to
/// 5 min beside 1 s retries), a burst of events above a function's concurrency came back
/// together every few minutes, a concurrency's worth at a time, and `make chaos` drained for
/// half an hour.
fn throttle_wait(retry_unit: Duration, throttles: u32) -> Duration {
    let first = retry_unit.div_f64(60.0);
    first
        .mul_f64(f64::from(1u32 << throttles.saturating_sub(1).min(16)))
        .min(retry_unit * 5)
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
            journal: None,
        }
    }

    /// The same queue, journaled in `dir`: accepted events survive the gateway.
    pub fn with_journal(mut self, dir: PathBuf) -> Self {
        self.journal = Some(dir);
        self
    }

    /// Writes `entry` to the journal (nothing without one).
    fn journal_write(&self, entry: &Journaled) -> anyhow::Result<()> {
        match &self.journal {
            Some(dir) => crate::durable::write_json(&journal_file(dir, &entry.request_id), entry),
            None => Ok(()),
        }
    }

    /// Writes `entry` to the journal, logging a failure: the event goes on in memory.
    fn journal_update(&self, entry: &Journaled) {
        if let Err(error) = self.journal_write(entry) {
            tracing::error!(request_id = %entry.request_id, error = %format!("{error:#}"), "cannot update the journal of an asynchronous invoke");
        }
    }

    /// Removes the event from the journal: it is done with.
    fn journal_remove(&self, request_id: &str) {
        if let Some(dir) = &self.journal {
            let file = journal_file(dir, request_id);
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::error!(request_id, file = %file.display(), error = %error, "cannot remove a finished asynchronous invoke from the journal")
                }
            }
        }
    }

    /// Resumes every event the journal holds (those a previous gateway accepted and did not
    /// finish); returns how many. Events of functions the stack no longer has are dropped.
    pub fn resume(self: &Arc<Self>) -> usize {
        let Some(dir) = &self.journal else {
            return 0;
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return 0,
            Err(error) => {
                tracing::error!(dir = %dir.display(), error = %error, "cannot read the journal of asynchronous invokes");
                return 0;
            }
        };
        let mut resumed = 0;
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                // A write the stop cut short: its event was never acknowledged.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let entry = match crate::durable::read_json::<Journaled>(&path) {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "journaled asynchronous invoke unreadable; dropped");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let Some((function, config)) = self
                .functions
                .get(entry.function_arn.trim_end_matches(":$LATEST"))
                .cloned()
            else {
                tracing::warn!(request_id = %entry.request_id, function = %entry.function_arn, "journaled asynchronous invoke of a function the stack no longer has; dropped");
                let _ = std::fs::remove_file(&path);
                continue;
            };
            tracing::info!(function = %function.id, request_id = %entry.request_id, attempts = entry.attempts, interrupted = entry.running_since.is_some(), "resuming a queued asynchronous invoke");
            let this = self.clone();
            tokio::spawn(async move { this.run(function, config, entry).await });
            resumed += 1;
        }
        resumed
    }

    /// Whether `arn` names a function of the stack.
    pub fn knows(&self, arn: &str) -> bool {
        self.functions
            .contains_key(arn.trim_end_matches(":$LATEST"))
    }

    /// Queues an asynchronous invoke of `arn` with `payload`; returns its request id once the
    /// event is queued (journaled, when the queue has a journal).
    pub fn invoke(self: &Arc<Self>, arn: &str, payload: Value) -> Result<String, QueueError> {
        let (function, config) = self
            .functions
            .get(arn.trim_end_matches(":$LATEST"))
            .ok_or_else(|| QueueError::UnknownFunction(arn.to_owned()))?
            .clone();
        let entry = Journaled {
            function_arn: function.arn.clone(),
            payload,
            request_id: uuid::Uuid::new_v4().to_string(),
            queued_at: epoch_seconds(),
            attempts: 0,
            running_since: None,
        };
        self.journal_write(&entry).map_err(QueueError::Journal)?;
        crate::cloudwatch::feed::async_event(&function.name, false);
        let request_id = entry.request_id.clone();
        let this = self.clone();
        tokio::spawn(async move { this.run(function, config, entry).await });
        Ok(request_id)
    }

    async fn run(self: Arc<Self>, function: Arc<Function>, config: AsyncConfig, entry: Journaled) {
        let request_id = entry.request_id.clone();
        self.process(&function, &config, entry).await;
        self.journal_remove(&request_id);
    }

    /// Tries the event until it succeeds or is given up on, then delivers its record.
    async fn process(
        self: &Arc<Self>,
        function: &Arc<Function>,
        config: &AsyncConfig,
        mut entry: Journaled,
    ) {
        let (payload, request_id) = (entry.payload.clone(), entry.request_id.clone());
        let mut throttles = 0u32;
        let mut last_error: Option<FunctionError> = None;
        let condition = 'outcome: {
            if let Some(since) = entry.running_since.take() {
                // The gateway stopped during an attempt, and its environment with it: a failed
                // attempt, which Lambda would have seen end by its timeout at the latest (so a
                // lease the attempt took has expired when the retry runs).
                entry.attempts += 1;
                tracing::warn!(function = %function.id, request_id = %request_id, attempt = entry.attempts, "asynchronous invoke interrupted by the gateway's stop");
                last_error = Some(FunctionError::new(
                    "Runtime.ExitError",
                    "the execution environment stopped during the invocation",
                ));
                self.journal_update(&entry);
                if entry.attempts > config.max_retries {
                    break 'outcome "RetriesExhausted";
                }
                let timed_out = since + function.timeout.as_secs_f64() - epoch_seconds();
                let wait =
                    Duration::from_secs_f64(timed_out.max(0.0)) + self.retry_unit * entry.attempts;
                tokio::time::sleep(wait).await;
            }
            loop {
                if epoch_seconds() - entry.queued_at > config.max_age.as_secs_f64() {
                    break 'outcome "EventAgeExceeded";
                }
                entry.running_since = Some(epoch_seconds());
                self.journal_update(&entry);
                // One request id for every attempt, as Lambda keeps it.
                let answer = function.invoke_as(payload.clone(), &request_id).await;
                entry.running_since = None;
                match answer {
                    Err(InvokeError::Throttled { reason }) => {
                        // Throttles return the event to Lambda's queue: retried with a growing wait
                        // ([`throttle_wait`]) until the event's maximum age, and not counted as a
                        // retry attempt (invocation-async-error-handling.html).
                        throttles += 1;
                        tracing::warn!(function = %function.id, request_id = %request_id, reason, "asynchronous invoke throttled; queued again");
                        self.journal_update(&entry);
                        tokio::time::sleep(throttle_wait(self.retry_unit, throttles)).await;
                        continue;
                    }
                    Ok(answer) => {
                        entry.attempts += 1;
                        tracing::info!(function = %function.id, request_id = %request_id, attempts = entry.attempts, "asynchronous invoke succeeded");
                        if let Some(destination) = &config.on_success {
                            let record = self.record(
                                function,
                                &request_id,
                                "Success",
                                entry.attempts,
                                &payload,
                                None,
                                Some(answer),
                            );
                            self.deliver(destination, record, false).await;
                        }
                        return;
                    }
                    Err(InvokeError::Function(error)) => {
                        entry.attempts += 1;
                        tracing::warn!(function = %function.id, request_id = %request_id, attempt = entry.attempts, error = %error, "asynchronous invoke failed");
                        last_error = Some(error);
                        self.journal_update(&entry);
                        if entry.attempts > config.max_retries {
                            break 'outcome "RetriesExhausted";
                        }
                        tokio::time::sleep(self.retry_unit * entry.attempts).await;
                    }
                }
            }
        };
        let record = self.record(
            function,
            &request_id,
            condition,
            entry.attempts,
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
                .map_err(|error| format!("{:#}", anyhow::Error::from(error)))
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
    fn throttle_waits_keep_lambdas_proportions_on_the_local_scale() {
        let minute = Duration::from_secs(60);
        // On Lambda's own scale (a minute before the first retry): 1 s, 2 s, 4 s ... 5 min.
        assert_eq!(throttle_wait(minute, 1), Duration::from_secs(1));
        assert_eq!(throttle_wait(minute, 2), Duration::from_secs(2));
        assert_eq!(throttle_wait(minute, 9), Duration::from_secs(256));
        assert_eq!(throttle_wait(minute, 10), Duration::from_secs(300));
        assert_eq!(throttle_wait(minute, 1000), Duration::from_secs(300));
        // Locally (a second): the same shape, sixty times shorter.
        let second = Duration::from_secs(1);
        assert_eq!(throttle_wait(second, 10), Duration::from_secs(5));
        assert!(throttle_wait(second, 1) < Duration::from_millis(20));
    }

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
