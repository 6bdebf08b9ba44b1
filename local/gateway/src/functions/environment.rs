//! One execution environment: the function's own binary as a process, with the environment
//! variables Lambda sets, talking to a Runtime API of its own ([`super::api`]).
//!
//! The process is started through the gateway's launcher (`local-gateway --run-environment`),
//! which asks Linux to kill it when the gateway dies (`PR_SET_PDEATHSIG`), then executes the
//! binary: no function process outlives the gateway, even when the gateway is killed. It runs
//! in a process group of its own, so a Ctrl-C reaches the gateway, which stops it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use super::api::{Job, Reply, RuntimeState};
use super::{FunctionError, Spec};

/// The argument that turns `local-gateway` into the launcher of one environment.
pub const LAUNCHER_FLAG: &str = "--run-environment";
/// The launcher's variable naming the gateway's pid (removed before the function starts).
pub const PARENT_PID_VAR: &str = "LOCAL_GATEWAY_PARENT_PID";

/// Longest initialisation Lambda allows an on-demand function (the Init phase is limited to
/// 10 seconds; lambda developer guide, lambda-runtime-environment.html).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How one invocation in an environment ended.
#[derive(Debug)]
pub enum Ended {
    /// The runtime answered; the environment stays warm.
    Answered(Reply),
    /// The function ran past its `Timeout`: the environment was killed.
    TimedOut,
    /// The process exited (or crashed) during the invocation.
    Exited(String),
}

/// A failed initialisation.
#[derive(Debug)]
pub struct InitFailure {
    /// It ran out of time (`Status: timeout`), rather than failing.
    pub timed_out: bool,
    /// What the caller of the first invoke sees (`Runtime.InitError`, `Runtime.ExitError`).
    pub error: FunctionError,
    /// How long init ran.
    pub duration: Duration,
}

/// A started, initialised execution environment.
#[derive(Debug)]
pub struct Environment {
    /// The process id.
    pub pid: u32,
    jobs: mpsc::Sender<Job>,
    exited: watch::Receiver<Option<String>>,
    /// Kills the process when sent to, or when dropped.
    _kill: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
    /// Init duration, until the first invocation's report takes it.
    pub init: Option<Duration>,
    peak_mb: u64,
}

impl Drop for Environment {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `exit status: 1`, `signal: 9 (SIGKILL)`, as Lambda words a runtime's exit.
fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("signal: {signal}"),
            _ => s.to_string(),
        },
        Err(e) => format!("cannot wait for the process: {e}"),
    }
}

/// A Lambda log stream name: `YYYY/MM/DD/[$LATEST]<32 hex digits>`.
fn log_stream_name() -> String {
    let now = aws_sdk_sqs::primitives::DateTime::from(SystemTime::now())
        .fmt(aws_sdk_sqs::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default();
    let date = now.get(..10).unwrap_or_default().replace('-', "/");
    format!("{date}/[$LATEST]{}", uuid::Uuid::new_v4().simple())
}

/// The variables Lambda sets in every execution environment (lambda developer guide,
/// configuration-envvars.html, "Defined runtime environment variables"), for this function,
/// with the local Runtime API and the emulator's endpoint and credentials.
pub fn lambda_variables(spec: &Spec, runtime_api: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut set = |k: &str, v: &str| {
        vars.insert(k.to_owned(), v.to_owned());
    };
    set("AWS_LAMBDA_RUNTIME_API", runtime_api);
    set("AWS_LAMBDA_FUNCTION_NAME", &spec.name);
    set(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        &spec.memory_mb.to_string(),
    );
    set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
    set("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand");
    set("AWS_LAMBDA_LOG_GROUP_NAME", &spec.log_group);
    set("AWS_LAMBDA_LOG_STREAM_NAME", &log_stream_name());
    set("AWS_LAMBDA_LOG_FORMAT", spec.log_format.as_env());
    if let Some(level) = &spec.log_level {
        set("AWS_LAMBDA_LOG_LEVEL", level);
    }
    set("AWS_REGION", &spec.region);
    set("AWS_DEFAULT_REGION", &spec.region);
    set("_HANDLER", &spec.handler);
    let task_root = spec
        .binary
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    set("LAMBDA_TASK_ROOT", &task_root);
    set("LAMBDA_RUNTIME_DIR", &task_root);
    set("TZ", ":UTC");
    set("LANG", "en_US.UTF-8");
    set("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin");
    // The execution role's temporary credentials, here the emulator's test ones.
    set("AWS_ACCESS_KEY_ID", "testing");
    set("AWS_SECRET_ACCESS_KEY", "testing");
    set("AWS_SESSION_TOKEN", "testing");
    // Not Lambda's: sends every SDK client of the function to the local emulator.
    set("AWS_ENDPOINT_URL", &spec.endpoint);
    vars
}

/// Peak resident memory of the process `pid` so far (`VmHWM`), in kB.
pub fn peak_memory_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Peak resident memory of `pid` so far, in MB, rounded up.
fn peak_memory_mb(pid: u32) -> Option<u64> {
    peak_memory_kb(pid).map(|kb| kb.div_ceil(1024))
}

/// Sends each line the environment started by `command` writes on `stream` (its stdout or
/// stderr) to the gateway's log sink ([`crate::logs`]): printed with the function's id, and
/// shipped to the function's log group, in the stream `command` names in
/// `AWS_LAMBDA_LOG_STREAM_NAME` (so a function that logs its stream name names the right one).
/// Bytes that are not UTF-8 are replaced, never a reason to stop reading.
fn forward<R>(spec: &Spec, command: &tokio::process::Command, stream: R)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let log_stream = command
        .as_std()
        .get_envs()
        .find(|(name, _)| *name == "AWS_LAMBDA_LOG_STREAM_NAME")
        .and_then(|(_, value)| value)
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(log_stream_name);
    let sink = crate::logs::global();
    sink.environment_started(&spec.id, &log_stream);
    let (id, group) = (spec.id.clone(), spec.log_group.clone());
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut bytes = Vec::new();
        while matches!(reader.read_until(b'\n', &mut bytes).await, Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&bytes);
            let text = text.trim_end_matches(['\n', '\r']).to_owned();
            sink.send(crate::logs::Line::function(&id, &group, &log_stream, text));
            bytes.clear();
        }
    });
}

impl Environment {
    /// Starts an environment and waits for its runtime to initialise (its first `next`), at
    /// most `limit`.
    pub async fn start(spec: &Arc<Spec>, limit: Duration) -> Result<Environment, InitFailure> {
        let started = Instant::now();
        let fail = |error_type: &str, message: String| InitFailure {
            timed_out: false,
            error: FunctionError::new(error_type, &message),
            duration: started.elapsed(),
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| {
                fail(
                    "Runtime.InitError",
                    format!("no port for the Runtime API: {e}"),
                )
            })?;
        let address = listener.local_addr().map_err(|e| {
            fail(
                "Runtime.InitError",
                format!("no port for the Runtime API: {e}"),
            )
        })?;
        let (state, jobs, mut ready, mut init_error) = RuntimeState::new(spec.arn.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, super::api::router(state)).await;
        });
        let mut command = tokio::process::Command::new(&spec.launcher);
        command
            .arg(LAUNCHER_FLAG)
            .arg(&spec.binary)
            .env_clear()
            .envs(&spec.variables)
            .envs(lambda_variables(spec, &address.to_string()))
            .env(PARENT_PID_VAR, std::process::id().to_string())
            .current_dir(spec.binary.parent().unwrap_or(&PathBuf::from(".")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            fail(
                "Runtime.InitError",
                format!("cannot start {}: {e}", spec.binary.display()),
            )
        })?;
        let pid = child.id().unwrap_or_default();
        if let Some(out) = child.stdout.take() {
            forward(spec, &command, out);
        }
        if let Some(err) = child.stderr.take() {
            forward(spec, &command, err);
        }
        let (kill, killed) = oneshot::channel::<()>();
        let (exit_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = killed => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            exit_tx.send_replace(Some(describe_exit(status)));
        });
        let mut exit_watch = exited.clone();
        let init = tokio::select! {
            biased;
            reported = &mut init_error => Err(match reported {
                // The runtime's own error type names the failure (Lambda reports it so).
                Ok(e) => e,
                Err(_) => FunctionError::new("Runtime.InitError", "the runtime stopped during init"),
            }),
            _ = ready.wait_for(|r| *r) => Ok(()),
            _ = exit_watch.wait_for(Option::is_some) => {
                let how = exited.borrow().clone().unwrap_or_default();
                Err(FunctionError::new(
                    "Runtime.ExitError",
                    &format!("Runtime exited with error: {how}"),
                ))
            }
            _ = tokio::time::sleep(limit) => Err(FunctionError::new(
                "Sandbox.Timedout",
                &format!("Task timed out after {:.2} seconds", limit.as_secs_f64()),
            )),
        };
        let duration = started.elapsed();
        match init {
            Ok(()) => Ok(Environment {
                pid,
                jobs,
                exited,
                _kill: kill,
                server,
                init: Some(duration),
                peak_mb: 0,
            }),
            // Dropping `kill` stops the process.
            Err(error) => Err(InitFailure {
                timed_out: error.error_type == "Sandbox.Timedout",
                error,
                duration,
            }),
        }
    }

    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    /// Peak memory of this environment so far, in MB.
    pub fn peak_memory_mb(&mut self) -> u64 {
        if let Some(mb) = peak_memory_mb(self.pid) {
            self.peak_mb = self.peak_mb.max(mb);
        }
        self.peak_mb
    }

    /// Hands `job` to the runtime and waits for its answer, at most until `timeout` has passed.
    pub async fn invoke(
        &mut self,
        job: Job,
        answer: oneshot::Receiver<Reply>,
        timeout: Duration,
    ) -> Ended {
        let mut exited = self.exited.clone();
        if self.jobs.send(job).await.is_err() {
            return Ended::Exited("the Runtime API stopped".into());
        }
        tokio::select! {
            biased;
            reply = answer => match reply {
                Ok(reply) => Ended::Answered(reply),
                Err(_) => Ended::Exited("the Runtime API dropped the invocation".into()),
            },
            _ = exited.wait_for(Option::is_some) => {
                Ended::Exited(self.exited.borrow().clone().unwrap_or_default())
            }
            _ = tokio::time::sleep(timeout) => Ended::TimedOut,
        }
    }
}
