//! Lambda entry point of the async-invoke processor: wiring only.

use async_invoke_jobs::JobRequest;
use async_invoke_processor::{Config, Invocation, Processor};
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
        batch_metrics::Function::Processor,
    );
    let processor = Processor::from_config(&config, dynamodb).with_metrics(metrics);
    let processor = &processor;
    run(service_fn(
        move |event: LambdaEvent<JobRequest>| async move {
            let invocation = Invocation::from_context(&event.context);
            // A failed job is reported as its kind (`JobError`, `StoreError`): see `Diagnostic`.
            processor.handle(event.payload, &invocation).await
        },
    ))
    .await
}
