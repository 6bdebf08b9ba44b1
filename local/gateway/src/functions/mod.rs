//! The functions a template declares, run as Lambda runs them: each function's own binary, built
//! with cargo as `sam build` finds it ([`build`]), started as one process per execution
//! environment ([`environment`]) that talks to a Lambda Runtime API ([`api`]); environments are
//! reused while warm, started on demand up to the function's concurrency, and replaced when they
//! time out or die ([`pool`]); every invocation ends with Lambda's `REPORT` line ([`report`]).
//!
//! The gateway knows no function: everything comes from the template (`CodeUri`,
//! `Metadata.BuildProperties.Binary`, `Environment`, `Timeout`, `MemorySize`,
//! `ReservedConcurrentExecutions`, `LoggingConfig`).

pub mod api;
pub mod build;
pub mod environment;
pub mod pool;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use axum::body::Bytes;
use serde_json::{Value, json};

use crate::cfn::scalar_to_string;
use crate::stack::Stack;

/// Environments per function when the template reserves no concurrency (and no event source
/// asks for more): enough for the bursts of a laptop, few enough to start on one.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// A function error, as Lambda reports it to a synchronous caller (`X-Amz-Function-Error:
/// Unhandled`, a body with `errorType` and `errorMessage`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct FunctionError {
    /// What the runtime reported (`JobError`, `&str`), or the platform's type:
    /// `Sandbox.Timedout`, `Runtime.ExitError`, `Runtime.InitError`, ...
    pub error_type: String,
    /// Human-readable detail.
    pub message: String,
    /// The runtime's own error document, when it posted one (kept as the caller's payload).
    pub body: Option<Value>,
}

impl FunctionError {
    /// An error of the platform's.
    pub fn new(error_type: &str, message: &str) -> Self {
        Self {
            error_type: error_type.to_owned(),
            message: message.to_owned(),
            body: None,
        }
    }

    /// The payload a synchronous caller receives.
    pub fn payload(&self) -> Value {
        self.body
            .clone()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"errorMessage": self.message, "errorType": self.error_type}))
    }
}

/// Why an invoke did not give the function's answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The function ran, or tried to, and failed.
    #[error(transparent)]
    Function(FunctionError),
    /// Every environment the function may have is busy: Lambda answers 429
    /// `TooManyRequestsException` with this `Reason`, and runs nothing.
    #[error("TooManyRequestsException: Rate Exceeded. ({reason})")]
    Throttled {
        /// `ReservedFunctionConcurrentInvocationLimitExceeded` or `ConcurrentInvocationLimitExceeded`.
        reason: &'static str,
    },
}

impl InvokeError {
    /// The function error, when the function ran.
    pub fn function_error(&self) -> Option<&FunctionError> {
        match self {
            InvokeError::Function(e) => Some(e),
            InvokeError::Throttled { .. } => None,
        }
    }
}

/// One invocation's input.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// The event.
    pub payload: Bytes,
    /// The request id (Lambda keeps one across the retries of an asynchronous invoke).
    pub request_id: String,
    /// Client context (JSON) of an Invoke API call (`X-Amz-Client-Context`, decoded).
    pub client_context: Option<String>,
    /// Cognito identity (JSON), when a caller has one.
    pub cognito_identity: Option<String>,
}

impl InvokeRequest {
    /// A request for `payload` under a new request id.
    pub fn new(payload: Bytes) -> Self {
        Self {
            payload,
            request_id: uuid::Uuid::new_v4().to_string(),
            client_context: None,
            cognito_identity: None,
        }
    }
}

/// What an execution environment of a function is started with.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Stack path and logical id (`Orders.ConsumerFunction`): log prefix.
    pub id: String,
    /// Physical name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// The built executable.
    pub binary: PathBuf,
    /// The gateway's launcher (its own executable).
    pub launcher: PathBuf,
    /// `Handler` (`_HANDLER`).
    pub handler: String,
    /// The template's `Environment.Variables`.
    pub variables: BTreeMap<String, String>,
    /// `MemorySize` in MB (Lambda's default 128).
    pub memory_mb: u64,
    /// `Timeout` (Lambda's default 3 s).
    pub timeout: Duration,
    /// `LoggingConfig.LogGroup`, else `/aws/lambda/<name>`.
    pub log_group: String,
    /// `LoggingConfig.LogFormat`.
    pub log_format: report::LogFormat,
    /// `LoggingConfig.ApplicationLogLevel` (JSON format only).
    pub log_level: Option<String>,
    /// Region.
    pub region: String,
    /// The emulator's endpoint (`AWS_ENDPOINT_URL`).
    pub endpoint: String,
}

/// A declared function, ready to invoke.
#[derive(Debug)]
pub struct Function {
    /// Stack path and logical id, for logs.
    pub id: String,
    /// Physical name.
    pub name: String,
    /// ARN, as other resources refer to it.
    pub arn: String,
    /// `Timeout`.
    pub timeout: Duration,
    /// The resolved `Properties` (events, environment, ...).
    pub properties: Value,
    /// Most environments at once.
    pub concurrency: usize,
    pool: Arc<pool::Pool>,
}

impl Function {
    /// A function run from `spec`, with at most `concurrency` environments (`reserved`: that
    /// limit is the function's reserved concurrency). [`load`] builds them from templates.
    pub fn new(spec: Spec, properties: Value, concurrency: usize, reserved: bool) -> Self {
        Self {
            id: spec.id.clone(),
            name: spec.name.clone(),
            arn: spec.arn.clone(),
            timeout: spec.timeout,
            properties,
            concurrency,
            pool: Arc::new(pool::Pool::new(Arc::new(spec), concurrency, reserved)),
        }
    }

    /// Invokes the function synchronously with `payload` under a new request id.
    pub async fn invoke(&self, payload: Value) -> Result<Value, InvokeError> {
        self.invoke_as(payload, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Invokes the function as [`Function::invoke`] does, under `request_id`.
    pub async fn invoke_as(&self, payload: Value, request_id: &str) -> Result<Value, InvokeError> {
        let mut request = InvokeRequest::new(Bytes::from(payload.to_string()));
        request.request_id = request_id.to_owned();
        let bytes = self.invoke_raw(request).await?;
        // A runtime may answer anything; callers that need JSON see a non-JSON answer as text.
        Ok(serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    }

    /// Invokes the function with raw bytes, as the Invoke API does.
    pub async fn invoke_raw(&self, request: InvokeRequest) -> Result<Bytes, InvokeError> {
        let pool = self.pool.clone();
        let began = std::time::Instant::now();
        // On its own task: the invocation runs to its end even if the caller goes away.
        let result = match tokio::spawn(pool.run(request)).await {
            Ok(result) => result,
            Err(join) => Err(InvokeError::Function(FunctionError::new(
                "ServiceException",
                &format!("the invocation task failed: {join}"),
            ))),
        };
        use crate::cloudwatch::feed::{Invoked, invocation};
        let outcome = match &result {
            Ok(_) => Invoked::Answered,
            Err(InvokeError::Throttled { .. }) => Invoked::Throttled,
            Err(InvokeError::Function(_)) => Invoked::Failed,
        };
        invocation(&self.name, outcome, began.elapsed());
        result
    }

    /// Environments that exist now, and cold starts so far.
    pub fn environment_counts(&self) -> (usize, u64) {
        self.pool.counts()
    }
}

/// Variables Lambda reserves: a template that sets one does not deploy (configuration-envvars.html).
const RESERVED: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// How functions are run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The launcher executable (the gateway's own).
    pub launcher: PathBuf,
    /// The emulator's endpoint.
    pub endpoint: String,
    /// Region.
    pub region: String,
    /// Environments per function without reserved concurrency.
    pub default_concurrency: usize,
}

fn number(properties: &Value, key: &str, id: &str) -> Result<Option<u64>> {
    properties
        .get(key)
        .filter(|v| !v.is_null())
        .map(scalar_to_string)
        .map(|t| {
            t.parse::<u64>()
                .map_err(|_| anyhow!("{id}: {key} {t:?} is not a number"))
        })
        .transpose()
}

/// The highest `ScalingConfig.MaximumConcurrency` of the function's SQS event sources.
fn event_source_concurrency(properties: &Value) -> usize {
    properties
        .get("Events")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(_, e)| e.pointer("/Properties/ScalingConfig/MaximumConcurrency"))
        .filter_map(|v| scalar_to_string(v).parse::<usize>().ok())
        .max()
        .unwrap_or(0)
}

/// The functions of `stack`, each with the binary `binaries` holds for its id.
pub fn load(
    stack: &Stack,
    binaries: &HashMap<String, PathBuf>,
    options: &RunOptions,
) -> Result<Vec<Arc<Function>>> {
    let mut out = Vec::new();
    for (logical, resource) in stack.template.resources_of("AWS::Serverless::Function") {
        let id = build::function_id(stack, logical);
        let Some(physical) = stack.scope.resources.get(logical) else {
            // A function whose Condition is false does not exist.
            continue;
        };
        let properties = stack
            .scope
            .resolve(resource.get("Properties").unwrap_or(&Value::Null))
            .map_err(|e| anyhow!("{id}: {e}"))?;
        let binary = binaries
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow!("{id}: no binary was built"))?;
        let variables: BTreeMap<String, String> = properties
            .pointer("/Environment/Variables")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), scalar_to_string(v)))
            .collect();
        let reserved: Vec<&String> = variables
            .keys()
            .filter(|k| RESERVED.contains(&k.as_str()))
            .collect();
        if !reserved.is_empty() {
            bail!(
                "{id}: InvalidParameterValueException: Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
                reserved
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        let timeout = number(&properties, "Timeout", &id)?.unwrap_or(3);
        if !(1..=900).contains(&timeout) {
            bail!("{id}: Timeout must be 1-900 seconds, got {timeout}");
        }
        let memory_mb = number(&properties, "MemorySize", &id)?.unwrap_or(128);
        if !(128..=10_240).contains(&memory_mb) {
            bail!("{id}: MemorySize must be 128-10240 MB, got {memory_mb}");
        }
        let logging = properties.get("LoggingConfig");
        let log_format = report::LogFormat::parse(
            logging
                .and_then(|l| l.get("LogFormat"))
                .and_then(Value::as_str),
        )
        .map_err(|e| anyhow!("{id}: {e}"))?;
        let name = physical.reference.clone();
        let log_group = logging
            .and_then(|l| l.get("LogGroup"))
            .map(scalar_to_string)
            .unwrap_or_else(|| format!("/aws/lambda/{name}"));
        let log_level = (log_format == report::LogFormat::Json)
            .then(|| {
                logging
                    .and_then(|l| l.get("ApplicationLogLevel"))
                    .map(scalar_to_string)
            })
            .flatten();
        let reserved_concurrency = number(&properties, "ReservedConcurrentExecutions", &id)?;
        let concurrency = match reserved_concurrency {
            Some(n) => n as usize,
            None => options
                .default_concurrency
                .max(event_source_concurrency(&properties)),
        };
        let arn = physical.attributes.get("Arn").cloned().unwrap_or_default();
        let spec = Spec {
            id: id.clone(),
            name: name.clone(),
            arn: arn.clone(),
            binary,
            launcher: options.launcher.clone(),
            handler: properties
                .get("Handler")
                .map(scalar_to_string)
                .unwrap_or_else(|| "bootstrap".into()),
            variables,
            memory_mb,
            timeout: Duration::from_secs(timeout),
            log_group,
            log_format,
            log_level,
            region: options.region.clone(),
            endpoint: options.endpoint.clone(),
        };
        out.push(Arc::new(Function::new(
            spec,
            properties,
            concurrency,
            reserved_concurrency.is_some(),
        )));
    }
    Ok(out)
}
