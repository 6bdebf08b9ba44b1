//! The local gateway as a child process the run can kill and start again, and the execution
//! environments it runs (its child processes), which the run kills too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

/// Bound on a gateway's start. Provisioning the four patterns in moto takes seconds and the
/// functions are built already (`make functions`), but on a 2-core machine under load a start
/// can stall; five minutes is far beyond any start seen, and only a hung start reaches it.
pub const START: Duration = Duration::from_secs(300);

/// How to start the gateway, kept for its restarts.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `local-gateway` executable.
    pub binary: PathBuf,
    /// Its arguments (the state file among them).
    pub args: Vec<String>,
    /// Working directory: the repository root.
    pub dir: PathBuf,
    /// Where the gateway's own output goes (appended across restarts).
    pub log: PathBuf,
    /// The state file the gateway writes once it is up.
    pub state_file: PathBuf,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    launch: Launch,
    child: Child,
    /// The state file's content (`.local/stack.json` shape).
    pub state: Value,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts the gateway and waits until it has written its state file.
    pub fn start(launch: Launch) -> Result<Self> {
        let _ = std::fs::remove_file(&launch.state_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .with_context(|| format!("cannot write {}", launch.log.display()))?;
        let child = Command::new(&launch.binary)
            .args(&launch.args)
            .current_dir(&launch.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", launch.binary.display()))?;
        let mut gateway = Self {
            launch,
            child,
            state: Value::Null,
        };
        let deadline = Instant::now() + START;
        while !gateway.launch.state_file.exists() {
            if let Some(status) = gateway.child.try_wait()? {
                bail!(
                    "the local gateway exited with {status} before it was up; its log, {}, ends with:\n{}",
                    gateway.launch.log.display(),
                    tail(&gateway.launch.log, 30)
                );
            }
            if Instant::now() > deadline {
                bail!("the local gateway was not up after {START:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = std::fs::read_to_string(&gateway.launch.state_file)?;
        gateway.state = serde_json::from_str(&text).context("the state file is not JSON")?;
        Ok(gateway)
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the gateway with SIGKILL (no clean-up of its own runs; its execution environments
    /// die with it) and starts it again with the same command line and state file.
    pub fn restart(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        let launch = self.launch.clone();
        let fresh = Gateway::start(launch)?;
        // Swap in the new child; the old value (already dead) drops harmlessly.
        let old = std::mem::replace(self, fresh);
        drop(old);
        Ok(())
    }

    /// The execution environments running now: the gateway's child processes that run a
    /// function (they have a Lambda Runtime API in their environment), with the executable
    /// each runs. The gateway's other children (the template helpers of REST APIs) are not
    /// Lambda's and are left alone.
    pub fn environments(&self) -> Vec<(u32, String)> {
        children(self.pid())
            .into_iter()
            .filter(|(pid, _)| is_environment(*pid))
            .collect()
    }
}

/// The child processes of `parent` (from `/proc`), with their executable's file name.
fn children(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: the name may hold spaces and parentheses, so read after
        // the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        out.push((pid, exe));
    }
    out.sort();
    out
}

/// Whether the process `pid` runs a function: its environment names a Lambda Runtime API.
fn is_environment(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .map(|environ| {
            environ
                .split(|b| *b == 0)
                .any(|var| var.starts_with(b"AWS_LAMBDA_RUNTIME_API="))
        })
        .unwrap_or(false)
}

/// SIGKILLs the process `pid`; whether it was there to kill.
pub fn kill(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .is_ok()
}

/// The last `lines` lines of the file at `path`.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
