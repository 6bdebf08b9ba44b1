//! The authorizer against a real Secrets Manager API (moto), with the real SDK client.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use base64::Engine as _;
use basic_auth::{Authorizer, Config};

fn request(authorization: Option<&str>) -> ApiGatewayV2CustomAuthorizerV2Request {
    let mut headers = serde_json::Map::new();
    if let Some(value) = authorization {
        headers.insert("authorization".into(), value.into());
    }
    serde_json::from_value(serde_json::json!({
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:us-east-1:123456789012:api/$default/POST/submit",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": "/submit"}}
    }))
    .expect("valid authorizer request")
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

async fn secret(client: &aws_sdk_secretsmanager::Client, value: &str) -> String {
    client
        .create_secret()
        .name(testkit::unique("basic-auth"))
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("secret ARN")
}

async fn allowed(authorizer: &Authorizer, header: Option<&str>) -> bool {
    authorizer
        .handle(&request(header))
        .await
        .expect("authorizer answers")
        .is_authorized
}

#[tokio::test]
async fn authorizer_allows_the_credentials_in_the_secret_and_denies_others() {
    let client = aws_sdk_secretsmanager::Client::new(&testkit::sdk_config().await);
    let arn = secret(
        &client,
        r#"{"username":"alice","password":"correct horse"}"#,
    )
    .await;
    let config = Config::from_lookup(|k| (k == "SECRET_ID").then(|| arn.clone())).expect("config");
    let authorizer = Authorizer::from_config(&config, client);

    assert!(allowed(&authorizer, Some(&basic("alice", "correct horse"))).await);
    assert!(!allowed(&authorizer, Some(&basic("alice", "wrong"))).await);
    assert!(!allowed(&authorizer, Some(&basic("mallory", "correct horse"))).await);
    assert!(!allowed(&authorizer, None).await);
    assert!(!allowed(&authorizer, Some("Basic %%%")).await);
}

#[tokio::test]
async fn authorizer_picks_up_a_rotated_secret_after_its_ttl() {
    let client = aws_sdk_secretsmanager::Client::new(&testkit::sdk_config().await);
    let arn = secret(&client, r#"{"username":"bob","password":"old"}"#).await;
    let env = |k: &str| match k {
        "SECRET_ID" => Some(arn.clone()),
        "SECRET_CACHE_TTL_SECONDS" => Some("1".to_owned()),
        _ => None,
    };
    let authorizer =
        Authorizer::from_config(&Config::from_lookup(env).expect("config"), client.clone());
    assert!(allowed(&authorizer, Some(&basic("bob", "old"))).await);

    client
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(r#"{"username":"bob","password":"new"}"#)
        .send()
        .await
        .expect("rotate secret");
    // Within the TTL the cached secret still answers.
    assert!(allowed(&authorizer, Some(&basic("bob", "old"))).await);
    assert!(!allowed(&authorizer, Some(&basic("bob", "new"))).await);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(allowed(&authorizer, Some(&basic("bob", "new"))).await);
    assert!(!allowed(&authorizer, Some(&basic("bob", "old"))).await);
}

#[tokio::test]
async fn authorizer_errors_rather_than_allows_when_the_secret_is_unreadable() {
    let client = aws_sdk_secretsmanager::Client::new(&testkit::sdk_config().await);
    let missing = testkit::unique("no-such-secret");
    let config =
        Config::from_lookup(|k| (k == "SECRET_ID").then(|| missing.clone())).expect("config");
    let authorizer = Authorizer::from_config(&config, client.clone());
    assert!(
        authorizer
            .handle(&request(Some(&basic("a", "b"))))
            .await
            .is_err()
    );

    let malformed = secret(&client, "not json").await;
    let config =
        Config::from_lookup(|k| (k == "SECRET_ID").then(|| malformed.clone())).expect("config");
    let authorizer = Authorizer::from_config(&config, client);
    assert!(
        authorizer
            .handle(&request(Some(&basic("a", "b"))))
            .await
            .is_err()
    );
}
