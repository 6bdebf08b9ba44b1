//! The one place that configures AWS SDK clients.
//!
//! Every binary in the project (Lambda functions, the local gateway, tools) builds its `SdkConfig`
//! here, once per process, so that the same code talks to AWS or to a local emulator. The AWS SDK
//! for Rust already honours `AWS_ENDPOINT_URL` and the per-service `AWS_ENDPOINT_URL_<SERVICE>`
//! variables; [`load`] keeps that behaviour and [`load_with_endpoint`] lets a caller that knows its
//! endpoint (the local gateway, tests) say so without touching the process environment.

use std::error::Error;
use std::fmt;

pub use aws_config::SdkConfig;
use aws_config::{BehaviorVersion, Region};

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

/// Sets up logging for a Lambda function: one JSON object per line (CloudWatch Logs Insights
/// parses the fields), no timestamp (CloudWatch adds one), level from `RUST_LOG`.
pub fn init_lambda_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(false)
        .without_time()
        .init();
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
