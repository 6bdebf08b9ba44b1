//! Time from `make local` to its banner (`Local stack 'local' is up (moto at ...)`) with a warm
//! cargo cache: `make functions` runs once first, then `make local PORT=0` three times. Each run
//! covers make's prerequisites (the virtualenv stamp, the no-op cargo builds of `make
//! functions`), moto's start (`tools/with-moto.sh`), and the gateway's: provisioning the stack
//! in a fresh moto, its own no-op function builds, binding the APIs. Each run is then stopped as
//! Ctrl-C stops it, a SIGINT to its process group.
//!
//! `make local` writes `.local/stack.json` and its gateway removes it on Ctrl-C: a `make local`
//! of your own, running in the same clone, loses its state file to the bench.

use std::collections::VecDeque;
use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::oneshot;

/// Runs measured.
const RUNS: usize = 3;
/// What the banner's first line holds.
const BANNER: &str = "is up (moto at";
/// What `tools/with-moto.sh` prints on stderr once moto answers.
const MOTO_UP: &str = "moto listening at";
/// Longest wait for the banner.
const BANNER_LIMIT: Duration = Duration::from_secs(180);
/// Longest wait for `make local` to stop after the SIGINT; then its group is killed.
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// Output lines kept to explain a failure.
const KEPT_LINES: usize = 40;

/// When one run reached each point.
struct Run {
    banner: Duration,
    moto: Option<Duration>,
    stopped: Duration,
}

/// The measurement, or why it is skipped.
pub async fn bench(root: &Path) -> Result<()> {
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        println!(
            "make local to its banner: skipped, {} is missing (`make venv` creates the project's virtualenv, which runs moto)",
            python.display()
        );
        return Ok(());
    }
    println!(
        "make local PORT=0 to its banner (after one `make functions`, so cargo's cache is warm):"
    );
    // Its output (recipe lines, cargo's progress) goes to stderr: stdout keeps the results.
    let stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("cannot share stderr with make")?;
    let status = tokio::process::Command::new("make")
        .current_dir(root)
        .arg("functions")
        .stdin(Stdio::null())
        .stdout(stderr)
        .kill_on_drop(true)
        .status()
        .await
        .context("cannot run make functions")?;
    if !status.success() {
        bail!("make functions failed ({status})");
    }
    let mut times = Vec::with_capacity(RUNS);
    for n in 1..=RUNS {
        let run = run_once(root)
            .await
            .with_context(|| format!("make local, run {n} of {RUNS}"))?;
        let moto = run
            .moto
            .map(|t| format!(", moto up after {t:?}"))
            .unwrap_or_default();
        println!(
            "  run {n}: banner after {:?}{moto}; stopped {:?} after the SIGINT",
            run.banner, run.stopped
        );
        times.push(run.banner);
    }
    println!("  median {:?}", crate::percentile(&times, 50.0));
    Ok(())
}

/// Lines of a stream, kept in `kept`; the first line holding `needle` sends when it came.
fn watch<R>(
    stream: R,
    started: Instant,
    needle: &'static str,
    kept: Arc<Mutex<VecDeque<String>>>,
) -> oneshot::Receiver<Duration>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (seen, seen_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut seen = Some(seen);
        let mut lines = BufReader::new(stream).lines();
        // Read to the end: a closed pipe would fail the gateway's later prints.
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle)
                && let Some(seen) = seen.take()
            {
                let _ = seen.send(started.elapsed());
            }
            if let Ok(mut kept) = kept.lock() {
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        }
    });
    seen_rx
}

/// One `make local PORT=0`, from its start to its banner, then stopped.
async fn run_once(root: &Path) -> Result<Run> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new("make")
        .current_dir(root)
        .args(["local", "PORT=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: the SIGINT reaches make, with-moto.sh, moto and the gateway, as Ctrl-C.
        .process_group(0)
        .spawn()
        .context("cannot run make local")?;
    let pgid = child.id().context("make local exited at once")?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        stop(&mut child, pgid).await?;
        bail!("make local's output is not piped");
    };
    let kept = Arc::new(Mutex::new(VecDeque::new()));
    let moto = Arc::new(OnceLock::new());
    let moto_rx = watch(stderr, started, MOTO_UP, kept.clone());
    let moto_at = moto.clone();
    tokio::spawn(async move {
        if let Ok(t) = moto_rx.await {
            let _ = moto_at.set(t);
        }
    });
    let banner =
        tokio::time::timeout(BANNER_LIMIT, watch(stdout, started, BANNER, kept.clone())).await;
    // Stopped whatever happened, so that no run outlives the bench.
    let stop_started = Instant::now();
    let status = stop(&mut child, pgid).await?;
    let stopped = stop_started.elapsed();
    let transcript = || {
        kept.lock()
            .map(|k| k.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    };
    match banner {
        Ok(Ok(banner)) => Ok(Run {
            banner,
            moto: moto.get().copied(),
            stopped,
        }),
        Ok(Err(_)) => bail!(
            "make local ended before its banner ({status}); its output ends with:\n{}",
            transcript()
        ),
        Err(_) => bail!(
            "no banner within {BANNER_LIMIT:?}; make local's output ends with:\n{}",
            transcript()
        ),
    }
}

/// SIGINT to the group `pgid`, then a wait for make, at most [`STOP_LIMIT`]; then SIGKILL.
async fn stop(child: &mut Child, pgid: u32) -> Result<ExitStatus> {
    signal_group("INT", pgid);
    let status = match tokio::time::timeout(STOP_LIMIT, child.wait()).await {
        Ok(status) => status.context("cannot wait for make local")?,
        Err(_) => {
            eprintln!(
                "make local did not stop within {STOP_LIMIT:?} of the SIGINT: killing its group"
            );
            signal_group("KILL", pgid);
            child.wait().await.context("cannot wait for make local")?
        }
    };
    // make waits for its recipe; anything of the group still there after a few seconds is killed.
    for _ in 0..50 {
        if !signal_group("0", pgid) {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal_group("KILL", pgid);
    Ok(status)
}

/// `kill -s <signal> -- -<pgid>`: whether some process of the group received it.
fn signal_group(signal: &str, pgid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
