//! The execution environments of one function: reused while warm, started on demand up to the
//! function's concurrency limit, throttled beyond it, replaced when one times out or dies.
//!
//! Each invocation runs on a task of its own: a caller that goes away (a client that hangs up)
//! does not stop the function, as in Lambda, and the environment goes back to the pool after.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use tokio::sync::oneshot;

use super::api::{Job, Reply};
use super::environment::{Ended, Environment, INIT_TIMEOUT, InitFailure};
use super::report::{self, Report, Status};
use super::{FunctionError, InvokeError, InvokeRequest, Spec};

#[derive(Debug, Default)]
struct State {
    /// Warm environments, the most recently used last.
    idle: Vec<Environment>,
    /// Environments that exist: idle, busy or starting.
    live: usize,
    /// Cold starts so far (for the tests and the bench).
    cold_starts: u64,
}

/// The environments of one function.
#[derive(Debug)]
pub struct Pool {
    spec: Arc<Spec>,
    limit: usize,
    reserved: bool,
    state: Mutex<State>,
}

/// An environment taken from the pool (or the right to start one); gives it back, or frees its
/// place, when dropped.
struct Lease<'a> {
    pool: &'a Pool,
    env: Option<Environment>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Ok(mut state) = self.pool.state.lock() else {
            return;
        };
        match self.env.take() {
            Some(env) if env.is_alive() => state.idle.push(env),
            _ => state.live = state.live.saturating_sub(1),
        }
    }
}

/// An X-Ray trace header for a new trace (`Root=1-<epoch hex>-<96 random bits>`), as Lambda
/// passes it in `Lambda-Runtime-Trace-Id`; not sampled, there is no X-Ray locally.
fn trace_id() -> String {
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let random = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{epoch:08x}-{};Parent={};Sampled=0",
        &random[..24],
        &parent[..16]
    )
}

impl Pool {
    /// A pool for `spec` of at most `limit` environments; `reserved` when the limit is the
    /// function's reserved concurrency (it names the throttle's reason).
    pub fn new(spec: Arc<Spec>, limit: usize, reserved: bool) -> Self {
        Self {
            spec,
            limit,
            reserved,
            state: Mutex::new(State::default()),
        }
    }

    /// How many environments exist now, and how many cold starts there were.
    pub fn counts(&self) -> (usize, u64) {
        self.state
            .lock()
            .map(|s| (s.live, s.cold_starts))
            .unwrap_or_default()
    }

    /// A warm environment, or the right to start one, or a throttle.
    fn lease(&self) -> Result<Lease<'_>, InvokeError> {
        let mut state = self.state.lock().map_err(|_| {
            InvokeError::Function(FunctionError::new("ServiceException", "pool lock poisoned"))
        })?;
        while let Some(env) = state.idle.pop() {
            if env.is_alive() {
                return Ok(Lease {
                    pool: self,
                    env: Some(env),
                });
            }
            // Died while idle: its place is free again.
            state.live = state.live.saturating_sub(1);
        }
        if state.live >= self.limit {
            return Err(InvokeError::Throttled {
                reason: if self.reserved {
                    "ReservedFunctionConcurrentInvocationLimitExceeded"
                } else {
                    "ConcurrentInvocationLimitExceeded"
                },
            });
        }
        state.live += 1;
        state.cold_starts += 1;
        Ok(Lease {
            pool: self,
            env: None,
        })
    }

    /// Lambda's own line about an invocation (`START`, `END`, `REPORT`, `INIT_REPORT`): printed
    /// and shipped to the function's log group, as the function's output is ([`crate::logs`]).
    fn log(&self, line: &str) {
        crate::logs::global().platform(&self.spec.id, &self.spec.log_group, line);
    }

    /// Starts an environment for an invoke. A failed Init phase (at most
    /// [`INIT_TIMEOUT`]) is followed by a second init inside the invoke, within the function's
    /// timeout, as Lambda does ("suppressed init": `INIT_REPORT ... Phase: invoke`); when that
    /// fails too, the invoke fails with the init's error. Gives the failure and the first
    /// init's duration.
    async fn cold_start(&self) -> Result<Environment, (InitFailure, Duration)> {
        let format = self.spec.log_format;
        let status = |f: &InitFailure| {
            if f.timed_out {
                Status::Timeout
            } else {
                Status::Error(f.error.error_type.clone())
            }
        };
        let first = match Environment::start(&self.spec, INIT_TIMEOUT).await {
            Ok(env) => return Ok(env),
            Err(failure) => failure,
        };
        self.log(&report::init_report(
            format,
            first.duration,
            "init",
            &status(&first),
        ));
        match Environment::start(&self.spec, self.spec.timeout).await {
            Ok(env) => Ok(env),
            Err(second) => {
                self.log(&report::init_report(
                    format,
                    second.duration,
                    "invoke",
                    &status(&second),
                ));
                Err((second, first.duration))
            }
        }
    }

    /// Runs one invocation to its end.
    pub async fn run(self: Arc<Self>, request: InvokeRequest) -> Result<Bytes, InvokeError> {
        let spec = self.spec.clone();
        let mut lease = self.lease()?;
        let format = spec.log_format;
        let request_id = request.request_id.clone();
        let report_of =
            |status: Status, duration: Duration, init: Option<Duration>, memory: u64| Report {
                request_id: request_id.clone(),
                duration,
                init,
                memory_size_mb: spec.memory_mb,
                max_memory_used_mb: memory,
                status,
            };
        if lease.env.is_none() {
            match self.cold_start().await {
                Ok(env) => lease.env = Some(env),
                Err((failure, init)) => {
                    // The environment is gone; the next invoke starts (and initialises) anew.
                    self.log(&report::start(format, &request_id));
                    if let Some(end) = report::end(format, &request_id) {
                        self.log(&end);
                    }
                    let status = if failure.timed_out {
                        Status::Timeout
                    } else {
                        Status::Error(failure.error.error_type.clone())
                    };
                    self.log(&report::report(
                        format,
                        &report_of(status, failure.duration, Some(init), 0),
                    ));
                    let error = FunctionError::new(
                        &failure.error.error_type,
                        &format!("RequestId: {request_id} Error: {}", failure.error.message),
                    );
                    return Err(InvokeError::Function(error));
                }
            }
        }
        let Some(env) = lease.env.as_mut() else {
            return Err(InvokeError::Function(FunctionError::new(
                "ServiceException",
                "no environment",
            )));
        };
        self.log(&report::start(format, &request_id));
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request_id: request_id.clone(),
            payload: request.payload,
            deadline: SystemTime::now() + spec.timeout,
            trace_id: trace_id(),
            client_context: request.client_context,
            cognito_identity: request.cognito_identity,
            reply,
        };
        let began = Instant::now();
        let ended = env.invoke(job, answer, spec.timeout).await;
        let duration = began.elapsed();
        let init = env.init.take();
        let memory = env.peak_memory_mb();
        let (outcome, status) = match ended {
            Ended::Answered(Reply::Response(bytes)) => (Ok(bytes), Status::Success),
            Ended::Answered(Reply::Error(error)) => (Err(error), Status::Success),
            Ended::TimedOut => {
                self.log(&report::timed_out(&request_id, spec.timeout));
                // The environment is killed with the invocation: the next one is a cold start.
                lease.env = None;
                let message = format!(
                    "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
                    spec.timeout.as_secs_f64()
                );
                (
                    Err(FunctionError::new("Sandbox.Timedout", &message)),
                    Status::Timeout,
                )
            }
            Ended::Exited(how) => {
                lease.env = None;
                let message = if how == "exit status 0" {
                    format!(
                        "RequestId: {request_id} Error: Runtime exited without providing a reason"
                    )
                } else {
                    format!("RequestId: {request_id} Error: Runtime exited with error: {how}")
                };
                (
                    Err(FunctionError::new("Runtime.ExitError", &message)),
                    Status::Error("Runtime.ExitError".into()),
                )
            }
        };
        if let Some(end) = report::end(format, &request_id) {
            self.log(&end);
        }
        self.log(&report::report(
            format,
            &report_of(status, duration, init, memory),
        ));
        drop(lease);
        outcome.map_err(InvokeError::Function)
    }
}
