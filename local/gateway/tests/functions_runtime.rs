//! The gateway runs each function's own binary as Lambda does: a process per execution
//! environment behind a Runtime API, started from the template alone. These tests use a function
//! that exists only in the test fixtures (`fixtures/functions/probe`, stack
//! `fixtures/probe/template.yaml`): nothing in the gateway names it.
//!
//! Waiting: every wait is for a condition, bounded by [`common::SETTLE`]. The probe's own
//! timeouts are template parameters; a test that needs an invocation to be in flight while it
//! acts holds it with a file the probe waits for, never with a sleep.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use base64::Engine as _;
use common::LocalStack;
use serde_json::{Value, json};

const TEMPLATE: &str = "local/gateway/tests/fixtures/probe/template.yaml";

async fn probe(overrides: &str) -> LocalStack {
    LocalStack::start_template("Probe", TEMPLATE, overrides).await
}

/// Invokes the probe through the Lambda Invoke API: status, `X-Amz-Function-Error`, body.
async fn invoke(stack: &LocalStack, event: &Value) -> (u16, Option<String>, Value) {
    invoke_with(stack, event, &[]).await
}

async fn invoke_with(
    stack: &LocalStack,
    event: &Value,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(format!(
            "{}/2015-03-31/functions/ProbeFunction/invocations",
            stack.lambda_endpoint()
        ))
        .body(event.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("invoke");
    let status = response.status().as_u16();
    let error = response
        .headers()
        .get("x-amz-function-error")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, error, body)
}

/// The platform lines (`REPORT`, `INIT_REPORT`, ...) the gateway printed for the probe.
fn platform_lines(stack: &LocalStack, kind: &str) -> Vec<String> {
    let prefix = format!("[ProbeFunction] {kind} ");
    stack
        .log()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

/// The `REPORT` line of `request_id`, once printed.
async fn report_of(stack: &LocalStack, request_id: &str) -> String {
    testkit::eventually("the REPORT line", common::SETTLE, || async {
        platform_lines(stack, "REPORT")
            .into_iter()
            .find(|l| l.starts_with(&format!("RequestId: {request_id}\t")))
    })
    .await
}

fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test]
async fn a_function_only_the_fixtures_hold_runs_from_its_template_through_its_sqs_event_source() {
    let stack = probe("").await;
    let pattern = stack.pattern("Probe");
    let queue = pattern["queues"]["ProbeQueue"]["url"]
        .as_str()
        .expect("queue")
        .to_owned();
    let table = pattern["tables"]["ProbeTable"]
        .as_str()
        .expect("table")
        .to_owned();
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    for n in 0..3 {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(format!("message {n}"))
            .send()
            .await
            .expect("send");
    }
    let items = testkit::eventually(
        "three items stored by the probe",
        common::SETTLE,
        || async {
            let items = stack.items(&table).await;
            (items.len() == 3).then_some(items)
        },
    )
    .await;
    let mut bodies: Vec<String> = items
        .iter()
        .map(|i| i["body"].as_s().expect("body").clone())
        .collect();
    bodies.sort();
    assert_eq!(bodies, ["message 0", "message 1", "message 2"]);
    // Each batch ran under a request id of its own, and the first was a cold start.
    let request_id = items[0]["requestId"].as_s().expect("request id").clone();
    let report = report_of(&stack, &request_id).await;
    assert!(report.contains("Memory Size: 256 MB"), "{report}");
    let reports = platform_lines(&stack, "REPORT");
    assert!(
        reports.iter().any(|r| r.contains("\tInit Duration: ")),
        "no cold start reported: {reports:?}"
    );
}

#[tokio::test]
async fn the_binary_gets_lambdas_variables_headers_and_client_context() {
    let stack = probe("").await;
    let context = base64::engine::general_purpose::STANDARD
        .encode(r#"{"custom":{"tenant":"t-1"},"env":{"locale":"en"}}"#);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (status, error, answer) = invoke_with(
        &stack,
        &json!({"echo": "hi"}),
        &[("X-Amz-Client-Context", &context)],
    )
    .await;
    assert_eq!((status, error), (200, None), "{answer}");
    assert_eq!(answer["echo"], "hi");
    let env = &answer["env"];
    let name = stack.pattern("Probe")["functions"]["ProbeFunction"]
        .as_str()
        .expect("function name");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], name);
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(
        env["AWS_LAMBDA_LOG_GROUP_NAME"],
        format!("/aws/lambda/{name}")
    );
    assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "Text");
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["_HANDLER"], "bootstrap");
    assert_eq!(env["AWS_ENDPOINT_URL"], testkit::moto_endpoint());
    assert!(
        env["AWS_LAMBDA_LOG_STREAM_NAME"]
            .as_str()
            .is_some_and(|s| s.contains("/[$LATEST]")),
        "{env}"
    );
    assert!(
        answer["functionArn"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!(":function:{name}"))),
        "{answer}"
    );
    assert!(
        answer["traceId"]
            .as_str()
            .is_some_and(|t| t.starts_with("Root=1-")),
        "{answer}"
    );
    assert_eq!(answer["clientContext"], json!({"tenant": "t-1"}));
    // The deadline is the hand-over plus the function's Timeout (3 s).
    let deadline = answer["deadlineMs"].as_u64().expect("deadline");
    assert!(
        deadline >= before + 3_000
            && deadline <= before + 3_000 + common::SETTLE.as_millis() as u64,
        "deadline {deadline}, sent at {before}"
    );
}

#[tokio::test]
async fn warm_environments_are_reused_and_a_cold_start_reports_its_init_duration() {
    let stack = probe("").await;
    let (_, _, first) = invoke(&stack, &json!({"echo": 1})).await;
    let (_, _, second) = invoke(&stack, &json!({"echo": 2})).await;
    assert_eq!(
        first["pid"], second["pid"],
        "the warm environment was reused"
    );
    let cold = report_of(&stack, first["requestId"].as_str().unwrap()).await;
    let warm = report_of(&stack, second["requestId"].as_str().unwrap()).await;
    for field in [
        "Duration: ",
        "Billed Duration: ",
        "Memory Size: 256 MB",
        "Max Memory Used: ",
    ] {
        assert!(
            cold.contains(field) && warm.contains(field),
            "{cold}\n{warm}"
        );
    }
    assert!(cold.contains("\tInit Duration: "), "{cold}");
    assert!(!warm.contains("Init Duration"), "{warm}");
    // Max Memory Used is the process's peak resident memory: 64 MB touched shows.
    let (_, _, big) = invoke(&stack, &json!({"allocateMb": 64})).await;
    let report = report_of(&stack, big["requestId"].as_str().unwrap()).await;
    let used: u64 = report
        .split("Max Memory Used: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("max memory used");
    assert!(used >= 64, "{report}");
    let starts = platform_lines(&stack, "START");
    assert!(
        starts.iter().any(|s| s
            == &format!(
                "RequestId: {} Version: $LATEST",
                first["requestId"].as_str().unwrap()
            )),
        "{starts:?}"
    );
}

/// Invokes `{"echo": ...}` until one answers: under a 2-second `Timeout`, a machine that
/// stalls the probe that long makes an echo time out too, which only means another try.
async fn echo_answered(stack: &LocalStack) -> Value {
    testkit::eventually("an echo within the timeout", common::SETTLE, || async {
        let (_, error, answer) = invoke(stack, &json!({"echo": "ping"})).await;
        error.is_none().then_some(answer)
    })
    .await
}

#[tokio::test]
async fn a_function_past_its_timeout_is_killed_and_the_next_invoke_is_a_cold_start() {
    let stack = probe("ProbeTimeout=2").await;
    let warm = echo_answered(&stack).await;
    let old_pid = warm["pid"].as_u64().expect("pid");
    let (status, error, answer) = invoke(&stack, &json!({"sleepMs": 600_000})).await;
    assert_eq!(status, 200);
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(answer["errorType"], "Sandbox.Timedout", "{answer}");
    let message = answer["errorMessage"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("RequestId: ")
            && message.ends_with("Error: Task timed out after 2.00 seconds"),
        "{message}"
    );
    testkit::eventually(
        "the timed-out environment killed",
        common::SETTLE,
        || async { (!alive(old_pid)).then_some(()) },
    )
    .await;
    assert!(
        platform_lines(&stack, "REPORT")
            .iter()
            .any(|r| r.contains("\tStatus: timeout")),
        "no timeout REPORT"
    );
    let after = echo_answered(&stack).await;
    assert_ne!(after["pid"], warm["pid"], "a new environment");
    let report = report_of(&stack, after["requestId"].as_str().unwrap()).await;
    assert!(
        report.contains("\tInit Duration: "),
        "the next invoke is cold: {report}"
    );
}

#[tokio::test]
async fn a_process_that_exits_mid_invoke_is_a_runtime_exit_error_and_its_environment_replaced() {
    let stack = probe("").await;
    let (status, error, answer) = invoke(&stack, &json!({"exit": 3})).await;
    assert_eq!((status, error.as_deref()), (200, Some("Unhandled")));
    assert_eq!(answer["errorType"], "Runtime.ExitError", "{answer}");
    assert!(
        answer["errorMessage"]
            .as_str()
            .is_some_and(|m| m.ends_with("Error: Runtime exited with error: exit status 3")),
        "{answer}"
    );
    assert!(
        platform_lines(&stack, "REPORT")
            .iter()
            .any(|r| r.contains("\tStatus: error\tError Type: Runtime.ExitError")),
        "no error REPORT"
    );
    let (status, error, answer) = invoke(&stack, &json!({"echo": "again"})).await;
    assert_eq!(
        (status, error, answer["echo"].clone()),
        (200, None, json!("again"))
    );
}

#[tokio::test]
async fn a_function_error_keeps_the_runtimes_error_type_and_the_environment_warm() {
    let stack = probe("").await;
    let (_, _, warm) = invoke(&stack, &json!({"echo": 1})).await;
    let (status, error, answer) = invoke(&stack, &json!({"fail": "no such order"})).await;
    assert_eq!((status, error.as_deref()), (200, Some("Unhandled")));
    assert_eq!(
        answer,
        json!({"errorType": "ProbeError", "errorMessage": "no such order"})
    );
    // A panic is caught by the Rust runtime and reported as an error, too.
    let (_, error, panicked) = invoke(&stack, &json!({"panic": "bug"})).await;
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert!(
        panicked["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("bug")),
        "{panicked}"
    );
    let (_, _, after) = invoke(&stack, &json!({"echo": 2})).await;
    assert_eq!(after["pid"], warm["pid"], "errors keep the environment");
}

#[tokio::test]
async fn a_failed_init_is_reported_and_tried_again_inside_each_invoke() {
    let stack = probe("FailInit=true").await;
    for _ in 0..2 {
        let (status, error, answer) = invoke(&stack, &json!({"echo": 1})).await;
        assert_eq!((status, error.as_deref()), (200, Some("Unhandled")));
        assert_eq!(answer["errorType"], "Runtime.ExitError", "{answer}");
        assert!(
            answer["errorMessage"]
                .as_str()
                .is_some_and(|m| m.contains("Runtime exited with error: exit status 2")),
            "{answer}"
        );
    }
    let inits = platform_lines(&stack, "INIT_REPORT");
    let phase = |p: &str| {
        inits
            .iter()
            .filter(|l| {
                l.contains(&format!(
                    "\tPhase: {p}\tStatus: error\tError Type: Runtime.ExitError"
                ))
            })
            .count()
    };
    // Each invoke: the Init phase fails, Lambda initialises again within the invoke, fails.
    assert_eq!((phase("init"), phase("invoke")), (2, 2), "{inits:?}");
    assert!(stack.log().contains("[ProbeFunction] FAIL_INIT is set"));
}

#[tokio::test]
async fn beyond_its_reserved_concurrency_a_synchronous_invoke_is_throttled() {
    // The held invocation waits for a file, created as soon as the throttle is seen; its timeout
    // (10 minutes, the queue's visibility above it as Lambda requires) only bounds a broken run.
    let stack =
        probe("ProbeReservedConcurrency=1 ProbeTimeout=600 ProbeVisibilityTimeout=3600").await;
    let release = std::env::temp_dir().join(testkit::unique("release"));
    let held = {
        let event = json!({"waitForFile": release.display().to_string()});
        let endpoint = stack.lambda_endpoint();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!(
                    "{endpoint}/2015-03-31/functions/ProbeFunction/invocations"
                ))
                .body(event.to_string())
                .send()
                .await
                .expect("held invoke")
                .status()
                .as_u16()
        })
    };
    testkit::eventually("the held invocation in flight", common::SETTLE, || async {
        (!platform_lines(&stack, "START").is_empty()).then_some(())
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!(
            "{}/2015-03-31/functions/ProbeFunction/invocations",
            stack.lambda_endpoint()
        ))
        .body("{}")
        .send()
        .await
        .expect("second invoke");
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(
        response.headers()["x-amzn-errortype"],
        "TooManyRequestsException"
    );
    let body: Value = response.json().await.expect("body");
    assert_eq!(
        body["Reason"],
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );
    std::fs::write(&release, b"go").expect("release");
    assert_eq!(held.await.expect("held"), 200);
    let _ = std::fs::remove_file(release);
    // Once the environment is free again, invokes run.
    let (status, error, _) = invoke(&stack, &json!({"echo": 1})).await;
    assert_eq!((status, error), (200, None));
}

#[tokio::test]
async fn the_json_log_format_reports_as_platform_events() {
    let stack = probe("LogFormat=JSON").await;
    let (_, _, answer) = invoke(&stack, &json!({"echo": 1})).await;
    assert_eq!(answer["env"]["AWS_LAMBDA_LOG_FORMAT"], "JSON");
    let request_id = answer["requestId"].as_str().unwrap().to_owned();
    let report = testkit::eventually("platform.report", common::SETTLE, || async {
        stack.log().lines().find_map(|l| {
            let event: Value = serde_json::from_str(l.strip_prefix("[ProbeFunction] ")?).ok()?;
            (event["type"] == "platform.report"
                && event["record"]["requestId"] == request_id.as_str())
            .then_some(event)
        })
    })
    .await;
    let metrics = &report["record"]["metrics"];
    assert_eq!(metrics["memorySizeMB"], 256);
    assert!(metrics["initDurationMs"].as_f64().is_some(), "{report}");
    assert!(metrics["billedDurationMs"].as_u64().is_some(), "{report}");
    assert_eq!(report["record"]["status"], "success");
}

fn children_of(pid: u32) -> Vec<u64> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = stat.rsplit_once(") ")?.1.to_owned();
                    after.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

#[tokio::test]
async fn function_processes_die_with_the_gateway_even_when_it_is_killed() {
    let mut stack = probe("").await;
    let (_, _, answer) = invoke(&stack, &json!({"echo": 1})).await;
    let pid = answer["pid"].as_u64().expect("pid");
    assert!(
        children_of(stack.pid()).contains(&pid),
        "the environment is the gateway's child"
    );
    stack.kill();
    testkit::eventually("the function process gone", common::SETTLE, || async {
        (!alive(pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn ctrl_c_stops_the_gateway_and_every_function_process() {
    let mut stack = probe("").await;
    let (_, _, answer) = invoke(&stack, &json!({"echo": 1})).await;
    let pid = answer["pid"].as_u64().expect("pid");
    let status = stack.interrupt();
    assert!(
        status.success(),
        "the gateway exits cleanly on Ctrl-C: {status}"
    );
    testkit::eventually("the function process gone", common::SETTLE, || async {
        (!alive(pid)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_invoke_endpoint_refuses_what_a_web_page_could_send_cross_site() {
    // Issue 11: a page the developer visits could POST text/plain to 127.0.0.1 and run a
    // function with a forged event. AWS would demand a SigV4 signature no page has.
    let stack = probe("").await;
    let url = format!(
        "{}/2015-03-31/functions/ProbeFunction/invocations",
        stack.lambda_endpoint()
    );
    let attempts = [
        ("origin", "https://evil.example"),
        ("content-type", "text/plain"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("content-type", "multipart/form-data; boundary=x"),
    ];
    for (name, value) in attempts {
        let response = reqwest::Client::new()
            .post(&url)
            .header(name, value)
            .body(r#"{"echo": "forged"}"#)
            .send()
            .await
            .expect("invoke");
        assert_eq!(response.status().as_u16(), 403, "{name}: {value}");
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "AccessDeniedException"
        );
    }
    assert!(
        platform_lines(&stack, "START").is_empty(),
        "nothing ran: {:?}",
        platform_lines(&stack, "START")
    );
    let (status, error, answer) = invoke_with(
        &stack,
        &json!({"echo": "ok"}),
        &[("content-type", "application/json")],
    )
    .await;
    assert_eq!(
        (status, error, answer["echo"].clone()),
        (200, None, json!("ok"))
    );
}

#[tokio::test]
async fn the_stack_description_is_readable_by_its_owner_only() {
    // Issue 11: it holds the local passwords and the signing secret.
    use std::os::unix::fs::PermissionsExt as _;
    let stack = probe("").await;
    let mode = std::fs::metadata(stack.state_file())
        .expect("state file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
}
