//! The first invocation after a cold start, with the connection made during init
//! (`PRECONNECT`, the default: the consumers call DynamoDB's `DescribeEndpoints`, the authorizer
//! reads its secret) and without (`PRECONNECT=false`), for every Rust function that makes one.
//!
//! On Lambda, init runs before the first event is handed over, so what init takes on is taken off
//! the first invocation; on a cold start the caller waits for both, but with provisioned
//! concurrency (or an environment Lambda starts ahead of need) init is already done.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::functions::{self, Host, Workload};
use crate::report::{Warmup, median_ms};
use crate::subjects::RustFunction;

/// Measures each function `cold` times with `PRECONNECT` off and on, with 20 warm invocations
/// after the last cold start of each.
pub async fn compare(
    host: &Host,
    root: &Path,
    rust: &[RustFunction],
    cold: usize,
) -> Result<Vec<Warmup>> {
    let warm = if cold > 1 { 20 } else { 1 };
    let mut out = Vec::new();
    for function in rust {
        let subject = &function.subject;
        if subject.workload == Workload::Processor {
            continue; // its sample job sleeps a second: the difference would drown
        }
        for preconnect in [false, true] {
            let extra = [(aws_setup::PRECONNECT_VARIABLE, preconnect.to_string())];
            let measured = functions::measure(host, root, subject, &extra, cold, warm)
                .await
                .with_context(|| format!("{} with PRECONNECT={preconnect}", subject.label()))?;
            let w = Warmup {
                workload: subject.workload.label(),
                preconnect,
                cold_starts: measured.init.len(),
                init_ms: median_ms(&measured.init),
                first_ms: median_ms(&measured.first),
                warm_median_ms: median_ms(&measured.warm),
            };
            println!(
                "  {:<28} PRECONNECT={:<5} init {:>6.1} ms  first {:>6.2} ms  init + first {:>6.1} ms  warm {:>5.2} ms",
                w.workload,
                preconnect,
                w.init_ms,
                w.first_ms,
                w.init_ms + w.first_ms,
                w.warm_median_ms
            );
            out.push(w);
        }
    }
    Ok(out)
}
