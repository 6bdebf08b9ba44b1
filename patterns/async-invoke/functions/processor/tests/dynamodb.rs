//! The processor against a real DynamoDB API (moto), with the real SDK client: the lease is a set
//! of condition expressions, so one run per job is proven on the wire here.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_invoke_jobs::{DynamoDbJobs, Job, JobError, JobRequest, JobStore, KEY_ATTRIBUTE, Lease};
use async_invoke_processor::{Invocation, Processor};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// A job that counts its runs and takes a while.
#[derive(Debug, Default)]
struct Counting {
    runs: AtomicUsize,
}

impl Job for Counting {
    fn run<'a>(&'a self, _: &'a Value) -> BoxFuture<'a, Result<Value, JobError>> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(json!({"done": true}))
        })
    }
}

async fn setup() -> (aws_sdk_dynamodb::Client, String, DynamoDbJobs) {
    let client = aws_sdk_dynamodb::Client::new(&testkit::sdk_config().await);
    let table = testkit::create_table(&client, "jobs", KEY_ATTRIBUTE).await;
    (
        client.clone(),
        table.clone(),
        DynamoDbJobs::new(client, table),
    )
}

async fn attribute(client: &aws_sdk_dynamodb::Client, table: &str, name: &str) -> Option<String> {
    let item = client
        .get_item()
        .table_name(table)
        .key(KEY_ATTRIBUTE, AttributeValue::S("job-1".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get")
        .item?;
    item.get(name).map(|v| match v {
        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
        other => format!("{other:?}"),
    })
}

fn request() -> JobRequest {
    JobRequest {
        job_id: "job-1".into(),
        parameters: json!({"seconds": 1}),
    }
}

fn invocation(id: &str) -> Invocation {
    Invocation {
        request_id: id.into(),
        deadline: Some(SystemTime::now() + Duration::from_secs(60)),
    }
}

#[tokio::test]
async fn concurrent_deliveries_of_one_job_run_it_once_in_dynamodb() {
    let (client, table, jobs) = setup().await;
    let job = Arc::new(Counting::default());
    let processor = Processor::new(Arc::new(jobs), job.clone());
    let deliveries = (0..4).map(|n| {
        let processor = processor.clone();
        tokio::spawn(async move {
            processor
                .handle(request(), &invocation(&format!("delivery-{n}")))
                .await
        })
    });
    let answers: Vec<Value> = futures::future::join_all(deliveries)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("no delivery is an error"))
        .collect();
    assert_eq!(job.runs.load(Ordering::SeqCst), 1, "{answers:?}");
    assert_eq!(
        answers.iter().filter(|a| a["skipped"] == true).count(),
        3,
        "{answers:?}"
    );
    assert_eq!(
        attribute(&client, &table, "status").await.as_deref(),
        Some("SUCCEEDED")
    );
    assert_eq!(
        attribute(&client, &table, "attempts").await.as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn a_delivery_after_a_run_died_takes_the_job_over_once_its_lease_expired() {
    let (client, table, jobs) = setup().await;
    // A run that started and then timed out: its lease ended with its invocation.
    jobs.start(
        &request(),
        &Lease::new(
            "timed-out",
            Duration::from_secs(900),
            Some(SystemTime::now() - Duration::from_millis(10)),
        ),
    )
    .await
    .expect("start");
    let job = Arc::new(Counting::default());
    let processor = Processor::new(Arc::new(jobs), job.clone());
    let answer = processor
        .handle(request(), &invocation("retry"))
        .await
        .expect("runs");
    assert_eq!(answer["status"], "SUCCEEDED");
    assert_eq!(job.runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        attribute(&client, &table, "leaseOwner").await.as_deref(),
        Some("retry")
    );
    assert_eq!(
        attribute(&client, &table, "attempts").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        attribute(&client, &table, "apiRequestId").await.as_deref(),
        Some("job-1"),
        "the job id is the API request id"
    );
}

#[tokio::test]
async fn a_delivery_while_another_run_holds_a_live_lease_is_skipped_in_dynamodb() {
    let (client, table, jobs) = setup().await;
    jobs.start(
        &request(),
        &Lease::new("running", Duration::from_secs(900), None),
    )
    .await
    .expect("start");
    let job = Arc::new(Counting::default());
    let processor = Processor::new(Arc::new(jobs), job.clone());
    let answer = processor
        .handle(request(), &invocation("duplicate"))
        .await
        .expect("a skip is not an error");
    assert_eq!(answer["skipped"], true);
    assert_eq!(job.runs.load(Ordering::SeqCst), 0);
    assert_eq!(
        attribute(&client, &table, "leaseOwner").await.as_deref(),
        Some("running")
    );
}
