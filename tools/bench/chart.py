"""Draws make bench's charts from its results.json, with matplotlib.

    python tools/bench/chart.py docs/bench/results.json docs/bench

writes functions.png (the authorizer and the two consumers in Rust, Python and Node.js: cold
start, warm invocation, peak memory) and round-trips.png (each consumer's round trips per batch
against its write concurrency, the seeds' sequential loops beside them).
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

RUNTIMES = ["Rust", "Python", "Node.js"]
COLOURS = {"Rust": "#b7410e", "Python": "#3572a5", "Node.js": "#5fa04e"}
WORKLOADS = ["authorizer", "SQS consumer", "Kinesis consumer"]


def functions_chart(results, path):
    by_key = {(f["workload"], f["runtime"]): f for f in results["functions"]}
    panels = [
        ("Cold start: init + first invocation (ms)", lambda f: f["init_ms"] + f["first_ms"]),
        ("Warm invocation, median (ms)", lambda f: f["warm_median_ms"]),
        ("Peak memory (MiB)", lambda f: f["peak_mib"]),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4.8))
    width = 0.26
    for axis, (title, value) in zip(axes, panels):
        for i, runtime in enumerate(RUNTIMES):
            xs, ys = [], []
            for j, workload in enumerate(WORKLOADS):
                f = by_key.get((workload, runtime))
                if f is not None:
                    xs.append(j + (i - 1) * width)
                    ys.append(value(f))
            bars = axis.bar(xs, ys, width, label=runtime, color=COLOURS[runtime])
            axis.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
        axis.set_title(title, fontsize=10)
        axis.set_xticks(range(len(WORKLOADS)), WORKLOADS, fontsize=9)
        axis.set_ylim(0, axis.get_ylim()[1] * 1.1)
        axis.spines[["top", "right"]].set_visible(False)
    axes[0].legend(frameon=False)
    figure.suptitle(
        "Each function as Lambda runs it, against DynamoDB and Secrets Manager on loopback "
        "(SQS: batch of 10, Kinesis: batch of 100)",
        fontsize=11,
    )
    figure.text(0.01, 0.01, results["machine"], fontsize=7, color="#555")
    figure.tight_layout(rect=(0, 0.03, 1, 0.95))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def round_trips_chart(results, path):
    points = results["round_trips"]
    workloads = [w for w in ["SQS consumer", "Kinesis consumer"] if any(p["workload"] == w for p in points)]
    if not workloads:
        return
    figure, axes = plt.subplots(1, len(workloads), figsize=(6.5 * len(workloads), 4.6), squeeze=False)
    for axis, workload in zip(axes[0], workloads):
        mine = [p for p in points if p["workload"] == workload]
        batches = sorted({p["batch"] for p in mine})
        for n, batch in enumerate(batches):
            rust = sorted(
                (p for p in mine if p["runtime"] == "Rust" and p["batch"] == batch),
                key=lambda p: p["concurrency"],
            )
            if rust:
                axis.plot(
                    [p["concurrency"] for p in rust],
                    [p["round_trips"] for p in rust],
                    marker="o",
                    color=COLOURS["Rust"],
                    alpha=0.4 + 0.6 * (n + 1) / len(batches),
                    label=f"Rust, batch of {batch}",
                )
            for runtime, marker in (("Python", "s"), ("Node.js", "^")):
                seed = [p for p in mine if p["runtime"] == runtime and p["batch"] == batch]
                if seed:
                    axis.scatter(
                        [1] * len(seed),
                        [p["round_trips"] for p in seed],
                        marker=marker,
                        color=COLOURS[runtime],
                        label=f"{runtime} (one write after another)" if n == 0 else None,
                        zorder=3,
                    )
        axis.set_xscale("log")
        axis.set_yscale("log")
        for scale in (axis.xaxis, axis.yaxis):
            scale.set_major_formatter(ScalarFormatter())
            scale.set_minor_formatter(NullFormatter())
        axis.set_xlabel("write concurrency (WRITE_CONCURRENCY)")
        axis.set_ylabel(f"round trips per batch ({results['delay_ms']:g} ms each)")
        axis.set_title(workload, fontsize=10)
        axis.grid(True, which="both", alpha=0.25)
        axis.legend(fontsize=7, frameon=False)
    figure.suptitle("Round trips per batch under a fixed DynamoDB latency", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.94))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: chart.py RESULTS_JSON OUT_DIR")
    results = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    functions_chart(results, out / "functions.png")
    round_trips_chart(results, out / "round-trips.png")


if __name__ == "__main__":
    main()
