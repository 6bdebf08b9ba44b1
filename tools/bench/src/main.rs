//! `make bench`: what the project's own code costs, measured apart from AWS and moto, and what
//! the local gateway costs.
//!
//! 1. The Basic-auth decision (parse, two SHA-256 digests, constant-time compare), per request.
//! 2. An SQS batch of 10 and a Kinesis batch of 100 records over distinct keys, written to an
//!    in-memory store that answers each write after a fixed latency standing in for a DynamoDB
//!    round trip: the consumers fan records out, so a batch costs about one round trip (SQS, 10
//!    at once) or a few (Kinesis, 25 keys at once: the template's default `WriteConcurrency`),
//!    not one per record.
//! 3. The local gateway's Runtime API overhead per warm invoke (median, p99, mean), and its cold
//!    start, with the probe fixture function ([`runtime_api`]).
//! 4. The time from `make local` to its banner with a warm cargo cache, three runs and their
//!    median ([`make_local`]; skipped without the project's `.venv`).
//!
//! Results are printed; nothing here is asserted on time (speed goals live here, not in tests).

mod make_local;
mod runtime_api;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
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

/// The `p`th percentile (nearest rank) of `sorted`, which must be in ascending order.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// The repository's root, two levels above this crate.
fn repo_root() -> anyhow::Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .join("../..")
        .canonicalize()
        .with_context(|| format!("cannot find the repository above {}", manifest.display()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() == Some(std::ffi::OsStr::new(runtime_api::CHILD_FLAG)) {
        return runtime_api::child(args).await;
    }
    authorizer_bench();
    let latency = Duration::from_millis(10);
    sqs_bench(latency).await?;
    kinesis_bench(latency).await?;
    let root = repo_root()?;
    runtime_api::bench(&root)
        .await
        .context("runtime API overhead")?;
    make_local::bench(&root)
        .await
        .context("make local to its banner")?;
    Ok(())
}
