//! The platform's log lines of each invocation, as CloudWatch Logs shows them: `START`, `END` and
//! `REPORT` in the text format, `platform.start` and `platform.report` objects in the JSON format
//! (`LoggingConfig.LogFormat: JSON`). Lambda developer guide, monitoring-cloudwatchlogs.html and
//! monitoring-cloudwatchlogs-advanced.html (JSON log format).

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// `LoggingConfig.LogFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Plain lines (Lambda's default).
    Text,
    /// One JSON object per platform event.
    Json,
}

impl LogFormat {
    /// Reads `LoggingConfig.LogFormat` (`Text` when absent).
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("Text") => Ok(Self::Text),
            Some("JSON") => Ok(Self::Json),
            Some(other) => Err(format!(
                "LoggingConfig.LogFormat must be Text or JSON, got {other:?}"
            )),
        }
    }

    /// The value of `AWS_LAMBDA_LOG_FORMAT`.
    pub fn as_env(self) -> &'static str {
        match self {
            Self::Text => "Text",
            Self::Json => "JSON",
        }
    }
}

/// How an invocation ended, for `REPORT`'s status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The function answered (a response or a function error it reported itself).
    Success,
    /// Killed at its `Timeout`.
    Timeout,
    /// The platform failed the invocation: the runtime exited, init failed.
    Error(String),
}

/// What `REPORT` says of one invocation.
#[derive(Debug, Clone)]
pub struct Report {
    /// The invocation's request id.
    pub request_id: String,
    /// From the event's hand-over to the runtime's answer.
    pub duration: Duration,
    /// `Init Duration`: set on a cold start only.
    pub init: Option<Duration>,
    /// The function's `MemorySize`, in MB.
    pub memory_size_mb: u64,
    /// Peak resident memory of the execution environment so far, in MB.
    pub max_memory_used_mb: u64,
    /// How it ended.
    pub status: Status,
}

/// Billed milliseconds: the duration rounded up to the next millisecond, with the init phase
/// included (Lambda bills the INIT phase of on-demand functions since 2025-08-01, and always did
/// for OS-only runtimes such as `provided.al2023`).
pub fn billed_ms(duration: Duration, init: Option<Duration>) -> u64 {
    let total = duration + init.unwrap_or_default();
    let micros = total.as_micros();
    u64::try_from(micros.div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 100_000.0).round() / 100.0
}

fn iso(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    aws_sdk_sqs::primitives::DateTime::from_secs_f64(secs)
        .fmt(aws_sdk_sqs::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default()
}

#[derive(Serialize)]
struct Platform<'a, R: Serialize> {
    time: String,
    #[serde(rename = "type")]
    kind: &'a str,
    record: R,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StartRecord<'a> {
    request_id: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportRecord<'a> {
    request_id: &'a str,
    metrics: Metrics,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
}

#[derive(Serialize)]
struct Metrics {
    #[serde(rename = "durationMs")]
    duration_ms: f64,
    #[serde(rename = "billedDurationMs")]
    billed_duration_ms: u64,
    #[serde(rename = "memorySizeMB")]
    memory_size_mb: u64,
    #[serde(rename = "maxMemoryUsedMB")]
    max_memory_used_mb: u64,
    #[serde(rename = "initDurationMs", skip_serializing_if = "Option::is_none")]
    init_duration_ms: Option<f64>,
}

fn json<R: Serialize>(kind: &str, record: R) -> String {
    serde_json::to_string(&Platform {
        time: iso(SystemTime::now()),
        kind,
        record,
    })
    .unwrap_or_default()
}

/// The `START` line.
pub fn start(format: LogFormat, request_id: &str) -> String {
    match format {
        LogFormat::Text => format!("START RequestId: {request_id} Version: $LATEST"),
        LogFormat::Json => json(
            "platform.start",
            StartRecord {
                request_id,
                version: "$LATEST",
            },
        ),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InitReportRecord<'a> {
    initialization_type: &'a str,
    phase: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
    metrics: InitMetrics,
}

#[derive(Serialize)]
struct InitMetrics {
    #[serde(rename = "durationMs")]
    duration_ms: f64,
}

/// The `INIT_REPORT` line of a failed initialisation: `phase` is `init` for the Init phase and
/// `invoke` for the init Lambda runs again inside the invoke that follows.
pub fn init_report(format: LogFormat, duration: Duration, phase: &str, status: &Status) -> String {
    let (word, error_type) = match status {
        Status::Success => ("success", None),
        Status::Timeout => ("timeout", None),
        Status::Error(kind) => ("error", Some(kind.as_str())),
    };
    match format {
        LogFormat::Text => {
            let mut line = format!(
                "INIT_REPORT Init Duration: {:.2} ms\tPhase: {phase}\tStatus: {word}",
                ms(duration)
            );
            if let Some(kind) = error_type {
                line.push_str(&format!("\tError Type: {kind}"));
            }
            line
        }
        LogFormat::Json => json(
            "platform.initReport",
            InitReportRecord {
                initialization_type: "on-demand",
                phase,
                status: word,
                error_type,
                metrics: InitMetrics {
                    duration_ms: ms(duration),
                },
            },
        ),
    }
}

/// The line Lambda logs when it stops an invocation at its timeout.
pub fn timed_out(request_id: &str, timeout: Duration) -> String {
    format!(
        "{} {request_id} Task timed out after {:.2} seconds",
        iso(SystemTime::now()),
        timeout.as_secs_f64()
    )
}

/// The `END` line (text format only: JSON has `platform.runtimeDone`, which is not shown).
pub fn end(format: LogFormat, request_id: &str) -> Option<String> {
    (format == LogFormat::Text).then(|| format!("END RequestId: {request_id}"))
}

/// The `REPORT` line.
pub fn report(format: LogFormat, r: &Report) -> String {
    let billed = billed_ms(r.duration, r.init);
    match format {
        LogFormat::Text => {
            let mut line = format!(
                "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
                r.request_id,
                ms(r.duration),
                r.memory_size_mb,
                r.max_memory_used_mb
            );
            if let Some(init) = r.init {
                line.push_str(&format!("\tInit Duration: {:.2} ms", ms(init)));
            }
            match &r.status {
                Status::Success => {}
                Status::Timeout => line.push_str("\tStatus: timeout"),
                Status::Error(kind) => {
                    line.push_str(&format!("\tStatus: error\tError Type: {kind}"))
                }
            }
            // CloudWatch shows the fields each followed by a tab, the last one too.
            line.push('\t');
            line
        }
        LogFormat::Json => {
            let (status, error_type) = match &r.status {
                Status::Success => ("success", None),
                Status::Timeout => ("timeout", None),
                Status::Error(kind) => ("error", Some(kind.as_str())),
            };
            json(
                "platform.report",
                ReportRecord {
                    request_id: &r.request_id,
                    metrics: Metrics {
                        duration_ms: ms(r.duration),
                        billed_duration_ms: billed,
                        memory_size_mb: r.memory_size_mb,
                        max_memory_used_mb: r.max_memory_used_mb,
                        init_duration_ms: r.init.map(ms),
                    },
                    status,
                    error_type,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(init: Option<Duration>, status: Status) -> Report {
        Report {
            request_id: "r-1".into(),
            duration: Duration::from_micros(2_801),
            init,
            memory_size_mb: 128,
            max_memory_used_mb: 21,
            status,
        }
    }

    #[test]
    fn a_cold_start_reports_its_init_duration_and_bills_it() {
        let line = report(
            LogFormat::Text,
            &sample(Some(Duration::from_micros(45_678)), Status::Success),
        );
        assert_eq!(
            line,
            "REPORT RequestId: r-1\tDuration: 2.80 ms\tBilled Duration: 49 ms\tMemory Size: 128 MB\tMax Memory Used: 21 MB\tInit Duration: 45.68 ms\t"
        );
    }

    #[test]
    fn a_warm_invoke_has_no_init_duration_and_a_timeout_says_so() {
        let line = report(LogFormat::Text, &sample(None, Status::Timeout));
        assert!(line.contains("Billed Duration: 3 ms"), "{line}");
        assert!(!line.contains("Init Duration"), "{line}");
        assert!(line.ends_with("\tStatus: timeout\t"), "{line}");
    }

    #[test]
    fn the_json_format_reports_the_same_metrics() {
        let line = report(
            LogFormat::Json,
            &sample(
                Some(Duration::from_millis(10)),
                Status::Error("Runtime.ExitError".into()),
            ),
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["type"], "platform.report");
        assert_eq!(v["record"]["metrics"]["billedDurationMs"], 13);
        assert_eq!(v["record"]["metrics"]["initDurationMs"], 10.0);
        assert_eq!(v["record"]["status"], "error");
        assert_eq!(v["record"]["errorType"], "Runtime.ExitError");
    }
}
