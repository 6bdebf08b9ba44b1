//! `make status`: the health of the running local stack, per pattern.
//!
//! The gateway answers `GET /_local/status` on its Lambda endpoint with a JSON [`Status::snapshot`]
//! (request counts, queue depth, in flight, oldest message age, dead-letter depth, iterator age,
//! alarm states, and per function invocations, errors, throttles, cold starts, p50 and p99
//! duration), from the same metrics its alarms evaluate. [`render`] prints it as tables;
//! `local-gateway status` fetches and prints it (`--watch` every two seconds).

use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::cloudwatch::alarm::Statistic;
use crate::cloudwatch::engine::Alarms;
use crate::cloudwatch::feed::LAMBDA;
use crate::cloudwatch::sampler::SQS;
use crate::cloudwatch::store::{self, MetricId};
use crate::functions::Function;

/// An API of a pattern.
#[derive(Debug, Clone)]
pub struct ApiView {
    /// Logical id.
    pub logical: String,
    /// A REST API (else an HTTP API).
    pub rest: bool,
    /// `ApiName` (REST) or `ApiId` (HTTP).
    pub api: String,
    /// Stage.
    pub stage: String,
}

/// A queue of a pattern.
#[derive(Debug, Clone)]
pub struct QueueView {
    /// Logical id.
    pub logical: String,
    /// Queue name.
    pub name: String,
    /// Whether another queue redrives to it.
    pub dead_letter: bool,
}

/// What one pattern shows.
#[derive(Debug)]
pub struct PatternView {
    /// Stack path (`Orders`).
    pub key: String,
    /// Its APIs.
    pub apis: Vec<ApiView>,
    /// Its queues.
    pub queues: Vec<QueueView>,
    /// Its functions.
    pub functions: Vec<Arc<Function>>,
    /// Physical names of its functions that read a stream.
    pub stream_consumers: Vec<String>,
}

/// The whole stack's view.
#[derive(Debug)]
pub struct Status {
    /// Per pattern.
    pub patterns: Vec<PatternView>,
    /// The alarms.
    pub alarms: Arc<Alarms>,
}

fn total(id: &MetricId) -> f64 {
    store::global().totals(id).0
}

fn latest(id: &MetricId) -> Value {
    store::global().latest(id).map_or(Value::Null, |v| json!(v))
}

impl Status {
    /// The stack's health now.
    pub fn snapshot(&self) -> Value {
        let patterns: Vec<Value> = self
            .patterns
            .iter()
            .map(|p| {
                let apis: Vec<Value> = p
                    .apis
                    .iter()
                    .map(|a| {
                        let dims = [
                            (if a.rest { "ApiName" } else { "ApiId" }, a.api.as_str()),
                            ("Stage", a.stage.as_str()),
                        ];
                        let m = |name: &str| MetricId::new("AWS/ApiGateway", name, &dims);
                        let (four, five) = if a.rest {
                            ("4XXError", "5XXError")
                        } else {
                            ("4xx", "5xx")
                        };
                        json!({
                            "api": a.logical,
                            "requests": total(&m("Count")),
                            "4xx": total(&m(four)),
                            "5xx": total(&m(five)),
                        })
                    })
                    .collect();
                let queues: Vec<Value> = p
                    .queues
                    .iter()
                    .map(|q| {
                        let m = |name: &str| MetricId::new(SQS, name, &[("QueueName", &q.name)]);
                        json!({
                            "queue": q.logical,
                            "deadLetter": q.dead_letter,
                            "visible": latest(&m("ApproximateNumberOfMessagesVisible")),
                            "inFlight": latest(&m("ApproximateNumberOfMessagesNotVisible")),
                            "oldestAgeSeconds": latest(&m("ApproximateAgeOfOldestMessage")),
                        })
                    })
                    .collect();
                let functions: Vec<Value> = p
                    .functions
                    .iter()
                    .map(|f| {
                        let m =
                            |name: &str| MetricId::new(LAMBDA, name, &[("FunctionName", &f.name)]);
                        let durations = store::global().kept(&m("Duration"));
                        let pct = |p: f64| {
                            Statistic::Percentile(p)
                                .of(&durations)
                                .map_or(Value::Null, |v| json!(v))
                        };
                        let (environments, cold_starts) = f.environment_counts();
                        let mut view = json!({
                            "function": f.id.rsplit('.').next().unwrap_or(&f.id),
                            "invocations": total(&m("Invocations")),
                            "errors": total(&m("Errors")),
                            "throttles": total(&m("Throttles")),
                            "coldStarts": cold_starts,
                            "environments": environments,
                            "p50Ms": pct(50.0),
                            "p99Ms": pct(99.0),
                        });
                        if p.stream_consumers.contains(&f.name) {
                            view["iteratorAgeMs"] = latest(&m("IteratorAge"));
                        }
                        view
                    })
                    .collect();
                let prefix = format!("{}.", p.key);
                let alarms: Vec<Value> = self
                    .alarms
                    .alarms
                    .iter()
                    .filter(|a| {
                        a.id.starts_with(&prefix) || (p.key.is_empty() && !a.id.contains('.'))
                    })
                    .map(|a| {
                        let (state, reason) = a.state();
                        json!({
                            "alarm": a.id.rsplit('.').next().unwrap_or(&a.id),
                            "state": state.as_str(),
                            "reason": reason,
                        })
                    })
                    .collect();
                json!({
                    "pattern": p.key,
                    "apis": apis,
                    "queues": queues,
                    "functions": functions,
                    "alarms": alarms,
                })
            })
            .collect();
        json!({ "patterns": patterns })
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            Some(f) => format!("{f:.1}"),
            None => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

fn table(out: &mut String, rows: &[Value], columns: &[(&str, &str)]) {
    if rows.is_empty() {
        return;
    }
    let mut grid: Vec<Vec<String>> = vec![columns.iter().map(|(_, h)| (*h).to_owned()).collect()];
    for row in rows {
        grid.push(columns.iter().map(|(k, _)| cell(&row[*k])).collect());
    }
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for (n, row) in grid.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        let _ = writeln!(out, "    {}", line.join("  "));
        if n == 0 {
            let _ = writeln!(out, "    {}", "-".repeat(line.join("  ").chars().count()));
        }
    }
}

/// The snapshot as text: one block per pattern.
pub fn render(snapshot: &Value) -> String {
    let mut out = String::new();
    let rows = |p: &Value, key: &str| p[key].as_array().cloned().unwrap_or_default();
    for p in snapshot["patterns"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "{}", cell(&p["pattern"]));
        table(
            &mut out,
            &rows(p, "apis"),
            &[
                ("api", "api"),
                ("requests", "requests"),
                ("4xx", "4xx"),
                ("5xx", "5xx"),
            ],
        );
        table(
            &mut out,
            &rows(p, "queues"),
            &[
                ("queue", "queue"),
                ("deadLetter", "dead-letter"),
                ("visible", "visible"),
                ("inFlight", "in flight"),
                ("oldestAgeSeconds", "oldest (s)"),
            ],
        );
        let functions = rows(p, "functions");
        let mut columns = vec![
            ("function", "function"),
            ("invocations", "invocations"),
            ("errors", "errors"),
            ("throttles", "throttles"),
            ("coldStarts", "cold starts"),
            ("p50Ms", "p50 (ms)"),
            ("p99Ms", "p99 (ms)"),
        ];
        if functions.iter().any(|f| f.get("iteratorAgeMs").is_some()) {
            columns.push(("iteratorAgeMs", "iterator age (ms)"));
        }
        table(&mut out, &functions, &columns);
        table(
            &mut out,
            &rows(p, "alarms"),
            &[("alarm", "alarm"), ("state", "state")],
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_renders_as_aligned_tables() {
        let snapshot = json!({"patterns": [{
            "pattern": "Orders",
            "apis": [{"api": "HttpApi", "requests": 12.0, "4xx": 1.0, "5xx": 0.0}],
            "queues": [{"queue": "DeadLetterQueue", "deadLetter": true, "visible": 2.0, "inFlight": 0.0, "oldestAgeSeconds": null}],
            "functions": [{"function": "ConsumerFunction", "invocations": 3.0, "errors": 1.0, "throttles": 0.0, "coldStarts": 1, "p50Ms": 12.25, "p99Ms": 40.0}],
            "alarms": [{"alarm": "DeadLetterQueueAlarm", "state": "ALARM"}],
        }]});
        let text = render(&snapshot);
        assert!(text.starts_with("Orders\n"), "{text}");
        assert!(
            text.contains("DeadLetterQueue          yes        2          0           -"),
            "{text}"
        );
        assert!(text.contains("ConsumerFunction"), "{text}");
        assert!(text.contains("12.2") || text.contains("12.3"), "{text}");
        assert!(text.contains("DeadLetterQueueAlarm  ALARM"), "{text}");
        assert!(!text.contains("iterator age"), "{text}");
    }
}
