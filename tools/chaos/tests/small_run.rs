//! The chaos run in `make test`: a few hundred requests with the same faults as `make chaos`,
//! with a fixed seed, and the same run with a consumer that acknowledges before it writes,
//! which must fail. Both runs go one after the other (one test): each starts all four patterns
//! and on a 2-core machine two at once would only slow each other down.
//!
//! Waiting: the run itself waits on conditions with its own bounds (`run::DRAIN`, the
//! gateway's start); this test only waits for the process to exit.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Requests of the small run: enough for every kind of request in every pattern and for each
/// fault to meet traffic, few enough to finish in minutes on a 2-core machine.
const REQUESTS: &str = "400";
/// The fixed seed of `make test`'s run.
const SEED: &str = "14";

fn gateway() -> PathBuf {
    // Cargo puts test executables in target/<profile>/deps and binaries one level up, where
    // `make functions` (which `make test` runs first) built the gateway.
    let chaos = PathBuf::from(env!("CARGO_BIN_EXE_patterns-chaos"));
    let gateway = chaos.with_file_name("local-gateway");
    assert!(
        gateway.is_file(),
        "no local gateway at {}: run `make functions` first",
        gateway.display()
    );
    gateway
}

fn run(out: &Path, extra: &[String]) -> (i32, String, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_patterns-chaos"))
        .current_dir(testkit::repo_root())
        .env("MOTO_ENDPOINT", testkit::moto_endpoint())
        .args(["--requests", REQUESTS, "--seed", SEED, "--out"])
        .arg(out)
        .arg("--gateway")
        .arg(gateway())
        .args(extra)
        .output()
        .expect("run patterns-chaos");
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read(out.join("report.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    (output.status.code().unwrap_or(-1), text, report)
}

fn pattern<'a>(report: &'a serde_json::Value, name: &str, text: &str) -> &'a serde_json::Value {
    report["patterns"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["pattern"] == name))
        .unwrap_or_else(|| panic!("no {name} in the report: {report}\n{text}"))
}

#[test]
fn a_seeded_chaos_run_accounts_for_every_request_and_a_consumer_acking_before_writing_fails_it() {
    let dir = std::env::temp_dir().join(testkit::unique("chaos"));

    // 1. The real consumers: nothing lost, nothing doubled, every fault class injected.
    let (code, text, report) = run(&dir.join("healthy"), &[]);
    assert_eq!(code, 0, "the chaos run failed:\n{text}");
    for name in ["sqs-buffer", "user-api", "kinesis-stream", "async-invoke"] {
        let p = pattern(&report, name, &text);
        assert!(
            p["accepted"].as_u64().unwrap() > 0,
            "{name} accepted nothing: {p}"
        );
        assert_eq!(p["problems"], serde_json::json!([]), "{name}: {p}");
        let line = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}:\n{text}"));
        assert!(line.ends_with("| ok"), "{line}");
    }
    for class in [
        "InternalServerError",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "delayed",
        "environment killed mid-invocation",
        "function timed out",
        "gateway restarted",
        "burst above consumer concurrency",
    ] {
        assert!(
            report["faults"][class].as_u64().unwrap_or(0) > 0,
            "{class} was never injected: {}",
            report["faults"]
        );
    }
    assert!(text.contains("chaos: PASSED"), "{text}");

    // 2. The same run, the sqs-buffer consumer replaced by one that acknowledges each batch
    // before its writes and drops their outcome: the faults lose records, and the run says so.
    let broken = PathBuf::from(env!("CARGO_BIN_EXE_ack-before-write"));
    let (code, text, report) = run(
        &dir.join("broken"),
        &[
            "--function-binary".into(),
            format!("SqsBuffer.ConsumerFunction={}", broken.display()),
        ],
    );
    assert_eq!(
        code, 1,
        "a run with a consumer that loses records passed:\n{text}"
    );
    let p = pattern(&report, "sqs-buffer", &text);
    let lost = p["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|problem| problem.get("Lost").is_some())
        .count();
    assert!(
        lost > 0,
        "the broken consumer lost nothing the account saw: {p}"
    );
    assert!(text.contains("chaos: FAILED"), "{text}");
    let line = text.lines().find(|l| l.starts_with("sqs-buffer")).unwrap();
    assert!(line.contains("FAILED: ") && line.contains("lost"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `make chaos BROKEN=1` (the default 10,000 requests) runs the same broken consumer as the small
/// run above, through the same `--function-binary` of the same executable: its failure is the
/// small run's failure at scale (the README gives the figures of such a run). `make -n` prints
/// the recipe without running it.
#[test]
fn make_chaos_broken_runs_the_full_run_with_the_consumer_that_acks_before_writing() {
    let broken = PathBuf::from(env!("CARGO_BIN_EXE_ack-before-write"));
    // The Makefile finds the binaries under $(CARGO_TARGET_DIR)/debug: the one this test's
    // executables were built into.
    let target_dir = broken.parent().and_then(Path::parent).unwrap().to_owned();
    let make = |args: &[&str]| {
        Command::new("make")
            .current_dir(testkit::repo_root())
            .env("CARGO_TARGET_DIR", &target_dir)
            // The recipe as a user's plain `make chaos` gets it: not the flags of the `make
            // test` this may run under, nor a size or seed from the caller's environment.
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .env_remove("MAKELEVEL")
            .env_remove("CHAOS_REQUESTS")
            .env_remove("SEED")
            .env_remove("BROKEN")
            .args(args)
            .output()
            .expect("run make -n chaos")
    };
    let output = make(&["-n", "chaos", "BROKEN=1"]);
    let recipe = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{recipe}");
    let run = recipe
        .lines()
        .skip_while(|l| !l.contains("patterns-chaos\" --requests"))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(run.contains("--requests 10000"), "{recipe}");
    assert!(
        run.contains(&format!(
            "--function-binary SqsBuffer.ConsumerFunction={}",
            broken.display()
        )),
        "make chaos BROKEN=1 does not run {}:\n{recipe}",
        broken.display()
    );
    let healthy = make(&["-n", "chaos"]);
    assert!(
        !String::from_utf8_lossy(&healthy.stdout).contains("--function-binary"),
        "make chaos without BROKEN replaces a function"
    );
}
