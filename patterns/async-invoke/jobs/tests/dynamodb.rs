//! Job status transitions against a real DynamoDB API (moto): every one is a condition
//! expression, so this is where they are proven.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use async_invoke_jobs::{DynamoDbJobs, Failure, JobRequest, JobStore, KEY_ATTRIBUTE, Transition};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

async fn setup() -> (aws_sdk_dynamodb::Client, String, DynamoDbJobs) {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = testkit::create_table(&client, "jobs", KEY_ATTRIBUTE).await;
    let jobs = DynamoDbJobs::new(client.clone(), table.clone());
    (client, table, jobs)
}

async fn get(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    id: &str,
    attribute: &str,
) -> Option<String> {
    let item = client
        .get_item()
        .table_name(table)
        .key(KEY_ATTRIBUTE, AttributeValue::S(id.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get")
        .item?;
    item.get(attribute).map(|v| match v {
        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
        other => format!("{other:?}"),
    })
}

fn request(id: &str) -> JobRequest {
    JobRequest {
        job_id: id.into(),
        parameters: json!({"seconds": 1}),
    }
}

fn failure() -> Failure {
    Failure {
        message: "boom".into(),
        error_type: "JobError".into(),
        attempts: 3,
        condition: "RetriesExhausted".into(),
    }
}

#[tokio::test]
async fn a_finished_job_is_never_reset_by_a_late_or_duplicate_delivery() {
    let (client, table, jobs) = setup().await;
    assert_eq!(
        jobs.start(&request("j1")).await.expect("start"),
        Transition::Applied
    );
    assert_eq!(
        get(&client, &table, "j1", "status").await.as_deref(),
        Some("RUNNING")
    );
    assert_eq!(
        jobs.start(&request("j1")).await.expect("retry"),
        Transition::Applied,
        "a retry of a running job may run again"
    );
    assert_eq!(
        get(&client, &table, "j1", "attempts").await.as_deref(),
        Some("2")
    );

    assert_eq!(
        jobs.succeed("j1", &json!({"sleptSeconds": 1}))
            .await
            .expect("succeed"),
        Transition::Applied
    );
    assert_eq!(
        jobs.start(&request("j1")).await.expect("late"),
        Transition::Skipped
    );
    assert_eq!(
        jobs.fail(&request("j1"), &failure())
            .await
            .expect("late failure"),
        Transition::Skipped
    );
    assert_eq!(
        get(&client, &table, "j1", "status").await.as_deref(),
        Some("SUCCEEDED")
    );
    assert_eq!(
        get(&client, &table, "j1", "result").await.as_deref(),
        Some(r#"{"sleptSeconds":1}"#)
    );
}

#[tokio::test]
async fn a_failure_is_recorded_with_parameters_error_and_attempts() {
    let (client, table, jobs) = setup().await;
    jobs.start(&request("j2")).await.expect("start");
    assert_eq!(
        jobs.fail(&request("j2"), &failure()).await.expect("fail"),
        Transition::Applied
    );
    assert_eq!(
        get(&client, &table, "j2", "status").await.as_deref(),
        Some("FAILED")
    );
    assert_eq!(
        get(&client, &table, "j2", "errorMessage").await.as_deref(),
        Some("boom")
    );
    assert_eq!(
        get(&client, &table, "j2", "errorType").await.as_deref(),
        Some("JobError")
    );
    assert_eq!(
        get(&client, &table, "j2", "attempts").await.as_deref(),
        Some("3")
    );
    assert_eq!(
        get(&client, &table, "j2", "parameters").await.as_deref(),
        Some(r#"{"seconds":1}"#)
    );
    // A job that never started (the processor failed before writing) is recorded too.
    assert_eq!(
        jobs.fail(&request("j3"), &failure()).await.expect("fail"),
        Transition::Applied
    );
    assert_eq!(
        get(&client, &table, "j3", "status").await.as_deref(),
        Some("FAILED")
    );
    // Success cannot follow a failure record.
    assert_eq!(
        jobs.succeed("j3", &json!({})).await.expect("succeed"),
        Transition::Skipped
    );
}
