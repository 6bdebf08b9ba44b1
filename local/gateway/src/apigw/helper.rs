//! The mapping-template helper (`apigw_helper.py`): REST APIs' Velocity templates rendered by
//! airspeed-ext (the engine AWS emulators use), in child processes.
//!
//! Each render has a process to itself, from a small pool: the caller writes one request and
//! awaits the one answer carrying its own id, so no answer can reach another caller. A render that
//! does not answer within the time limit, a caller that goes away mid-render (a client that
//! disconnects), or an answer with the wrong id costs that process, which is killed; a process
//! that died is replaced by the next render that needs one. A stalled render therefore holds only
//! its own request, and every other render goes on in the pool's other processes.

use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

const SCRIPT: &str = include_str!("../../apigw_helper.py");

/// How long one render may take before its request fails (API Gateway's own integration
/// timeout, 29 s, is the outer bound; a template that runs this long is broken).
pub const RENDER_LIMIT: Duration = Duration::from_secs(10);

/// How long a new process may take to start (import airspeed) on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(120);

/// Most processes the pool runs at once; more renders wait for one.
pub const POOL_SIZE: usize = 8;

/// What rendering a template gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The output text.
    pub output: String,
    /// `$context.responseOverride.status`, if set.
    pub status: Option<u16>,
    /// `$context.responseOverride.header.*`.
    pub headers: Vec<(String, String)>,
}

struct Process {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    child: Child,
}

impl Process {
    async fn start(python: &str) -> Result<Self> {
        let mut child = tokio::process::Command::new(python)
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("cannot start the template helper with {python} (run `make venv`)")
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("helper has no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("helper has no stdout"))?;
        let mut process = Self {
            stdin,
            stdout: BufReader::new(stdout),
            child,
        };
        // The helper says it is ready once its imports are done, so the render limit counts
        // rendering only.
        let ready = tokio::time::timeout(START_LIMIT, process.read())
            .await
            .map_err(|_| anyhow!("the template helper did not start within {START_LIMIT:?}"))??;
        if ready.get("ready") != Some(&Value::Bool(true)) {
            bail!("the template helper did not start: {ready}");
        }
        Ok(process)
    }

    async fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line).await? == 0 {
            bail!("the template helper exited");
        }
        Ok(serde_json::from_str(&line)?)
    }

    async fn exchange(&mut self, request: &Value) -> Result<Value> {
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .context("the template helper is gone")?;
        self.stdin.flush().await?;
        self.read().await
    }
}

/// A pool of helper processes.
pub struct Helper {
    python: String,
    limit: Duration,
    idle: Mutex<Vec<Process>>,
    slots: Semaphore,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper")
            .field("python", &self.python)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// A process out of the pool for one render: back to the pool only when the render completed.
struct Lease<'a> {
    helper: &'a Helper,
    process: Option<Process>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // Still here: the render did not complete (timed out, cancelled, failed). The process's
        // pipes may hold a late answer, so it is killed (kill_on_drop), never reused.
        if let Some(process) = self.process.take() {
            tracing::debug!(pid = ?process.child.id(), "template helper process discarded");
        }
    }
}

impl Lease<'_> {
    fn release(mut self) {
        if let Some(process) = self.process.take() {
            self.helper.idle_processes().push(process);
        }
    }
}

impl Helper {
    /// Starts a pool with `python` (which needs airspeed-ext), one process ready.
    pub async fn start(python: &str) -> Result<Self> {
        Self::with_limit(python, RENDER_LIMIT).await
    }

    /// Starts a pool whose renders may take `limit` each.
    pub async fn with_limit(python: &str, limit: Duration) -> Result<Self> {
        let first = Process::start(python).await?;
        Ok(Self {
            python: python.to_owned(),
            limit,
            idle: Mutex::new(vec![first]),
            slots: Semaphore::new(POOL_SIZE),
            next_id: AtomicU64::new(1),
        })
    }

    fn idle_processes(&self) -> std::sync::MutexGuard<'_, Vec<Process>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many renders hold a process now.
    pub fn in_use(&self) -> usize {
        POOL_SIZE - self.slots.available_permits()
    }

    /// Process ids of the idle processes (for tests that kill one).
    pub fn idle_pids(&self) -> Vec<u32> {
        self.idle_processes()
            .iter()
            .filter_map(|p| p.child.id())
            .collect()
    }

    async fn call(&self, mut request: Value) -> Result<Value> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| anyhow!("the template helper pool is closed"))?;
        // An idle process that died meanwhile (killed from outside) is dropped, never handed a
        // render: the render goes to the next idle one, or to a new one.
        let idle = loop {
            let Some(mut p) = self.idle_processes().pop() else {
                break None;
            };
            match p.child.try_wait() {
                Ok(None) => break Some(p),
                _ => {
                    tracing::warn!(pid = ?p.child.id(), "an idle template helper process had exited; starting another")
                }
            }
        };
        let process = match idle {
            Some(p) => p,
            None => Process::start(&self.python).await?,
        };
        let mut lease = Lease {
            helper: self,
            process: Some(process),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request["id"] = json!(id);
        let Some(process) = lease.process.as_mut() else {
            bail!("no template helper process");
        };
        let answer = match tokio::time::timeout(self.limit, process.exchange(&request)).await {
            Ok(answer) => answer?,
            Err(_) => bail!(
                "the mapping template did not finish within {:?}",
                self.limit
            ),
        };
        if answer.get("id") != Some(&json!(id)) {
            bail!("the template helper answered another request");
        }
        lease.release();
        if let Some(error) = answer.get("error").and_then(Value::as_str) {
            bail!("mapping template failed: {error}");
        }
        Ok(answer)
    }

    /// Renders `template` with `$input` over `body` and `params`, and `$context`.
    pub async fn render(
        &self,
        template: &str,
        body: &str,
        params: &Value,
        context: &Value,
    ) -> Result<Rendered> {
        self.render_in_stage(template, body, params, context, &Value::Null)
            .await
    }

    /// Renders as [`Helper::render`] does, with the stage's `$stageVariables`.
    pub async fn render_in_stage(
        &self,
        template: &str,
        body: &str,
        params: &Value,
        context: &Value,
        stage_variables: &Value,
    ) -> Result<Rendered> {
        let answer = self
            .call(
                json!({"op": "render", "template": template, "body": body, "params": params,
                         "context": context, "stageVariables": stage_variables}),
            )
            .await?;
        Ok(Rendered {
            output: answer["output"].as_str().unwrap_or_default().to_owned(),
            status: answer["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok()),
            headers: answer["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect(),
        })
    }
}
