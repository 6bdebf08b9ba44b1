//! A deliberately broken sqs-buffer consumer, for the test that shows the chaos run catches
//! one: it acknowledges every batch at once (an empty `batchItemFailures`) and only then writes
//! the records, in the background, ignoring whether the writes succeed. A DynamoDB error, a
//! timeout or a killed environment then loses records the queue has already deleted.
//!
//! Run in place of the real consumer with the gateway's `--function-binary
//! SqsBuffer.ConsumerFunction=<this>`; never deploy it.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use sqs_buffer_consumer::{Config, Consumer};

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_setup::init_lambda_tracing();
    let config = Config::from_env()?;
    let sdk = aws_setup::load().await;
    let consumer = Consumer::from_config(&config, aws_sdk_dynamodb::Client::new(&sdk));
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let consumer = consumer.clone();
        async move {
            // The bug: the write's outcome is dropped, and the batch is acknowledged first.
            tokio::spawn(async move {
                let _ = consumer.handle(event.payload).await;
            });
            Ok::<_, Error>(SqsBatchResponse::default())
        }
    }))
    .await
}
