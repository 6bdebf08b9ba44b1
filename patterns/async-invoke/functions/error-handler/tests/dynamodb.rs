//! The error handler against a real DynamoDB API (moto), with the real SDK client: a failure
//! lands only where no success and no other live run stands in its way.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::time::Duration;

use async_invoke_error_handler::{Config, ErrorHandler};
use async_invoke_jobs::{DynamoDbJobs, JobRequest, JobStore, KEY_ATTRIBUTE, Lease};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Value, json};

async fn setup() -> (aws_sdk_dynamodb::Client, String, DynamoDbJobs, ErrorHandler) {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = testkit::create_table(&client, "jobs", KEY_ATTRIBUTE).await;
    let config =
        Config::from_lookup(|k| (k == "TABLE_NAME").then(|| table.clone())).expect("config");
    let handler = ErrorHandler::from_config(&config, client.clone());
    (
        client.clone(),
        table.clone(),
        DynamoDbJobs::new(client, table),
        handler,
    )
}

async fn status(client: &aws_sdk_dynamodb::Client, table: &str) -> Option<String> {
    client
        .get_item()
        .table_name(table)
        .key(KEY_ATTRIBUTE, AttributeValue::S("job-1".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get")
        .item?
        .get("status")?
        .as_s()
        .ok()
        .cloned()
}

fn request() -> JobRequest {
    JobRequest {
        job_id: "job-1".into(),
        parameters: json!({"seconds": 1}),
    }
}

/// The destination record of invocation `request_id` of the processor.
fn record(request_id: &str) -> Value {
    json!({"version": "1.0",
           "requestContext": {"requestId": request_id, "condition": "RetriesExhausted", "approximateInvokeCount": 3},
           "requestPayload": {"jobId": "job-1", "parameters": {"seconds": 1}},
           "responsePayload": {"errorMessage": "job failed: boom", "errorType": "JobError"}})
}

fn live(owner: &str) -> Lease {
    Lease::new(owner, Duration::from_secs(900), None)
}

#[tokio::test]
async fn a_late_failure_after_a_success_leaves_the_job_succeeded() {
    let (client, table, jobs, handler) = setup().await;
    jobs.start(&request(), &live("winner"))
        .await
        .expect("start");
    jobs.succeed("job-1", "winner", &json!({}))
        .await
        .expect("succeed");
    for request_id in ["loser", "winner"] {
        let answer = handler
            .handle_event(record(request_id))
            .await
            .expect("handled");
        assert_eq!(answer["skipped"], true, "{answer}");
    }
    assert_eq!(status(&client, &table).await.as_deref(), Some("SUCCEEDED"));
}

#[tokio::test]
async fn a_failure_is_not_recorded_while_another_run_holds_the_job() {
    let (client, table, jobs, handler) = setup().await;
    jobs.start(&request(), &live("still-running"))
        .await
        .expect("start");
    let answer = handler
        .handle_event(record("an-earlier-delivery"))
        .await
        .expect("handled, not an error");
    assert_eq!(answer["skipped"], true);
    assert_eq!(status(&client, &table).await.as_deref(), Some("RUNNING"));
    // The running delivery finishes: its success stands.
    jobs.succeed("job-1", "still-running", &json!({}))
        .await
        .expect("succeed");
    assert_eq!(status(&client, &table).await.as_deref(), Some("SUCCEEDED"));
}

#[tokio::test]
async fn a_failure_is_recorded_when_the_failed_invocation_holds_the_lease_itself() {
    let (client, table, jobs, handler) = setup().await;
    // Its last try timed out an instant ago; its lease has not quite run out.
    jobs.start(&request(), &live("timed-out"))
        .await
        .expect("start");
    let answer = handler
        .handle_event(record("timed-out"))
        .await
        .expect("handled");
    assert_eq!(answer["status"], "FAILED");
    assert_eq!(status(&client, &table).await.as_deref(), Some("FAILED"));
}

#[tokio::test]
async fn a_recorded_failure_carries_the_job_id_as_the_api_request_id() {
    let (client, table, _, handler) = setup().await;
    let answer = handler
        .handle_event(record("never-started"))
        .await
        .expect("handled");
    assert_eq!(answer["status"], "FAILED");
    let item = client
        .get_item()
        .table_name(&table)
        .key(KEY_ATTRIBUTE, AttributeValue::S("job-1".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get")
        .item
        .expect("the job");
    assert_eq!(item["apiRequestId"], AttributeValue::S("job-1".into()));
}

#[tokio::test]
async fn a_table_that_cannot_be_written_fails_the_invocation_and_counts_as_failed() {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let missing = testkit::unique("no-such-table");
    let config =
        Config::from_lookup(|k| (k == "TABLE_NAME").then(|| missing.clone())).expect("config");
    let (metrics, captured) = batch_metrics::Metrics::capture(
        "AsyncApiPatterns",
        batch_metrics::Pattern::AsyncInvoke,
        batch_metrics::Function::ErrorHandler,
    );
    let handler = ErrorHandler::from_config(&config, client).with_metrics(metrics);
    assert!(handler.handle_event(record("r")).await.is_err());
    let written = captured.only().expect("one document");
    assert_eq!(
        written.counts,
        batch_metrics::Counts {
            failed: 1,
            ..Default::default()
        }
    );
    assert!(written.batch_write_latency_ms > 0.0, "{written:?}");
}
