//! The local gateway's Runtime API overhead per invoke: the probe fixture function
//! (`local/gateway/tests/fixtures/functions/probe`, its debug build, as `make local` runs
//! functions) behind the gateway's own execution environment and Runtime API
//! ([`local_gateway::functions::Function`]), launched through the gateway's launcher
//! (`local-gateway --run-environment`). One cold invoke, then warm ones one after another, each
//! `{"echo": 1}`, which the probe answers without touching DynamoDB.
//!
//! What a warm invoke measures is the gateway's side (the pool, the Runtime API's `next` and
//! `response`, the REPORT line), loopback HTTP and the function's runtime client; the handler
//! itself does next to nothing.
//!
//! The gateway prints Lambda's START, END and REPORT lines on stderr for every invocation, and
//! nothing in its API turns them off, so the invokes run in a child process of the bench
//! (`patterns-bench --runtime-api-child <launcher> <binary>`) whose stderr goes to a file:
//! thousands of lines stay off the terminal, and the terminal's speed stays out of the numbers.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use local_gateway::functions::build::{cargo_build, cargo_executable};
use local_gateway::functions::{Function, Spec, report::LogFormat};
use serde_json::{Value, json};

/// The argument that makes the bench the child process that invokes.
pub const CHILD_FLAG: &str = "--runtime-api-child";

/// Lines of the child's stderr shown when it fails.
const TAIL_LINES: usize = 20;

/// Builds the launcher and the probe, then measures in a child process.
pub async fn bench(root: &Path, warm_invokes: usize) -> Result<()> {
    let launcher = cargo_executable(
        root,
        &["--locked", "-p", "local-gateway", "--bin", "local-gateway"],
        "local-gateway",
    )
    .await?;
    let probe_dir = root.join("local/gateway/tests/fixtures/functions/probe");
    let probe = cargo_build(&probe_dir, "local-probe-function", false)
        .await
        .context("building the probe function")?;
    let log = std::env::temp_dir().join(format!(
        "patterns-bench-runtime-api-{}.log",
        std::process::id()
    ));
    let file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
    let status = tokio::process::Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(&launcher)
        .arg(&probe)
        .arg(warm_invokes.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(file)
        .kill_on_drop(true)
        .status()
        .await
        .context("cannot start the runtime API measurement")?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail = tail(&text, TAIL_LINES);
        bail!(
            "the runtime API measurement failed ({status}); its stderr, kept in {}, ends with:\n{tail}",
            log.display()
        );
    }
    let _ = std::fs::remove_file(&log);
    Ok(())
}

/// The child process: `args` are the launcher, the function's binary and how many warm invokes
/// to measure.
pub async fn child(mut args: impl Iterator<Item = OsString>) -> Result<()> {
    let launcher = PathBuf::from(args.next().context("the launcher's path is missing")?);
    let binary = PathBuf::from(args.next().context("the function's binary is missing")?);
    let warm_invokes: usize = args
        .next()
        .and_then(|n| n.to_str().and_then(|n| n.parse().ok()))
        .filter(|n| *n > 0)
        .context("the number of warm invokes is missing")?;
    let spec = Spec {
        id: "BenchProbe".into(),
        name: "bench-probe".into(),
        arn: "arn:aws:lambda:us-east-1:123456789012:function:bench-probe".into(),
        binary,
        launcher,
        handler: "bootstrap".into(),
        // The probe needs a table name at init; the echo path never uses it.
        variables: [("TABLE_NAME".to_owned(), "bench-probe-unused".to_owned())].into(),
        memory_mb: 128,
        timeout: Duration::from_secs(10),
        log_group: "/aws/lambda/bench-probe".into(),
        log_format: LogFormat::Text,
        log_level: None,
        region: "us-east-1".into(),
        // Nothing listens there: the echo path makes no AWS call.
        endpoint: "http://127.0.0.1:9".into(),
    };
    let function = Function::new(spec, json!({}), 1, false);
    let event = json!({"echo": 1});

    let started = Instant::now();
    let answer = function.invoke(event.clone()).await;
    let cold = started.elapsed();
    check(answer).context("the cold invoke failed")?;

    let mut warm = Vec::with_capacity(warm_invokes);
    for n in 1..=warm_invokes {
        let payload = event.clone();
        let started = Instant::now();
        let answer = function.invoke(payload).await;
        warm.push(started.elapsed());
        check(answer).with_context(|| format!("warm invoke {n} failed"))?;
    }
    let (environments, cold_starts) = function.environment_counts();
    let mean = warm.iter().sum::<Duration>() / warm_invokes as u32;
    warm.sort_unstable();
    println!(
        "runtime API, probe function (its debug build; measured: the gateway's side, loopback HTTP and the runtime client):"
    );
    println!("  cold start, including init: {cold:?}");
    println!(
        "  {warm_invokes} warm invokes in sequence: median {}, p99 {}, mean {} ({environments} environment, {cold_starts} cold start)",
        micros(crate::percentile(&warm, 50.0)),
        micros(crate::percentile(&warm, 99.0)),
        micros(mean),
    );
    println!(
        "  (the {} START/END/REPORT lines went to a file, not the terminal)",
        3 * (warm_invokes + 1)
    );
    Ok(())
}

/// The probe's answer to `{"echo": 1}` echoes 1.
fn check(answer: Result<Value, local_gateway::functions::InvokeError>) -> Result<()> {
    let answer = answer.map_err(|e| anyhow!("{e}"))?;
    if answer["echo"] != 1 {
        bail!("the probe answered {answer}, not the echo of 1");
    }
    Ok(())
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
