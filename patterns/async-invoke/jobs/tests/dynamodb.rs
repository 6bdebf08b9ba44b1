//! Job status transitions against a real DynamoDB API (moto): every one is a condition
//! expression, so this is where they are proven, lease included.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::time::{Duration, SystemTime};

use async_invoke_jobs::{
    DynamoDbJobs, Failure, JobRequest, JobStore, KEY_ATTRIBUTE, Lease, Start, Transition,
};
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

/// A lease for `owner` as long as a processor's timeout.
fn lease(owner: &str) -> Lease {
    Lease::new(owner, Duration::from_secs(900), None)
}

/// A lease for `owner` that ended a second ago (its run timed out).
fn expired(owner: &str) -> Lease {
    Lease::new(
        owner,
        Duration::from_secs(900),
        Some(SystemTime::now() - Duration::from_secs(1)),
    )
}

fn failure(request_id: Option<&str>) -> Failure {
    Failure {
        message: "boom".into(),
        error_type: "JobError".into(),
        attempts: 3,
        condition: "RetriesExhausted".into(),
        request_id: request_id.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_finished_job_is_never_reset_by_a_late_or_duplicate_delivery() {
    let (client, table, jobs) = setup().await;
    assert_eq!(
        jobs.start(&request("j1"), &lease("r1"))
            .await
            .expect("start"),
        Start::Started
    );
    assert_eq!(
        get(&client, &table, "j1", "status").await.as_deref(),
        Some("RUNNING")
    );
    assert_eq!(
        get(&client, &table, "j1", "leaseOwner").await.as_deref(),
        Some("r1")
    );
    assert_eq!(
        jobs.succeed("j1", "r1", &json!({"sleptSeconds": 1}))
            .await
            .expect("succeed"),
        Transition::Applied
    );
    let Start::Skipped(holder) = jobs
        .start(&request("j1"), &lease("r2"))
        .await
        .expect("late")
    else {
        panic!("a finished job must not start again")
    };
    assert_eq!(holder.status.as_deref(), Some("SUCCEEDED"));
    assert_eq!(
        get(&client, &table, "j1", "status").await.as_deref(),
        Some("SUCCEEDED")
    );
    assert_eq!(
        get(&client, &table, "j1", "result").await.as_deref(),
        Some(r#"{"sleptSeconds":1}"#)
    );
    assert_eq!(
        get(&client, &table, "j1", "attempts").await.as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn of_two_concurrent_deliveries_exactly_one_takes_the_job() {
    let (client, table, jobs) = setup().await;
    let starts = (0..8).map(|n| {
        let jobs = jobs.clone();
        tokio::spawn(async move {
            jobs.start(&request("j-concurrent"), &lease(&format!("r{n}")))
                .await
                .expect("start")
        })
    });
    let outcomes: Vec<Start> = futures::future::join_all(starts)
        .await
        .into_iter()
        .map(|r| r.expect("task"))
        .collect();
    let started = outcomes.iter().filter(|o| **o == Start::Started).count();
    assert_eq!(started, 1, "{outcomes:?}");
    let owner = get(&client, &table, "j-concurrent", "leaseOwner")
        .await
        .expect("owner");
    for outcome in outcomes {
        if let Start::Skipped(holder) = outcome {
            assert_eq!(holder.status.as_deref(), Some("RUNNING"));
            assert_eq!(
                holder.lease_owner.as_deref(),
                Some(owner.as_str()),
                "the skipped delivery is told who holds the job"
            );
        }
    }
    assert_eq!(
        get(&client, &table, "j-concurrent", "attempts")
            .await
            .as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn only_the_lease_owner_records_success() {
    let (client, table, jobs) = setup().await;
    jobs.start(&request("j2"), &lease("owner"))
        .await
        .expect("start");
    assert_eq!(
        jobs.succeed("j2", "someone-else", &json!({}))
            .await
            .expect("succeed"),
        Transition::Skipped
    );
    assert_eq!(
        get(&client, &table, "j2", "status").await.as_deref(),
        Some("RUNNING")
    );
    assert_eq!(
        jobs.succeed("j2", "owner", &json!({"ok": true}))
            .await
            .expect("succeed"),
        Transition::Applied
    );
    assert_eq!(
        get(&client, &table, "j2", "status").await.as_deref(),
        Some("SUCCEEDED")
    );
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_its_old_owner_can_no_longer_succeed() {
    let (client, table, jobs) = setup().await;
    jobs.start(&request("j3"), &expired("timed-out"))
        .await
        .expect("start");
    assert_eq!(
        jobs.start(&request("j3"), &lease("retry"))
            .await
            .expect("take over"),
        Start::Started
    );
    assert_eq!(
        get(&client, &table, "j3", "leaseOwner").await.as_deref(),
        Some("retry")
    );
    assert_eq!(
        get(&client, &table, "j3", "attempts").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        jobs.succeed("j3", "timed-out", &json!({"stale": true}))
            .await
            .expect("stale success"),
        Transition::Skipped
    );
    assert_eq!(
        jobs.succeed("j3", "retry", &json!({"fresh": true}))
            .await
            .expect("success"),
        Transition::Applied
    );
    assert_eq!(
        get(&client, &table, "j3", "result").await.as_deref(),
        Some(r#"{"fresh":true}"#)
    );
}

/// Lambda retries an asynchronous invoke under its request id once the try before it ended. A
/// try killed mid-run (its process crashed, its environment was lost) could not release its
/// lease: the retry takes the job over at once, or the job would stay `RUNNING` for good (every
/// retry skipped as a duplicate, and answered as a success). Found by `make chaos`.
#[tokio::test]
async fn a_retry_under_the_same_request_id_takes_over_the_live_lease_its_killed_try_left() {
    let (client, table, jobs) = setup().await;
    jobs.start(&request("j9"), &lease("invoke-1"))
        .await
        .expect("start");
    assert!(
        matches!(
            jobs.start(&request("j9"), &lease("another-invoke"))
                .await
                .expect("duplicate"),
            Start::Skipped(_)
        ),
        "a delivery under another request id never runs the job beside a live lease"
    );
    assert_eq!(
        jobs.start(&request("j9"), &lease("invoke-1"))
            .await
            .expect("retry"),
        Start::Started
    );
    assert_eq!(
        get(&client, &table, "j9", "attempts").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        jobs.succeed("j9", "invoke-1", &json!({"done": true}))
            .await
            .expect("success"),
        Transition::Applied
    );
    assert_eq!(
        get(&client, &table, "j9", "status").await.as_deref(),
        Some("SUCCEEDED")
    );
    assert!(
        matches!(
            jobs.start(&request("j9"), &lease("invoke-1"))
                .await
                .expect("late retry"),
            Start::Skipped(_)
        ),
        "a finished job is never started again, not even by its own request id"
    );
}

#[tokio::test]
async fn a_released_lease_lets_the_retry_start_at_once() {
    let (client, table, jobs) = setup().await;
    jobs.start(&request("j4"), &lease("first"))
        .await
        .expect("start");
    assert_eq!(
        jobs.release("j4", "not-the-owner").await.expect("release"),
        Transition::Skipped
    );
    assert!(matches!(
        jobs.start(&request("j4"), &lease("retry"))
            .await
            .expect("start"),
        Start::Skipped(_)
    ));
    assert_eq!(
        jobs.release("j4", "first").await.expect("release"),
        Transition::Applied
    );
    assert_eq!(
        jobs.start(&request("j4"), &lease("retry"))
            .await
            .expect("start"),
        Start::Started
    );
    assert_eq!(
        get(&client, &table, "j4", "leaseOwner").await.as_deref(),
        Some("retry")
    );
}

#[tokio::test]
async fn a_late_failure_never_overwrites_a_success() {
    let (client, table, jobs) = setup().await;
    jobs.start(&request("j5"), &lease("r1"))
        .await
        .expect("start");
    jobs.succeed("j5", "r1", &json!({"sleptSeconds": 1}))
        .await
        .expect("succeed");
    for request_id in [Some("r1"), Some("r0"), None] {
        assert_eq!(
            jobs.fail(&request("j5"), &failure(request_id))
                .await
                .expect("late failure"),
            Transition::Skipped
        );
    }
    assert_eq!(
        get(&client, &table, "j5", "status").await.as_deref(),
        Some("SUCCEEDED")
    );
    assert_eq!(get(&client, &table, "j5", "errorMessage").await, None);
}

#[tokio::test]
async fn a_failure_is_not_recorded_over_another_runs_live_lease() {
    let (client, table, jobs) = setup().await;
    jobs.start(&request("j6"), &lease("running-now"))
        .await
        .expect("start");
    for request_id in [Some("an-earlier-delivery"), None] {
        assert_eq!(
            jobs.fail(&request("j6"), &failure(request_id))
                .await
                .expect("fail"),
            Transition::Skipped
        );
    }
    assert_eq!(
        get(&client, &table, "j6", "status").await.as_deref(),
        Some("RUNNING")
    );
    // The run goes on and succeeds.
    assert_eq!(
        jobs.succeed("j6", "running-now", &json!({}))
            .await
            .expect("succeed"),
        Transition::Applied
    );
}

#[tokio::test]
async fn a_failure_is_recorded_over_its_own_lease_an_expired_one_or_a_released_one() {
    let (client, table, jobs) = setup().await;
    // Its own: the failed invocation's last try timed out, its lease has not quite run out.
    jobs.start(&request("own"), &lease("r-own"))
        .await
        .expect("start");
    // Expired: whoever held it cannot be running any more.
    jobs.start(&request("expired"), &expired("r-gone"))
        .await
        .expect("start");
    // Released: the failing run gave it back.
    jobs.start(&request("released"), &lease("r-failed"))
        .await
        .expect("start");
    jobs.release("released", "r-failed").await.expect("release");
    for (id, request_id) in [
        ("own", Some("r-own")),
        ("expired", Some("another")),
        ("released", None),
    ] {
        assert_eq!(
            jobs.fail(&request(id), &failure(request_id))
                .await
                .expect("fail"),
            Transition::Applied,
            "{id}"
        );
        assert_eq!(
            get(&client, &table, id, "status").await.as_deref(),
            Some("FAILED"),
            "{id}"
        );
    }
    // A job that failed cannot be started again, nor succeed.
    assert!(matches!(
        jobs.start(&request("own"), &lease("later"))
            .await
            .expect("start"),
        Start::Skipped(_)
    ));
    assert_eq!(
        jobs.succeed("own", "r-own", &json!({}))
            .await
            .expect("succeed"),
        Transition::Skipped
    );
}

#[tokio::test]
async fn a_failure_is_recorded_with_parameters_error_and_attempts() {
    let (client, table, jobs) = setup().await;
    jobs.start(&request("j2"), &expired("r1"))
        .await
        .expect("start");
    assert_eq!(
        jobs.fail(&request("j2"), &failure(Some("r1")))
            .await
            .expect("fail"),
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
        jobs.fail(&request("j3"), &failure(None))
            .await
            .expect("fail"),
        Transition::Applied
    );
    assert_eq!(
        get(&client, &table, "j3", "status").await.as_deref(),
        Some("FAILED")
    );
}

#[tokio::test]
async fn every_job_record_carries_its_id_as_the_api_request_id() {
    let (client, table, jobs) = setup().await;
    let id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef";
    assert_eq!(
        jobs.start(&request(id), &lease("r1")).await.expect("start"),
        Start::Started
    );
    assert_eq!(
        get(&client, &table, id, "apiRequestId").await.as_deref(),
        Some(id)
    );
    jobs.succeed(id, "r1", &json!({})).await.expect("succeed");
    assert_eq!(
        get(&client, &table, id, "apiRequestId").await.as_deref(),
        Some(id)
    );
    // A failure recorded for a job the table has never seen (its start write was lost).
    let unseen = "c6af9ac6-7b61-11e6-9a41-93e8deadbee0";
    assert_eq!(
        jobs.fail(&request(unseen), &failure(None))
            .await
            .expect("fail"),
        Transition::Applied
    );
    assert_eq!(
        get(&client, &table, unseen, "apiRequestId")
            .await
            .as_deref(),
        Some(unseen)
    );
}
