//! Lambda entry point of the async-invoke error handler: wiring only.

use async_invoke_error_handler::{Config, ErrorHandler};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_setup::init_lambda_tracing();
    let config = Config::from_env()?;
    let sdk = aws_setup::load().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    if aws_setup::preconnect() {
        dynamo_writer::preconnect(&dynamodb).await;
    }
    let metrics = batch_metrics::Metrics::stdout(
        &batch_metrics::Config::from_env(),
        batch_metrics::Pattern::AsyncInvoke,
        batch_metrics::Function::ErrorHandler,
    );
    let handler = ErrorHandler::from_config(&config, dynamodb).with_metrics(metrics);
    let handler = &handler;
    run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // A failure is reported as its kind (`NotARecord`, `StoreError`): see `Diagnostic`.
            handler.handle_event(event.payload).await
        },
    ))
    .await
}
