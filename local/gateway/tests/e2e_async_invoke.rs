//! async-invoke end to end: SigV4-signed HTTP (signed by the AWS SDK's own signer) through the
//! local gateway's REST API, the mapping templates, the asynchronous-invoke emulation with its
//! retries and destinations, and the EventBridge archive and replay in moto.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

mod common;

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SigningSettings};
use common::LocalStack;
use common::signing::Signer;
use serde_json::{Value, json};

const P: &str = "AsyncInvoke";

/// Sends a request signed with the AWS SDK's SigV4 signer (service execute-api), as `at`.
async fn send(
    method: &str,
    url: &str,
    body: &str,
    signer: Option<&Signer>,
    at: SystemTime,
) -> (u16, Option<String>, Value) {
    let headers = [("content-type", "application/json")];
    let signed = signer.map(|s| {
        s.headers(
            method,
            url,
            &headers,
            SignableBody::Bytes(body.as_bytes()),
            SigningSettings::default(),
            at,
        )
    });
    let mut builder = reqwest::Client::new()
        .request(method.parse().expect("method"), url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in signed.into_iter().flatten() {
        builder = builder.header(name, value);
    }
    let response = builder.send().await.expect("send");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let text = response.text().await.expect("body");
    (
        status,
        location,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Signs `signed` with an `x-amz-content-sha256` header (as S3 clients sign), then sends `sent`.
async fn send_with_content_hash(
    stack: &LocalStack,
    url: &str,
    signed: SignableBody<'_>,
    sent: &str,
) -> u16 {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    let headers = Signer::of(stack).headers(
        "POST",
        url,
        &[("content-type", "application/json")],
        signed,
        settings,
        SystemTime::now(),
    );
    let mut builder = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(sent.to_owned());
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.send().await.expect("send").status().as_u16()
}

#[tokio::test]
async fn a_signature_is_bound_to_the_body_received_whatever_x_amz_content_sha256_says() {
    // Issue 11: the header replaced the body's hash unchecked, so a captured signature carried
    // any body, and UNSIGNED-PAYLOAD passed. For execute-api the payload hash is the body's.
    let stack = LocalStack::start(P, "").await;
    let url = format!("{}/jobs", base(&stack));
    let body = r#"{"seconds": 1}"#;
    let honest =
        send_with_content_hash(&stack, &url, SignableBody::Bytes(body.as_bytes()), body).await;
    assert_eq!(honest, 202, "a true content hash, signed, is accepted");
    let replayed = send_with_content_hash(
        &stack,
        &url,
        SignableBody::Bytes(body.as_bytes()),
        r#"{"seconds": 2}"#,
    )
    .await;
    assert_eq!(replayed, 403, "another body under a captured signature");
    let unsigned = send_with_content_hash(&stack, &url, SignableBody::UnsignedPayload, body).await;
    assert_eq!(unsigned, 403, "UNSIGNED-PAYLOAD");
}

fn base(stack: &LocalStack) -> String {
    stack.pattern(P)["baseUrl"]
        .as_str()
        .expect("base URL")
        .to_owned()
}

async fn submit(stack: &LocalStack, body: &str) -> String {
    let (status, location, answer) = send(
        "POST",
        &format!("{}/jobs", base(stack)),
        body,
        Some(&Signer::of(stack)),
        SystemTime::now(),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["jobId"].as_str().expect("jobId").to_owned();
    assert_eq!(location.as_deref(), Some(format!("/v1/jobs/{id}").as_str()));
    id
}

async fn job(stack: &LocalStack, id: &str) -> (u16, Value) {
    let (status, _, body) = send(
        "GET",
        &format!("{}/jobs/{id}", base(stack)),
        "",
        Some(&Signer::of(stack)),
        SystemTime::now(),
    )
    .await;
    (status, body)
}

async fn final_state(stack: &LocalStack, id: &str, timeout: Duration) -> Value {
    testkit::eventually("a final job state", timeout, || async {
        let (status, body) = job(stack, id).await;
        (status == 200 && matches!(body["status"].as_str(), Some("SUCCEEDED" | "FAILED")))
            .then_some(body)
    })
    .await
}

#[tokio::test]
async fn a_signed_job_is_accepted_then_polled_to_success_with_its_result() {
    let stack = LocalStack::start(P, "").await;
    let id = submit(&stack, r#"{"seconds": 1}"#).await;
    let done = final_state(&stack, &id, common::SETTLE).await;
    assert_eq!(done["status"], "SUCCEEDED");
    assert_eq!(done["result"], json!({"sleptSeconds": 1}));
    assert_eq!(done["parameters"], json!({"seconds": 1}));
    assert_eq!(done["attempts"], 1);
}

#[tokio::test]
async fn unsigned_wrongly_signed_and_stale_requests_are_refused_and_start_no_job() {
    let stack = LocalStack::start(P, "").await;
    let url = format!("{}/jobs", base(&stack));
    let (status, _, body) = send("POST", &url, r#"{"seconds": 1}"#, None, SystemTime::now()).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("Missing Authentication Token"))
    );

    let mut wrong = Signer::of(&stack);
    wrong.secret = "not-the-secret".into();
    let (status, _, body) = send(
        "POST",
        &url,
        r#"{"seconds": 1}"#,
        Some(&wrong),
        SystemTime::now(),
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("The request signature we calculated does not match"),
        "{body}"
    );

    let stale = SystemTime::now() - Duration::from_secs(600);
    let (status, _, body) = send(
        "POST",
        &url,
        r#"{"seconds": 1}"#,
        Some(&Signer::of(&stack)),
        stale,
    )
    .await;
    assert_eq!(status, 403);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Signature expired"),
        "{body}"
    );

    let mut stranger = Signer::of(&stack);
    stranger.access_key = "AKIAUNKNOWN000000000".into();
    let (status, _, body) = send(
        "POST",
        &url,
        r#"{"seconds": 1}"#,
        Some(&stranger),
        SystemTime::now(),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (
            403,
            Some("The security token included in the request is invalid.")
        )
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        stack.items(&stack.table(P, "JobsTable")).await.is_empty(),
        "no job started"
    );
}

#[tokio::test]
async fn a_body_that_breaks_the_schema_gets_400_and_starts_no_job() {
    let stack = LocalStack::start(P, "").await;
    for bad in [
        r#"{"seconds": 0}"#,
        r#"{"seconds": "1"}"#,
        r#"{}"#,
        r#"{"seconds": 1, "extra": true}"#,
        "not json",
    ] {
        let (status, _, body) = send(
            "POST",
            &format!("{}/jobs", base(&stack)),
            bad,
            Some(&Signer::of(&stack)),
            SystemTime::now(),
        )
        .await;
        assert_eq!(
            (status, body["message"].as_str()),
            (400, Some("Invalid request body")),
            "{bad}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(stack.items(&stack.table(P, "JobsTable")).await.is_empty());
}

#[tokio::test]
async fn an_unknown_job_id_gives_404() {
    let stack = LocalStack::start(P, "").await;
    let (status, body) = job(&stack, "no-such-job").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no-such-job")
    );
}

#[tokio::test]
async fn a_failing_job_is_retried_as_configured_then_recorded_failed_with_its_error() {
    let stack = LocalStack::start(P, "AsyncInvoke.MaximumRetryAttempts=1").await;
    let id = submit(&stack, r#"{"seconds": 1, "failure": "upstream timed out"}"#).await;
    let done = final_state(&stack, &id, common::settle_after(Duration::from_secs(1))).await;
    assert_eq!(done["status"], "FAILED");
    assert_eq!(done["attempts"], 2, "one try and exactly one retry: {done}");
    assert_eq!(done["error"]["message"], "job failed: upstream timed out");
    assert_eq!(done["error"]["type"], "JobError");
    assert_eq!(done["error"]["condition"], "RetriesExhausted");
    assert_eq!(done["parameters"]["failure"], "upstream timed out");
}

#[tokio::test]
async fn when_the_error_handler_fails_the_event_is_archived_and_a_replay_redrives_it() {
    let stack = LocalStack::start(
        P,
        "AsyncInvoke.MaximumRetryAttempts=0 AsyncInvoke.ErrorHandlerMaximumRetryAttempts=0",
    )
    .await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let events = aws_sdk_eventbridge::Client::new(&stack.sdk);
    let table = stack.table(P, "JobsTable");
    let archive = stack.pattern(P)["outputs"]["FailureArchiveName"]
        .as_str()
        .expect("archive")
        .to_owned();
    // An outage: neither the processor nor the error handler can write the jobs table.
    dynamodb
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete table");
    let id = submit(&stack, r#"{"seconds": 1}"#).await;
    testkit::eventually(
        "the failure in the archive",
        common::settle_after(Duration::from_secs(3)),
        || async {
            let out = events
                .describe_archive()
                .archive_name(&archive)
                .send()
                .await
                .ok()?;
            (out.event_count() >= 1).then_some(())
        },
    )
    .await;

    testkit::create_table_named(&dynamodb, &table, "jobId").await;
    let archive_arn = events
        .describe_archive()
        .archive_name(&archive)
        .send()
        .await
        .expect("archive")
        .archive_arn
        .expect("arn");
    let bus = stack.pattern(P)["outputs"]["FailureBusName"]
        .as_str()
        .expect("bus");
    let bus_arn = events
        .describe_event_bus()
        .name(bus)
        .send()
        .await
        .expect("bus")
        .arn
        .expect("arn");
    let now = aws_sdk_eventbridge::primitives::DateTime::from(SystemTime::now());
    let hour_ago = aws_sdk_eventbridge::primitives::DateTime::from(
        SystemTime::now() - Duration::from_secs(3600),
    );
    events
        .start_replay()
        .replay_name(testkit::unique("replay"))
        .event_source_arn(archive_arn)
        .event_start_time(hour_ago)
        .event_end_time(now)
        .destination(
            aws_sdk_eventbridge::types::ReplayDestination::builder()
                .arn(bus_arn)
                .build()
                .expect("destination"),
        )
        .send()
        .await
        .expect("start replay");

    let done = final_state(&stack, &id, common::settle_after(Duration::from_secs(3))).await;
    assert_eq!(
        done["status"], "FAILED",
        "the replay re-drove the failure to the error handler: {done}"
    );
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("jobs table write failed"),
        "{done}"
    );
}

#[tokio::test]
async fn a_hundred_concurrent_jobs_all_reach_a_final_state() {
    let stack = LocalStack::start(P, "").await;
    let submissions = (0..100).map(|i| {
        let body = if i % 10 == 0 {
            r#"{"seconds": 1, "failure": "planned"}"#
        } else {
            r#"{"seconds": 1}"#
        };
        let stack = &stack;
        async move { submit(stack, body).await }
    });
    let ids = futures::future::join_all(submissions).await;
    assert_eq!(ids.len(), 100);
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 100, "every job has its own id");
    let table = stack.table(P, "JobsTable");
    testkit::eventually("100 finished jobs", common::SETTLE, || async {
        let items = stack.items(&table).await;
        let finished = items
            .iter()
            .filter(|i| {
                matches!(
                    i["status"].as_s().map(String::as_str),
                    Ok("SUCCEEDED" | "FAILED")
                )
            })
            .count();
        (finished == 100).then_some(())
    })
    .await;
    let items = stack.items(&table).await;
    let failed = items
        .iter()
        .filter(|i| i["status"].as_s().map(String::as_str) == Ok("FAILED"))
        .count();
    assert_eq!(
        (items.len(), failed),
        (100, 10),
        "none lost, the planned ones failed"
    );
}

#[tokio::test]
async fn a_read_whose_table_call_fails_gets_a_5xx_never_a_404() {
    let stack = LocalStack::start(P, "").await;
    aws_sdk_dynamodb::Client::new(&stack.sdk)
        .delete_table()
        .table_name(stack.table(P, "JobsTable"))
        .send()
        .await
        .expect("delete table");
    let (status, body) = job(&stack, "any-job").await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("could not be read"),
        "{body}"
    );
}

/// Invokes `function` of the stack synchronously through the local Lambda Invoke API.
async fn invoke(stack: &LocalStack, function: &str, payload: &Value) -> Value {
    let lambda = stack.state["lambdaEndpoint"]
        .as_str()
        .expect("lambda endpoint");
    let response = reqwest::Client::new()
        .post(format!(
            "{lambda}/2015-03-31/functions/{}/invocations",
            stack.function_id(function)
        ))
        .json(payload)
        .send()
        .await
        .expect("invoke");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.headers().get("x-amz-function-error").is_none(),
        "a duplicate is not a function error"
    );
    response.json().await.expect("JSON")
}

#[tokio::test]
async fn a_job_delivered_twice_at_once_runs_once_and_a_late_failure_leaves_its_success() {
    let stack = LocalStack::start(P, "").await;
    let id = testkit::unique("dup");
    let event = json!({"jobId": id, "parameters": {"seconds": 2}});
    // Two deliveries of one event, as Lambda's at-least-once asynchronous queue may make.
    let (first, second) = tokio::join!(invoke(&stack, "ProcessorFunction", &event), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        invoke(&stack, "ProcessorFunction", &event).await
    });
    let skipped = [&first, &second]
        .iter()
        .filter(|a| a["skipped"] == true)
        .count();
    assert_eq!(skipped, 1, "one ran, one was skipped: {first} {second}");
    let (status, done) = job(&stack, &id).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "SUCCEEDED");
    assert_eq!(done["attempts"], 1, "the job ran once: {done}");

    // A destination record of another, failed delivery of the same job arrives late.
    let record = json!({"version": "1.0",
        "requestContext": {"requestId": "a-failed-delivery", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": event,
        "responsePayload": {"errorMessage": "job failed: late", "errorType": "JobError"}});
    let answer = invoke(&stack, "ErrorHandlerFunction", &record).await;
    assert_eq!(answer["skipped"], true, "{answer}");
    let (_, after) = job(&stack, &id).await;
    assert_eq!(after["status"], "SUCCEEDED", "{after}");
    assert_eq!(after["result"], json!({"sleptSeconds": 2}));
}

#[tokio::test]
async fn a_failing_job_raises_the_processor_errors_alarm_which_clears_when_jobs_succeed() {
    let stack = LocalStack::start(P, "AsyncInvoke.MaximumRetryAttempts=0").await;
    let inbox = common::alarms::subscribe(&stack, P).await;
    common::alarms::wait_for_state(&stack, P, "ProcessorErrorsAlarm", "OK", common::SETTLE).await;
    let failing = submit(&stack, r#"{"seconds": 1, "failure": "upstream refused"}"#).await;
    // One failed invocation breaches one (scaled) period only: the notification, which stays,
    // shows the ALARM state was reached.
    let alarm = stack.pattern(P)["alarms"]["ProcessorErrorsAlarm"]
        .as_str()
        .expect("alarm")
        .to_owned();
    let raised = common::alarms::notified(&stack, &inbox, &alarm, "ALARM").await;
    assert_eq!(raised["Trigger"]["MetricName"], "Errors");
    // The failure path ran: the job is recorded FAILED.
    let done = final_state(&stack, &failing, common::SETTLE).await;
    assert_eq!(done["status"], "FAILED");
    // A job that succeeds afterwards: no errors in the periods that follow, so OK again.
    let fine = submit(&stack, r#"{"seconds": 1}"#).await;
    assert_eq!(
        final_state(&stack, &fine, common::SETTLE).await["status"],
        "SUCCEEDED"
    );
    common::alarms::wait_for_state(&stack, P, "ProcessorErrorsAlarm", "OK", common::SETTLE).await;
    common::alarms::notified(&stack, &inbox, &alarm, "OK").await;
}

#[tokio::test]
async fn one_job_is_found_by_its_api_request_id_in_the_access_log_the_processors_log_and_the_job() {
    let stack = LocalStack::start(P, "").await;
    // The job id is the request's $context.requestId: the job's apiRequestId.
    let id = submit(&stack, r#"{"seconds": 1}"#).await;
    let done = final_state(&stack, &id, common::SETTLE).await;
    assert_eq!(done["status"], "SUCCEEDED");

    let access = stack
        .lines_with("AccessLogGroup", "requestId", &id, Duration::ZERO)
        .await;
    assert_eq!(access.len(), 1, "{access:?}");
    let line: Value = serde_json::from_str(&access[0]).expect("the stage's JSON format");
    assert_eq!(line["httpMethod"], "POST");
    assert_eq!(line["resourcePath"], "/jobs");
    assert_eq!(line["status"], "202");
    assert_eq!(
        line["integrationStatus"], "202",
        "Lambda's answer to an Event invoke"
    );
    assert_eq!(
        line["caller"],
        Signer::of(&stack).access_key.as_str(),
        "the signature's access key"
    );
    assert_eq!(line["error"], "-");

    let processor = stack
        .lines_with("ProcessorLogGroup", "apiRequestId", &id, Duration::ZERO)
        .await;
    assert!(
        processor.iter().any(|l| l.contains("job succeeded")),
        "{processor:?}"
    );

    let item = stack
        .items(&stack.table(P, "JobsTable"))
        .await
        .into_iter()
        .find(|i| i.get("jobId").and_then(|v| v.as_s().ok()) == Some(&id))
        .expect("the job");
    assert_eq!(
        item["apiRequestId"],
        aws_sdk_dynamodb::types::AttributeValue::S(id.clone())
    );
}
