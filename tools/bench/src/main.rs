//! `make bench`: what the functions users deploy cost, side by side with the Python and Node.js
//! handlers they would otherwise write, and what the project's own parts cost.
//!
//! 1. The Basic-auth decision (parse, two SHA-256 digests, constant-time compare), per request.
//! 2. Every function of the templates, built with the release profile, run as Lambda runs it
//!    through the local gateway's execution environment and Runtime API against a stand-in for
//!    DynamoDB and Secrets Manager ([`stub_aws`]): init, first and warm invocations, peak
//!    memory, sizes ([`functions`], [`subjects`]); and the seed-style Python (boto3,
//!    awslambdaric) and Node.js (SDK v3) authorizer and consumers doing the same work.
//! 3. Round trips under latency: the consumers against the stand-in answering each call after a
//!    fixed delay, over batch sizes and write concurrencies ([`round_trips`]).
//! 4. The first invocation with a connection made during init, and without ([`warmup`]).
//! 5. The local gateway's Runtime API overhead per warm invoke ([`runtime_api`]) and the time
//!    from `make local` to its banner ([`make_local`]; skipped without the project's `.venv`,
//!    and with `--quick`).
//!
//! 2 to 4 are written to `docs/bench/` (`--out`): `results.json`, `results.md` and the charts
//! (`tools/bench/chart.py`, matplotlib). `--quick` measures once each, with the debug builds
//! `make functions` made, into a temporary directory: the test that keeps this code working
//! (`tests/one_iteration.rs`). Nothing here is asserted on time: speed goals live here, not in
//! tests.

mod functions;
mod make_local;
mod output;
mod report;
mod round_trips;
mod runtime_api;
mod stub_aws;
mod subjects;
mod warmup;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;

use crate::functions::{Host, Runtime};
use crate::report::{FunctionResult, Results, RoundTrip};

fn authorizer_bench(rounds: u32) {
    let expected = basic_auth::Credentials {
        username: "api-user".into(),
        password: "x".repeat(32),
    };
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api-user:{}", "x".repeat(32)))
    );
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

/// What the command line asked for.
#[derive(Debug)]
struct Options {
    /// One measurement of each, debug builds, no `make local`.
    quick: bool,
    /// Where the results go.
    out: PathBuf,
    /// The local gateway to launch environments with, instead of building it.
    launcher: Option<PathBuf>,
}

const USAGE: &str = "usage: patterns-bench [--quick] [--out DIR] [--launcher PATH]
  --quick          measure each thing once, with the debug builds of `make functions`, and skip
                   `make local` (what the test of the bench runs)
  --out DIR        where results.json, results.md and the charts go (default docs/bench)
  --launcher PATH  the local-gateway binary that starts the environments (default: built here)";

fn options(
    root: &Path,
    mut args: impl Iterator<Item = std::ffi::OsString>,
) -> anyhow::Result<Options> {
    let mut options = Options {
        quick: false,
        out: root.join("docs/bench"),
        launcher: None,
    };
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--quick") => options.quick = true,
            Some("--out") => {
                options.out = PathBuf::from(args.next().context("--out needs a directory")?);
            }
            Some("--launcher") => {
                let path = args.next().context("--launcher needs a path")?;
                options.launcher = Some(PathBuf::from(path));
            }
            Some("--help" | "-h") => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {arg:?}\n{USAGE}"),
        }
    }
    Ok(options)
}

/// One line about the machine, for the results.
async fn machine(root: &Path) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let version = |program: String, arg: &'static str| async move {
        tokio::process::Command::new(&program)
            .arg(arg)
            .output()
            .await
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text).trim().to_owned()
            })
            .unwrap_or_else(|| format!("{program}: not found"))
    };
    let date = version("date".into(), "-u").await;
    let node = root
        .join(".venv-bench/nodejs/bin/node")
        .display()
        .to_string();
    format!(
        "Measured {date} on {cpu} ({cores} cores), x86_64 Linux; {}, {}, Node.js {}.",
        version("rustc".into(), "--version").await,
        version("python3".into(), "--version").await,
        version(node, "--version").await,
    )
}

/// Part 2 to 4: the functions, the seeds, round trips and the warm-up, written to `options.out`.
async fn compare(root: &Path, options: &Options) -> anyhow::Result<()> {
    output::keep_quietly();
    let profile = if options.quick { "debug" } else { "release" };
    println!("building every function of template.yaml ({profile} profile) and the local gateway");
    let rust = subjects::rust_functions(root, !options.quick).await?;
    let seeds = subjects::seeds(root)?;
    let launcher = match &options.launcher {
        Some(path) => path.clone(),
        None => {
            local_gateway::functions::build::cargo_executable(
                root,
                &["--locked", "-p", "local-gateway", "--bin", "local-gateway"],
                "local-gateway",
            )
            .await?
        }
    };
    let stub = stub_aws::StubAws::start().await?;
    let host = Host {
        launcher,
        endpoint: stub.endpoint().to_owned(),
        root: root.to_path_buf(),
    };
    let (cold, warm) = if options.quick { (1, 1) } else { (10, 100) };
    println!("each function: {cold} cold starts, then {warm} warm invocations");
    let mut functions = Vec::new();
    for function in &rust {
        let subject = &function.subject;
        let measured = functions::measure(&host, root, subject, &[], cold, warm)
            .await
            .with_context(|| format!("measuring {}", subject.label()))?;
        let size = subjects::rust_size(root, function)?;
        functions.push(FunctionResult::new(subject, &measured, &size));
    }
    for subject in &seeds {
        let measured = functions::measure(&host, root, subject, &[], cold, warm)
            .await
            .with_context(|| format!("measuring {}", subject.label()))?;
        functions.push(FunctionResult::new(
            subject,
            &measured,
            &subjects::seed_size(subject),
        ));
    }
    functions.sort_by_key(|f| (order(f.workload), order_of_runtime(f.runtime)));
    for f in &functions {
        println!(
            "  {:<28} {:<8} init {:>7.1} ms  first {:>7.1} ms  warm {:>7.2} ms (p99 {:>7.2})  peak {:>5.1} MiB",
            f.workload,
            f.runtime,
            f.init_ms,
            f.first_ms,
            f.warm_median_ms,
            f.warm_p99_ms,
            f.peak_mib
        );
    }

    let plan = if options.quick {
        round_trips::Plan {
            delay: Duration::from_millis(5),
            batches: vec![1, 10],
            concurrencies: vec![1, 10],
            repeats: 1,
        }
    } else {
        round_trips::Plan {
            delay: Duration::from_millis(20),
            batches: vec![1, 10, 100],
            concurrencies: vec![1, 2, 5, 10, 25, 50, 100],
            repeats: 3,
        }
    };
    println!(
        "round trips: every call answered after {:?}, batches {:?}, write concurrency {:?}",
        plan.delay, plan.batches, plan.concurrencies
    );
    let mut subjects_all: Vec<_> = rust.iter().map(|f| f.subject.clone()).collect();
    subjects_all.extend(seeds.iter().cloned());
    let points = round_trips::sweep(&host, &stub, root, &subjects_all, &plan)
        .await
        .context("round trips under latency")?;
    for p in &points {
        println!(
            "  {:<18} {:<8} batch {:>3}  concurrency {:>3}: {:>8.1?} = {:>5.2} round trips",
            p.workload.label(),
            p.runtime.label(),
            p.batch,
            p.concurrency,
            p.took,
            p.round_trips
        );
    }

    println!(
        "the first invocation, with the connection made during init (PRECONNECT) and without:"
    );
    let warmups = warmup::compare(&host, root, &rust, if options.quick { 1 } else { 15 })
        .await
        .context("the first invocation with a connection made during init")?;

    let results = Results {
        machine: machine(root).await,
        settings: if options.quick {
            "`patterns-bench --quick`: one measurement each, debug builds; not figures to quote."
                .into()
        } else {
            format!(
                "`make bench`: release builds; {cold} cold starts and {warm} warm invocations per function; \
                 128 MB declared (not enforced here); DynamoDB and Secrets Manager answered by a stand-in on loopback."
            )
        },
        functions,
        delay_ms: plan.delay.as_secs_f64() * 1e3,
        round_trips: points.iter().map(RoundTrip::from).collect(),
        warmup: warmups,
    };
    let python = root.join(".venv-bench/bin/python");
    results.write(&options.out, root, &python).await?;
    println!("results written to {}", options.out.display());
    Ok(())
}

/// The tables' order of the runtimes: Rust, Python, Node.js.
fn order_of_runtime(label: &str) -> usize {
    [Runtime::Rust, Runtime::Python, Runtime::Node]
        .iter()
        .position(|r| r.label() == label)
        .unwrap_or(usize::MAX)
}

/// The tables' order of the workloads.
fn order(label: &str) -> usize {
    ["authorizer", "SQS consumer", "Kinesis consumer"]
        .iter()
        .position(|l| *l == label)
        .unwrap_or(usize::MAX)
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
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().map(std::ffi::OsString::as_os_str)
        == Some(std::ffi::OsStr::new(runtime_api::CHILD_FLAG))
    {
        args.next();
        return runtime_api::child(args).await;
    }
    let root = repo_root()?;
    let options = options(&root, args)?;
    authorizer_bench(if options.quick { 1_000 } else { 200_000 });
    compare(&root, &options).await?;
    runtime_api::bench(&root, if options.quick { 10 } else { 2_000 })
        .await
        .context("runtime API overhead")?;
    if options.quick {
        println!("make local to its banner: skipped (--quick)");
    } else {
        make_local::bench(&root)
            .await
            .context("make local to its banner")?;
    }
    Ok(())
}
