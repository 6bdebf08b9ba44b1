//! The one place that configures AWS SDK clients.
//!
//! Every binary in the project (Lambda functions, the local gateway, tools) builds its `SdkConfig`
//! here, once per process, so that the same code talks to AWS or to a local emulator. The AWS SDK
//! for Rust already honours `AWS_ENDPOINT_URL` and the per-service `AWS_ENDPOINT_URL_<SERVICE>`
//! variables; [`load`] keeps that behaviour and [`load_with_endpoint`] lets a caller that knows its
//! endpoint (the local gateway, tests) say so without touching the process environment.

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, Region};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Region used when none is configured anywhere (only relevant against a local emulator).
pub const FALLBACK_REGION: &str = "us-east-1";

/// Loads the SDK configuration from the standard sources (environment, profile, IMDS/container
/// credentials), including `AWS_ENDPOINT_URL` when set.
pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Loads a configuration that sends every service to `endpoint_url` (for example a moto server),
/// with static test credentials unless real ones are set in the environment.
pub async fn load_with_endpoint(endpoint_url: &str, region: Option<&str>) -> SdkConfig {
    let region = Region::new(region.unwrap_or(FALLBACK_REGION).to_owned());
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint_url)
        .region(region);
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        loader = loader.credentials_provider(aws_credential_types::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "local-emulator",
        ));
    }
    loader.load().await
}

/// The variable that turns off the connection a function opens during init ([`preconnect`]).
pub const PRECONNECT_VARIABLE: &str = "PRECONNECT";

/// Whether a function opens its connection to AWS during init: yes unless `PRECONNECT` is
/// `false`, `0` or `off`. Lambda runs init before it hands over the first event, so that event
/// does not also wait for the connection and the SDK's first-request set-up
/// (docs/bench/results.md, "A connection made during init").
pub fn preconnect() -> bool {
    preconnect_from(std::env::var(PRECONNECT_VARIABLE).ok().as_deref())
}

fn preconnect_from(value: Option<&str>) -> bool {
    !matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("false" | "0" | "off")
    )
}

/// Sets up logging for a Lambda function: one JSON object per line (CloudWatch Logs Insights
/// parses the fields), no timestamp (CloudWatch adds one), level from `RUST_LOG`.
pub fn init_lambda_tracing() {
    use tracing_subscriber::util::SubscriberInitExt as _;
    lambda_subscriber(std::io::stdout, EnvFilter::from_default_env()).init();
}

/// The subscriber [`init_lambda_tracing`] installs, writing to `writer`.
fn lambda_subscriber<W>(writer: W, filter: EnvFilter) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .with_writer(writer)
        .finish()
}

/// Log lines captured in the very format [`init_lambda_tracing`] writes, for tests that check
/// what a function logs (a field present, a payload absent).
///
/// [`CapturedLogs::start`] captures every event of the current thread, at every level, until
/// its guard drops: in a `#[tokio::test]` (a current-thread runtime) that is everything the code
/// under test logs.
///
/// One process-wide subscriber (installed by the first capture, at trace level) formats every
/// event and writes it to the capture of the thread that logged it, if any. A thread-local
/// subscriber per test (`set_default`) would be simpler, but tracing caches each callsite's
/// interest for all threads: a callsite first reached on a thread with no subscriber, while
/// another test registers its own, can stay disabled, and a test then misses a line it should
/// have seen (seen here, once in a CI run).
#[derive(Debug, Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<CapturedLogs>> = const { std::cell::RefCell::new(None) };
}

/// Stops a thread's capture when dropped.
#[derive(Debug)]
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

/// Writes to the current thread's capture; drops the bytes when the thread captures nothing.
#[derive(Debug, Clone, Copy)]
struct ToCapture;

impl io::Write for ToCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(logs) = c.borrow_mut().as_mut() {
                let _ = io::Write::write(logs, buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Starts capturing the current thread's log lines; they are captured until the guard drops.
    pub fn start() -> (Self, CaptureGuard) {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            // A binary that already has a global subscriber keeps it (and captures nothing).
            let _ = tracing::subscriber::set_global_default(lambda_subscriber(
                || ToCapture,
                EnvFilter::new("trace"),
            ));
        });
        let logs = Self::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard(()))
    }

    /// Everything captured so far, one JSON object per line.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Displays an error with every cause under it, `outer: cause: root cause`, so one log line
/// tells the whole story (for an SDK error: the operation, the service's code and message).
/// What the errors say is all it shows: never a payload, as long as no error puts one in its
/// message.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod preconnect_tests {
    use super::preconnect_from;

    #[test]
    fn preconnect_is_on_unless_turned_off() {
        assert!(preconnect_from(None));
        assert!(preconnect_from(Some("true")));
        assert!(preconnect_from(Some("")));
        for off in ["false", "0", "off", " FALSE "] {
            assert!(!preconnect_from(Some(off)), "{off:?}");
        }
    }
}
