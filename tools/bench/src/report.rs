//! The results, written under `docs/bench/` (or `--out`): `results.json` (every figure),
//! `results.md` (the tables) and the charts, which `tools/bench/chart.py` draws with matplotlib
//! from `results.json`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use crate::functions::{Measured, Runtime, Subject, Workload};
use crate::round_trips::Point;
use crate::subjects::Size;

/// One function's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionResult {
    /// `SQS consumer`.
    pub workload: &'static str,
    /// `Rust`, `Python`, `Node.js`.
    pub runtime: &'static str,
    /// What one invocation is given.
    pub event: &'static str,
    /// Fresh environments measured.
    pub cold_starts: usize,
    /// Median init, ms.
    pub init_ms: f64,
    /// Median first invocation of a fresh environment, ms.
    pub first_ms: f64,
    /// Warm invocations measured.
    pub warm_invocations: usize,
    /// Median warm invocation, ms.
    pub warm_median_ms: f64,
    /// p99 warm invocation, ms.
    pub warm_p99_ms: f64,
    /// Peak resident memory, MiB (Lambda's `Max Memory Used` counts in these).
    pub peak_mib: f64,
    /// This machine's binary, bytes (Rust).
    pub native_bytes: Option<u64>,
    /// arm64 `bootstrap` from `make build`, bytes (Rust, when built).
    pub arm64_bytes: Option<u64>,
    /// That `bootstrap` zipped, bytes.
    pub arm64_zip_bytes: Option<u64>,
    /// The handler's source, bytes (seeds).
    pub source_bytes: Option<u64>,
}

impl FunctionResult {
    /// The figures of `subject`.
    pub fn new(subject: &Subject, measured: &Measured, size: &Size) -> Self {
        let mut warm = measured.warm.clone();
        warm.sort_unstable();
        Self {
            workload: subject.workload.label(),
            runtime: subject.runtime.label(),
            event: subject.workload.event_label(),
            cold_starts: measured.init.len(),
            init_ms: median_ms(&measured.init),
            first_ms: median_ms(&measured.first),
            warm_invocations: warm.len(),
            warm_median_ms: ms(crate::percentile(&warm, 50.0)),
            warm_p99_ms: ms(crate::percentile(&warm, 99.0)),
            peak_mib: measured.peak_kb as f64 / 1024.0,
            native_bytes: size.native,
            arm64_bytes: size.arm64,
            arm64_zip_bytes: size.arm64_zip,
            source_bytes: size.source,
        }
    }
}

/// One round-trip setting's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTrip {
    /// `SQS consumer`.
    pub workload: &'static str,
    /// `Rust`, `Python`, `Node.js`.
    pub runtime: &'static str,
    /// Records per batch.
    pub batch: usize,
    /// `WRITE_CONCURRENCY`.
    pub concurrency: usize,
    /// Median batch time, ms.
    pub took_ms: f64,
    /// Batch time over the delay.
    pub round_trips: f64,
    /// Most calls at once.
    pub max_in_flight: u64,
}

impl From<&Point> for RoundTrip {
    fn from(p: &Point) -> Self {
        Self {
            workload: p.workload.label(),
            runtime: p.runtime.label(),
            batch: p.batch,
            concurrency: p.concurrency,
            took_ms: ms(p.took),
            round_trips: p.round_trips,
            max_in_flight: p.max_in_flight,
        }
    }
}

/// The first invocation with and without a connection made during init.
#[derive(Debug, Clone, Serialize)]
pub struct Warmup {
    /// `SQS consumer`.
    pub workload: &'static str,
    /// `PRECONNECT` set.
    pub preconnect: bool,
    /// Fresh environments measured.
    pub cold_starts: usize,
    /// Median init, ms.
    pub init_ms: f64,
    /// Median first invocation, ms.
    pub first_ms: f64,
    /// Median warm invocation, ms.
    pub warm_median_ms: f64,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// The machine and the tools.
    pub machine: String,
    /// How the run was made (`make bench`, or `--quick`).
    pub settings: String,
    /// Per function.
    pub functions: Vec<FunctionResult>,
    /// The stand-in's delay per call in the round-trip sweep, ms.
    pub delay_ms: f64,
    /// The round-trip sweep.
    pub round_trips: Vec<RoundTrip>,
    /// Connection during init, or not.
    pub warmup: Vec<Warmup>,
}

/// The median of `times` (in any order), in ms.
pub fn median_ms(times: &[Duration]) -> f64 {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    ms(crate::percentile(&sorted, 50.0))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), |b| format!("{:.2} MB", b as f64 / 1e6))
}

fn kb(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".into(), |b| format!("{:.1} kB", b as f64 / 1e3))
}

impl Results {
    /// The figures of `workload` in `runtime`.
    fn find(&self, workload: Workload, runtime: Runtime) -> Option<&FunctionResult> {
        self.functions
            .iter()
            .find(|f| f.workload == workload.label() && f.runtime == runtime.label())
    }

    /// The tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# `make bench`: results\n");
        let _ = writeln!(out, "{}\n\n{}\n", self.machine, self.settings);
        let _ = writeln!(out, "## Each function, cold and warm\n");
        let _ = writeln!(
            out,
            "Init: the process's start to its first `next`. First: the first invocation of a fresh environment. \
             Warm: the later ones. Peak: the most resident memory of the function's process. \
             Sizes: the binary run here, and the arm64 `bootstrap` and its zip from `make build` (\"-\": not built); \
             a seed's size is its handler's source (boto3 and the SDK v3 come with Lambda's runtime).\n"
        );
        let _ = writeln!(
            out,
            "| function | runtime | event | init | first | warm median | warm p99 | peak | binary here | arm64 bootstrap | arm64 zip |"
        );
        let _ = writeln!(out, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for f in &self.functions {
            let here = if f.source_bytes.is_some() {
                kb(f.source_bytes)
            } else {
                mb(f.native_bytes)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1} ms | {:.1} ms | {:.2} ms | {:.2} ms | {:.1} MiB | {} | {} | {} |",
                f.workload,
                f.runtime,
                f.event,
                f.init_ms,
                f.first_ms,
                f.warm_median_ms,
                f.warm_p99_ms,
                f.peak_mib,
                here,
                mb(f.arm64_bytes),
                mb(f.arm64_zip_bytes),
            );
        }
        let _ = writeln!(out, "\n## Side by side: how many times Rust's figure\n");
        let _ = writeln!(
            out,
            "| function | Python/Rust init | Node.js/Rust init | Python/Rust first | Node.js/Rust first | Python/Rust warm | Node.js/Rust warm | Python/Rust peak | Node.js/Rust peak |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for workload in [
            Workload::Authorizer,
            Workload::SqsBatch,
            Workload::KinesisBatch,
        ] {
            let Some(rust) = self.find(workload, Runtime::Rust) else {
                continue;
            };
            let ratio = |runtime: Runtime, pick: fn(&FunctionResult) -> f64| {
                self.find(workload, runtime)
                    .filter(|_| pick(rust) > 0.0)
                    .map_or_else(|| "-".into(), |f| format!("{:.1}x", pick(f) / pick(rust)))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                workload.label(),
                ratio(Runtime::Python, |f| f.init_ms),
                ratio(Runtime::Node, |f| f.init_ms),
                ratio(Runtime::Python, |f| f.first_ms),
                ratio(Runtime::Node, |f| f.first_ms),
                ratio(Runtime::Python, |f| f.warm_median_ms),
                ratio(Runtime::Node, |f| f.warm_median_ms),
                ratio(Runtime::Python, |f| f.peak_mib),
                ratio(Runtime::Node, |f| f.peak_mib),
            );
        }
        let _ = writeln!(
            out,
            "\n## Round trips under latency ({} ms per call)\n",
            self.delay_ms
        );
        let _ = writeln!(
            out,
            "Each DynamoDB call answered after {} ms; round trips = the median batch's time over that delay. \
             The seeds write one record after another (concurrency 1).\n",
            self.delay_ms
        );
        let _ = writeln!(
            out,
            "| consumer | runtime | batch | write concurrency | batch time | round trips | most calls at once |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
        for p in &self.round_trips {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.1} ms | {:.2} | {} |",
                p.workload,
                p.runtime,
                p.batch,
                p.concurrency,
                p.took_ms,
                p.round_trips,
                p.max_in_flight
            );
        }
        if !self.warmup.is_empty() {
            let _ = writeln!(out, "\n## A connection made during init (`PRECONNECT`)\n");
            let _ = writeln!(
                out,
                "| function | connection during init | init | first | init + first | warm median |"
            );
            let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
            for w in &self.warmup {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} ms | {:.2} ms | {:.1} ms | {:.2} ms |",
                    w.workload,
                    if w.preconnect { "yes" } else { "no" },
                    w.init_ms,
                    w.first_ms,
                    w.init_ms + w.first_ms,
                    w.warm_median_ms
                );
            }
        }
        out
    }

    /// Writes `results.json` and `results.md` into `dir`, then the charts with `python`.
    pub async fn write(&self, dir: &Path, root: &Path, python: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = dir.join("results.json");
        std::fs::write(&json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        let md = dir.join("results.md");
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("cannot write {}", md.display()))?;
        let status = tokio::process::Command::new(python)
            .arg(root.join("tools/bench/chart.py"))
            .arg(&json)
            .arg(dir)
            .status()
            .await
            .with_context(|| format!("cannot run {}", python.display()))?;
        if !status.success() {
            bail!("tools/bench/chart.py failed ({status})");
        }
        Ok(())
    }
}
