//! Lambda entry point of the Basic-auth authorizer: wiring only, the logic is in the library.

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use basic_auth::{Authorizer, Config};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    aws_setup::init_lambda_tracing();
    let config = Config::from_env()?;
    let sdk = aws_setup::load().await;
    let authorizer = Authorizer::from_config(&config, aws_sdk_secretsmanager::Client::new(&sdk));
    let authorizer = &authorizer;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
            Ok::<_, Error>(authorizer.handle(&event.payload).await?)
        },
    ))
    .await
}
