//! The functions a template declares, run in-process.
//!
//! Each `AWS::Serverless::Function` names its crate's binary in `Metadata.BuildProperties.Binary`
//! (what `sam build` uses). The gateway maps that binary name to the same library code the binary's
//! `main.rs` wires up, builds it with the environment variables the template gives the function,
//! and invokes it with JSON payloads, as Lambda would: the event is deserialised into the handler's
//! type, the answer serialised back, and the function's `Timeout` enforced. Each invocation has a
//! request id and a deadline (its start plus `Timeout`), as Lambda's context gives them; the
//! handlers that need them (the async-invoke processor's lease) get them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};
use aws_lambda_events::sqs::SqsEvent;
use serde_json::Value;

use crate::cfn::scalar_to_string;
use crate::stack::Stack;

/// A function error, as Lambda reports it (`errorType`, `errorMessage`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct FunctionError {
    /// For example `Runtime.UnmarshalError`, `Sandbox.Timedout`, or the handler's error type.
    pub error_type: String,
    /// Human-readable detail.
    pub message: String,
}

impl FunctionError {
    fn new(error_type: &str, message: impl ToString) -> Self {
        Self {
            error_type: error_type.to_owned(),
            message: message.to_string(),
        }
    }
}

/// The handlers the gateway knows, by binary name.
enum Handler {
    BasicAuth(basic_auth::Authorizer),
    SqsBufferConsumer(sqs_buffer_consumer::Consumer),
    KinesisStreamConsumer(kinesis_stream_consumer::Consumer),
    AsyncInvokeProcessor(async_invoke_processor::Processor),
    AsyncInvokeFailures(async_invoke_error_handler::ErrorHandler),
    UserApiConsumer(user_api_consumer::Consumer),
}

/// Binary names the gateway can run in-process.
pub const KNOWN_BINARIES: &[&str] = &[
    "basic-auth-authorizer",
    "sqs-buffer-consumer",
    "kinesis-stream-consumer",
    "async-invoke-processor",
    "async-invoke-error-handler",
    "user-api-consumer",
];

impl Handler {
    async fn build(
        binary: &str,
        env: &BTreeMap<String, String>,
        sdk: &aws_setup::SdkConfig,
    ) -> Result<Self> {
        let lookup = |name: &str| env.get(name).cloned();
        Ok(match binary {
            "basic-auth-authorizer" => {
                let config = basic_auth::Config::from_lookup(lookup)?;
                Handler::BasicAuth(basic_auth::Authorizer::from_config(
                    &config,
                    aws_sdk_secretsmanager::Client::new(sdk),
                ))
            }
            "sqs-buffer-consumer" => {
                let config = sqs_buffer_consumer::Config::from_lookup(lookup)?;
                Handler::SqsBufferConsumer(sqs_buffer_consumer::Consumer::from_config(
                    &config,
                    aws_sdk_dynamodb::Client::new(sdk),
                ))
            }
            "kinesis-stream-consumer" => {
                let config = kinesis_stream_consumer::Config::from_lookup(lookup)?;
                Handler::KinesisStreamConsumer(kinesis_stream_consumer::Consumer::from_config(
                    &config,
                    aws_sdk_dynamodb::Client::new(sdk),
                ))
            }
            "async-invoke-processor" => {
                let config = async_invoke_processor::Config::from_lookup(lookup)?;
                Handler::AsyncInvokeProcessor(async_invoke_processor::Processor::from_config(
                    &config,
                    aws_sdk_dynamodb::Client::new(sdk),
                ))
            }
            "async-invoke-error-handler" => {
                let config = async_invoke_error_handler::Config::from_lookup(lookup)?;
                Handler::AsyncInvokeFailures(async_invoke_error_handler::ErrorHandler::from_config(
                    &config,
                    aws_sdk_dynamodb::Client::new(sdk),
                ))
            }
            "user-api-consumer" => {
                let config = user_api_consumer::Config::from_lookup(lookup)?;
                Handler::UserApiConsumer(user_api_consumer::Consumer::from_config(
                    &config,
                    aws_sdk_dynamodb::Client::new(sdk),
                ))
            }
            other => bail!(
                "no in-process handler for binary {other:?} (known: {})",
                KNOWN_BINARIES.join(", ")
            ),
        })
    }

    async fn invoke(
        &self,
        payload: Value,
        invocation: &async_invoke_processor::Invocation,
    ) -> Result<Value, FunctionError> {
        fn decode<T: serde::de::DeserializeOwned>(payload: Value) -> Result<T, FunctionError> {
            serde_json::from_value(payload)
                .map_err(|e| FunctionError::new("Runtime.UnmarshalError", e))
        }
        fn encode<T: serde::Serialize>(answer: T) -> Result<Value, FunctionError> {
            serde_json::to_value(answer).map_err(|e| FunctionError::new("Runtime.MarshalError", e))
        }
        match self {
            Handler::BasicAuth(authorizer) => authorizer
                .handle_event(payload)
                .await
                .map_err(|e| FunctionError::new("AuthorizerError", error_chain(&e))),
            Handler::SqsBufferConsumer(consumer) => {
                let event: SqsEvent = decode(payload)?;
                let answer = consumer
                    .handle(event)
                    .await
                    .map_err(|e| FunctionError::new("BatchError", e))?;
                encode(answer)
            }
            Handler::AsyncInvokeProcessor(processor) => {
                let request: async_invoke_jobs::JobRequest = decode(payload)?;
                let answer = processor.handle(request, invocation).await.map_err(|e| {
                    let kind = match &e {
                        async_invoke_processor::ProcessError::Job(_) => "JobError",
                        async_invoke_processor::ProcessError::Store(_) => "StoreError",
                    };
                    FunctionError::new(kind, error_chain(&e))
                })?;
                encode(answer)
            }
            Handler::AsyncInvokeFailures(handler) => {
                let answer = handler
                    .handle_event(payload)
                    .await
                    .map_err(|e| FunctionError::new("HandlerError", error_chain(&e)))?;
                encode(answer)
            }
            Handler::UserApiConsumer(consumer) => {
                let event: SqsEvent = decode(payload)?;
                let answer = consumer
                    .handle(event)
                    .await
                    .map_err(|e| FunctionError::new("BatchError", e))?;
                encode(answer)
            }
            Handler::KinesisStreamConsumer(consumer) => {
                let event: batch_consumer::kinesis::KinesisEvent = decode(payload)?;
                let answer = consumer
                    .handle(event)
                    .await
                    .map_err(|e| FunctionError::new("BatchError", e))?;
                encode(answer)
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        // SDK errors repeat their cause in their own text: keep each part once.
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// A declared function, ready to invoke.
pub struct Function {
    /// Stack path and logical id, for logs.
    pub id: String,
    /// Physical name.
    pub name: String,
    /// ARN, as other resources refer to it.
    pub arn: String,
    /// `Timeout` in seconds (Lambda's default is 3).
    pub timeout: Duration,
    /// The resolved `Properties` (events, environment, ...).
    pub properties: Value,
    handler: Handler,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Function {
    /// Invokes the function synchronously with `payload`, enforcing its timeout, under a new
    /// request id.
    pub async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        self.invoke_as(payload, &uuid::Uuid::new_v4().to_string())
            .await
    }

    /// Invokes the function as [`Function::invoke`] does, under `request_id`. Lambda keeps one
    /// request id across the retries of an asynchronous invoke, and its destination record
    /// names it (`requestContext.requestId`).
    pub async fn invoke_as(
        &self,
        payload: Value,
        request_id: &str,
    ) -> Result<Value, FunctionError> {
        let invocation = async_invoke_processor::Invocation {
            request_id: request_id.to_owned(),
            deadline: Some(SystemTime::now() + self.timeout),
        };
        match tokio::time::timeout(self.timeout, self.handler.invoke(payload, &invocation)).await {
            Ok(result) => result,
            Err(_) => Err(FunctionError::new(
                "Sandbox.Timedout",
                format!(
                    "Task timed out after {:.2} seconds",
                    self.timeout.as_secs_f64()
                ),
            )),
        }
    }
}

/// Builds every function of `stack` (whose binary the gateway knows), keyed by ARN.
pub async fn load(stack: &Stack, sdk: &aws_setup::SdkConfig) -> Result<Vec<Arc<Function>>> {
    let mut out = Vec::new();
    for (logical, resource) in stack.template.resources_of("AWS::Serverless::Function") {
        let id = if stack.path.is_empty() {
            logical.clone()
        } else {
            format!("{}.{logical}", stack.path)
        };
        let binary = resource
            .pointer("/Metadata/BuildProperties/Binary")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("{id}: Metadata.BuildProperties.Binary names no binary"))?;
        let properties = stack
            .scope
            .resolve(resource.get("Properties").unwrap_or(&Value::Null))
            .map_err(|e| anyhow!("{id}: {e}"))?;
        let env: BTreeMap<String, String> = properties
            .pointer("/Environment/Variables")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), scalar_to_string(v)))
            .collect();
        let timeout = properties
            .get("Timeout")
            .map(scalar_to_string)
            .map(|t| {
                t.parse::<u64>()
                    .map_err(|_| anyhow!("{id}: Timeout {t:?} is not a number"))
            })
            .transpose()?
            .unwrap_or(3);
        let handler = Handler::build(binary, &env, sdk)
            .await
            .map_err(|e| anyhow!("{id}: {e}"))?;
        let physical = stack
            .scope
            .resources
            .get(logical)
            .ok_or_else(|| anyhow!("{id} was not provisioned"))?;
        out.push(Arc::new(Function {
            id,
            name: physical.reference.clone(),
            arn: physical.attributes.get("Arn").cloned().unwrap_or_default(),
            timeout: Duration::from_secs(timeout),
            properties,
            handler,
        }));
    }
    Ok(out)
}
