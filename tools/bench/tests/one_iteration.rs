//! `make bench` cannot rot: its whole code path runs once here (`--quick`: one measurement of
//! each, the debug builds `make functions` made, no `make local`), Python and Node.js seeds
//! included, and what it writes is checked for shape, never for speed.
//!
//! Needs the seeds' environments (`make bench-envs`, which `make test` runs first).

use std::process::Command;

use serde_json::Value;

#[test]
fn the_bench_runs_every_function_and_seed_once_and_writes_its_tables_and_charts() {
    let out = std::env::temp_dir().join(format!("patterns-bench-quick-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_patterns-bench"));
    let mut command = Command::new(bench);
    // `make gateway` built the launcher beside the bench; building it again here could take
    // minutes where the features cargo unifies for this test differ.
    let launcher = bench.with_file_name("local-gateway");
    if launcher.is_file() {
        command.arg("--launcher").arg(&launcher);
    }
    let run = command
        .arg("--quick")
        .arg("--out")
        .arg(&out)
        .output()
        .expect("the bench starts");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the bench failed ({}):\n{stdout}\n{stderr}",
        run.status
    );

    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json"),
    )
    .expect("results.json is JSON");
    let functions = results["functions"].as_array().expect("functions");
    for workload in ["authorizer", "SQS consumer", "Kinesis consumer"] {
        for runtime in ["Rust", "Python", "Node.js"] {
            let f = functions
                .iter()
                .find(|f| f["workload"] == workload && f["runtime"] == runtime)
                .unwrap_or_else(|| panic!("no {workload} in {runtime}: {functions:?}"));
            for figure in ["init_ms", "first_ms", "warm_median_ms", "peak_mib"] {
                assert!(
                    f[figure].as_f64().is_some_and(|v| v > 0.0),
                    "{workload} ({runtime}) has no {figure}: {f}"
                );
            }
        }
    }
    for workload in [
        "user-api consumer",
        "async-invoke processor",
        "async-invoke error handler",
    ] {
        assert!(
            functions
                .iter()
                .any(|f| f["workload"] == workload && f["runtime"] == "Rust"),
            "{workload} was not measured"
        );
    }
    // Every Rust function reports the size of the binary it ran.
    assert!(
        functions
            .iter()
            .filter(|f| f["runtime"] == "Rust")
            .all(|f| f["native_bytes"].as_u64().is_some_and(|b| b > 0))
    );

    let points = results["round_trips"].as_array().expect("round trips");
    for workload in ["SQS consumer", "Kinesis consumer"] {
        for runtime in ["Rust", "Python", "Node.js"] {
            assert!(
                points.iter().any(|p| p["workload"] == workload
                    && p["runtime"] == runtime
                    && p["round_trips"].as_f64().is_some_and(|r| r >= 1.0)),
                "no round trips of {workload} in {runtime}"
            );
        }
    }
    // A batch of 10 written one at a time costs more round trips than one record: the sweep
    // measures what it says, whatever the machine's speed (each call waits the delay).
    let rt = |runtime: &str, batch: u64| {
        points
            .iter()
            .find(|p| {
                p["workload"] == "SQS consumer"
                    && p["runtime"] == runtime
                    && p["batch"] == batch
                    && p["concurrency"] == 1
            })
            .and_then(|p| p["round_trips"].as_f64())
            .unwrap_or_else(|| panic!("no SQS batch of {batch} in {runtime}"))
    };
    assert!(rt("Python", 10) >= 10.0, "{}", rt("Python", 10));
    assert!(rt("Rust", 10) >= 10.0, "{}", rt("Rust", 10));

    let md = std::fs::read_to_string(out.join("results.md")).expect("results.md");
    for heading in [
        "## Each function, cold and warm",
        "## Side by side",
        "## Round trips under latency",
    ] {
        assert!(md.contains(heading), "results.md lacks {heading}:\n{md}");
    }
    for chart in ["functions.png", "round-trips.png"] {
        let bytes = std::fs::read(out.join(chart)).unwrap_or_else(|e| panic!("{chart}: {e}"));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{chart} is not a PNG"
        );
    }
    assert!(stdout.contains("runtime API, probe function"), "{stdout}");
    let _ = std::fs::remove_dir_all(&out);
}
