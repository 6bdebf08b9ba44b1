//! Lambda entry point of the kinesis-stream consumer: wiring only, the logic is in the library.

use batch_consumer::kinesis::KinesisEvent;
use kinesis_stream_consumer::{Config, Consumer};
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
        batch_metrics::Pattern::KinesisStream,
        batch_metrics::Function::Consumer,
    );
    let consumer = Consumer::from_config(&config, dynamodb).with_metrics(metrics);
    let consumer = &consumer;
    run(service_fn(
        move |event: LambdaEvent<KinesisEvent>| async move {
            Ok::<_, Error>(consumer.handle(event.payload).await?)
        },
    ))
    .await
}
