//! Round trips under latency: each consumer against the AWS stand-in answering every call after
//! a fixed delay, for batch sizes 1, 10 and 100 and, for the Rust consumers, write concurrency
//! (`WRITE_CONCURRENCY`) from 1 to 100. A batch's time divided by the delay is how many round
//! trips it cost: what the defaults of `WRITE_CONCURRENCY` are chosen by.
//!
//! Each setting gets a fresh environment, one invocation to warm it (its first pays for the
//! connections), then `repeats` measured ones, of which the median counts.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::functions::{self, Host, Runtime, Subject, Workload};
use crate::stub_aws::StubAws;

/// One measured setting.
#[derive(Debug, Clone)]
pub struct Point {
    /// The consumer.
    pub workload: Workload,
    /// What it is written in.
    pub runtime: Runtime,
    /// Records per batch.
    pub batch: usize,
    /// `WRITE_CONCURRENCY` (1 for the seeds, which write one record after another).
    pub concurrency: usize,
    /// The median batch's time.
    pub took: Duration,
    /// `took` over the delay.
    pub round_trips: f64,
    /// Most calls the stand-in held at once during the measured batches.
    pub max_in_flight: u64,
}

/// What to sweep.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The stand-in's delay per call.
    pub delay: Duration,
    /// Batch sizes.
    pub batches: Vec<usize>,
    /// Write concurrencies of the Rust consumers.
    pub concurrencies: Vec<usize>,
    /// Measured invocations per setting.
    pub repeats: usize,
}

/// Sweeps `plan` over the consumers among `subjects` (the Rust ones over every concurrency, the
/// seeds at their one).
pub async fn sweep(
    host: &Host,
    stub: &StubAws,
    root: &Path,
    subjects: &[Subject],
    plan: &Plan,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    let consumers = subjects
        .iter()
        .filter(|s| matches!(s.workload, Workload::SqsBatch | Workload::KinesisBatch));
    for subject in consumers {
        let concurrencies = match subject.runtime {
            Runtime::Rust => plan.concurrencies.clone(),
            _ => vec![1],
        };
        for &batch in &plan.batches {
            let event = subject.workload.event(root, batch)?;
            for &concurrency in &concurrencies {
                let extra = [("WRITE_CONCURRENCY", concurrency.to_string())];
                let spec = host.spec(subject, &extra)?;
                let mut env = functions::start(&spec).await?;
                stub.set_delay(plan.delay);
                functions::invoke(&spec, &mut env, &event).await?;
                stub.reset();
                let mut times = Vec::with_capacity(plan.repeats);
                for _ in 0..plan.repeats.max(1) {
                    let (took, answer) = functions::invoke(&spec, &mut env, &event).await?;
                    subject.workload.check(&answer)?;
                    times.push(took);
                }
                stub.set_delay(Duration::ZERO);
                times.sort_unstable();
                let took = crate::percentile(&times, 50.0);
                points.push(Point {
                    workload: subject.workload,
                    runtime: subject.runtime,
                    batch,
                    concurrency,
                    took,
                    round_trips: took.as_secs_f64() / plan.delay.as_secs_f64(),
                    max_in_flight: stub.counts().max_in_flight,
                });
            }
        }
    }
    Ok(points)
}
