//! `make bench`: what the project's own code costs, measured apart from AWS and moto.
//!
//! 1. The Basic-auth decision (parse, two SHA-256 digests, constant-time compare), per request.
//! 2. An SQS batch of 10 and a Kinesis batch of 100 records over distinct keys, written to an
//!    in-memory store that answers each write after a fixed latency standing in for a DynamoDB
//!    round trip: the consumers fan records out, so a batch costs about one round trip (SQS, 10
//!    at once) or a few (Kinesis, 25 keys at once: the template's default `WriteConcurrency`),
//!    not one per record.
//!
//! Results are printed; nothing here is asserted on time (speed goals live here, not in tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use dynamo_writer::{EventStore, Item, MemoryStore, PutOutcome, StoreError};
use futures::future::BoxFuture;

/// An in-memory store whose every write takes `latency`, like a network round trip.
struct SlowStore {
    inner: MemoryStore,
    latency: Duration,
}

impl EventStore for SlowStore {
    fn put_if_absent(&self, item: Item) -> BoxFuture<'_, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            tokio::time::sleep(self.latency).await;
            self.inner.put_if_absent(item).await
        })
    }

    fn put_if_newer<'a>(
        &'a self,
        item: Item,
        version: &'a str,
    ) -> BoxFuture<'a, Result<PutOutcome, StoreError>> {
        Box::pin(async move {
            tokio::time::sleep(self.latency).await;
            self.inner.put_if_newer(item, version).await
        })
    }
}

fn authorizer_bench() {
    let expected = basic_auth::Credentials {
        username: "api-user".into(),
        password: "x".repeat(32),
    };
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api-user:{}", "x".repeat(32)))
    );
    let rounds = 200_000u32;
    let started = Instant::now();
    let mut allowed = 0u32;
    for _ in 0..rounds {
        if basic_auth::decide(Some(std::hint::black_box(&header)), &expected).is_ok() {
            allowed += 1;
        }
    }
    let per = started.elapsed() / rounds;
    println!("basic-auth decision: {per:?} per request ({allowed} allowed of {rounds})");
}

async fn sqs_bench(latency: Duration) -> anyhow::Result<()> {
    let store = Arc::new(SlowStore {
        inner: MemoryStore::new("eventId"),
        latency,
    });
    let consumer = sqs_buffer_consumer::Consumer::new(store, 10);
    let records: Vec<_> = (0..10)
        .map(|i| serde_json::json!({"messageId": format!("m-{i}"), "body": format!("{{\"eventId\":\"e-{i}\"}}")}))
        .collect();
    let event = serde_json::from_value(serde_json::json!({ "Records": records }))?;
    let started = Instant::now();
    let answer = consumer.handle(event).await?;
    let took = started.elapsed();
    println!(
        "sqs-buffer batch of 10, {latency:?} per write: {took:?} ({:.1} round trips, {} failures)",
        took.as_secs_f64() / latency.as_secs_f64(),
        answer.batch_item_failures.len()
    );
    Ok(())
}

async fn kinesis_bench(latency: Duration) -> anyhow::Result<()> {
    let store = Arc::new(SlowStore {
        inner: MemoryStore::new("eventId"),
        latency,
    });
    let consumer = kinesis_stream_consumer::Consumer::new(store, 25, 1024 * 1024);
    let records = (0..100)
        .map(|i| batch_consumer::kinesis::KinesisEventRecord {
            event_id: Some(format!("shardId-000000000000:{}", i + 1)),
            event_source_arn: None,
            kinesis: batch_consumer::kinesis::KinesisData {
                partition_key: format!("key-{i}"),
                sequence_number: (i + 1).to_string(),
                data: base64::engine::general_purpose::STANDARD.encode(format!("{{\"n\":{i}}}")),
                approximate_arrival_timestamp: None,
            },
        })
        .collect();
    let started = Instant::now();
    let answer = consumer
        .handle(batch_consumer::kinesis::KinesisEvent { records })
        .await?;
    let took = started.elapsed();
    println!(
        "kinesis-stream batch of 100 over distinct keys, {latency:?} per write: {took:?} ({:.1} round trips, {} failures)",
        took.as_secs_f64() / latency.as_secs_f64(),
        answer.batch_item_failures.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    authorizer_bench();
    let latency = Duration::from_millis(10);
    sqs_bench(latency).await?;
    kinesis_bench(latency).await?;
    Ok(())
}
