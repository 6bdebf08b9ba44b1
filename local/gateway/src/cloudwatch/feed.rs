//! What feeds the metric store: the metrics AWS's services would publish, from what the gateway
//! sees, and the functions' own EMF documents.
//!
//! - `AWS/Lambda` (lambda developer guide, "Types of metrics for Lambda functions"):
//!   `Invocations`, `Errors`, `Throttles`, `Duration` per invoke; `IteratorAge` per stream
//!   invoke; `AsyncEventsReceived`, `AsyncEventsDropped`, `DestinationDeliveryFailures` from the
//!   asynchronous event queue and the event source mappings. Dimension `FunctionName`.
//! - `AWS/SQS` (SQS developer guide, "Available CloudWatch metrics for Amazon SQS"):
//!   `ApproximateNumberOfMessagesVisible`, `...NotVisible`, `...Delayed` and
//!   `ApproximateAgeOfOldestMessage`, sampled twice per local minute by [`sample_queues`].
//!   Dimension `QueueName`.
//! - `AWS/ApiGateway`: `Count`, `4XXError`/`5XXError` (REST, dimensions `ApiName`, `Stage`) or
//!   `4xx`/`5xx` (HTTP APIs, dimensions `ApiId`, `Stage`), and `Latency`, per request.
//! - Whatever namespace a function's EMF document names (CloudWatch user guide, "Specification:
//!   Embedded metric format"): [`emf`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::store::{MetricId, record};

/// `AWS/Lambda`.
pub const LAMBDA: &str = "AWS/Lambda";

fn lambda(name: &str, function: &str, value: f64) {
    record(
        MetricId::new(LAMBDA, name, &[("FunctionName", function)]),
        value,
    );
}

/// How one invoke ended, as Lambda counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invoked {
    /// The function answered.
    Answered,
    /// The function ran and failed (its error, a timeout, a crash).
    Failed,
    /// No environment was free: nothing ran.
    Throttled,
}

/// One invoke of `function` (physical name): `Invocations`, `Errors`, `Throttles`, `Duration`.
/// A throttled request is not an invocation (Lambda counts it in `Throttles` only).
pub fn invocation(function: &str, outcome: Invoked, duration: Duration) {
    match outcome {
        Invoked::Throttled => lambda("Throttles", function, 1.0),
        Invoked::Answered | Invoked::Failed => {
            lambda("Invocations", function, 1.0);
            lambda(
                "Errors",
                function,
                if outcome == Invoked::Failed { 1.0 } else { 0.0 },
            );
            lambda("Throttles", function, 0.0);
            lambda("Duration", function, duration.as_secs_f64() * 1000.0);
        }
    }
}

/// The age of the last record of a batch handed to `function`, in milliseconds.
pub fn iterator_age(function: &str, age_ms: f64) {
    lambda("IteratorAge", function, age_ms.max(0.0));
}

/// An asynchronous event of `function`: received, or dropped with nowhere to go.
pub fn async_event(function: &str, dropped: bool) {
    lambda(
        if dropped {
            "AsyncEventsDropped"
        } else {
            "AsyncEventsReceived"
        },
        function,
        1.0,
    );
}

/// A record of `function` that could not reach its destination.
pub fn destination_delivery_failure(function: &str) {
    lambda("DestinationDeliveryFailures", function, 1.0);
}

/// One API request: `Count`, the error counts and `Latency`. `rest`: a REST API (dimensions
/// `ApiName`, `Stage`; `4XXError`/`5XXError`), else an HTTP API (`ApiId`, `Stage`; `4xx`/`5xx`).
pub fn api_request(rest: bool, api: &str, stage: &str, status: u16, latency: Duration) {
    let dims: [(&str, &str); 2] = [
        (if rest { "ApiName" } else { "ApiId" }, api),
        ("Stage", stage),
    ];
    let put = |name: &str, value: f64| {
        record(MetricId::new("AWS/ApiGateway", name, &dims), value);
    };
    put("Count", 1.0);
    let (four, five) = if rest {
        ("4XXError", "5XXError")
    } else {
        ("4xx", "5xx")
    };
    put(four, f64::from(u8::from((400..500).contains(&status))));
    put(five, f64::from(u8::from(status >= 500)));
    put("Latency", latency.as_secs_f64() * 1000.0);
}

/// `router` with every request counted in `AWS/ApiGateway` as the API `api` (its name for a
/// REST API, its id for an HTTP API) at `stage`.
pub fn count_requests(
    router: axum::Router,
    rest: bool,
    api: String,
    stage: String,
) -> axum::Router {
    let names = std::sync::Arc::new((api, stage));
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let names = names.clone();
            async move {
                let began = std::time::Instant::now();
                let response = next.run(request).await;
                api_request(
                    rest,
                    &names.0,
                    &names.1,
                    response.status().as_u16(),
                    began.elapsed(),
                );
                response
            }
        },
    ))
}

/// The metrics of one EMF document (a log line that is a JSON object with
/// `_aws.CloudWatchMetrics`), each with every dimension set it declares; empty for any other
/// line. Values are the document's members named by the metrics: a number, or an array of
/// numbers (each a datapoint). A document that breaks the specification yields nothing from the
/// directive it breaks, as CloudWatch rejects it.
pub fn emf(line: &str) -> Vec<(MetricId, f64)> {
    let line = line.trim();
    if !line.starts_with('{') || !line.contains("CloudWatchMetrics") {
        return Vec::new();
    }
    let Ok(doc) = serde_json::from_str::<Value>(line) else {
        return Vec::new();
    };
    let Some(directives) = doc
        .pointer("/_aws/CloudWatchMetrics")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for directive in directives {
        let Some(namespace) = directive.get("Namespace").and_then(Value::as_str) else {
            continue;
        };
        let sets: Vec<Vec<&str>> = directive
            .get("Dimensions")
            .and_then(Value::as_array)
            .map(|sets| {
                sets.iter()
                    .filter_map(Value::as_array)
                    .map(|set| set.iter().filter_map(Value::as_str).collect())
                    .collect()
            })
            .unwrap_or_else(|| vec![Vec::new()]);
        for metric in directive
            .get("Metrics")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = metric.get("Name").and_then(Value::as_str) else {
                continue;
            };
            let values: Vec<f64> = match doc.get(name) {
                Some(Value::Number(n)) => n.as_f64().into_iter().collect(),
                Some(Value::Array(items)) => items.iter().filter_map(Value::as_f64).collect(),
                _ => Vec::new(),
            };
            for set in &sets {
                let dimensions: Option<BTreeMap<String, String>> = set
                    .iter()
                    .map(|d| {
                        doc.get(*d)
                            .and_then(Value::as_str)
                            .map(|v| ((*d).to_owned(), v.to_owned()))
                    })
                    .collect();
                let Some(dimensions) = dimensions else {
                    continue; // a dimension without a value: CloudWatch drops the set
                };
                for value in &values {
                    out.push((
                        MetricId {
                            namespace: namespace.to_owned(),
                            name: name.to_owned(),
                            dimensions: dimensions.clone(),
                        },
                        *value,
                    ));
                }
            }
        }
    }
    out
}

/// Records the metrics of `line` when it is an EMF document.
pub fn emf_line(line: &str) {
    for (id, value) in emf(line) {
        record(id, value);
    }
}

/// Records the EMF documents the functions write, from the gateway's log sink, for as long as
/// the gateway runs. A reader that falls behind the sink's backlog loses the oldest lines (a
/// warning counts them), as a metric extraction that fails loses datapoints, never the lines.
pub fn start_emf(mut lines: tokio::sync::broadcast::Receiver<std::sync::Arc<crate::logs::Line>>) {
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match lines.recv().await {
                Ok(line) if line.function.is_some() => emf_line(&line.text),
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "metrics fell behind the function logs; lines skipped"
                    )
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_document_gives_each_metric_per_dimension_set() {
        let line = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"AsyncApiPatterns","Dimensions":[["Pattern","Function"],["Pattern"]],"Metrics":[{"Name":"RecordsStored","Unit":"Count"},{"Name":"BatchWriteLatency","Unit":"Milliseconds"}]}]},"Pattern":"orders","Function":"consumer","RecordsStored":3,"BatchWriteLatency":[12.5,3]}"#;
        let got = emf(line);
        let stored: Vec<_> = got
            .iter()
            .filter(|(id, _)| id.name == "RecordsStored")
            .collect();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].0.dimensions.len(), 2);
        assert_eq!(stored[0].0.dimensions["Function"], "consumer");
        assert_eq!(stored[1].0.dimensions.len(), 1);
        assert_eq!(stored[0].1, 3.0);
        let latency: Vec<f64> = got
            .iter()
            .filter(|(id, _)| id.name == "BatchWriteLatency" && id.dimensions.len() == 2)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(latency, vec![12.5, 3.0]);
    }

    #[test]
    fn other_lines_and_broken_documents_give_nothing() {
        assert!(emf("START RequestId: x Version: $LATEST").is_empty());
        assert!(emf(r#"{"level":"INFO","message":"CloudWatchMetrics"}"#).is_empty());
        assert!(emf(r#"{"_aws":{"CloudWatchMetrics":"no"}}"#).is_empty());
        // A dimension the document does not carry drops that set only.
        let line = r#"{"_aws":{"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Missing"],[]],"Metrics":[{"Name":"M"}]}]},"M":"not a number"}"#;
        assert!(emf(line).is_empty());
        let line = r#"{"_aws":{"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["Missing"],[]],"Metrics":[{"Name":"M"}]}]},"M":2}"#;
        let got = emf(line);
        assert_eq!(got.len(), 1);
        assert!(got[0].0.dimensions.is_empty());
    }
}
