//! Lambda entry point of the Basic-auth authorizer: wiring only, the logic is in the library.

use basic_auth::{Authorizer, Config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_setup::init_lambda_tracing();
    let config = Config::from_env()?;
    let sdk = aws_setup::load().await;
    let authorizer = Authorizer::from_config(&config, aws_sdk_secretsmanager::Client::new(&sdk));
    if aws_setup::preconnect() {
        // The secret is read during init, over the connection the first request would open.
        authorizer.prefetch().await;
    }
    let authorizer = &authorizer;
    run(service_fn(
        // HTTP API (payload 2.0) and REST API REQUEST events, told apart by their shape.
        move |event: LambdaEvent<serde_json::Value>| async move {
            Ok::<_, Error>(authorizer.handle_event(event.payload).await?)
        },
    ))
    .await
}
