//! user-api end to end: real HTTP with Basic auth through the REST API the gateway builds from
//! `openapi.yaml`, the SQS integration, the consumer, and the DynamoDB Query and GetItem
//! integrations. Plus the contract test: schemathesis runs the OpenAPI document against it.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

mod common;

use std::time::Duration;

use common::LocalStack;
use serde_json::{Value, json};

const P: &str = "UserApi";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(common::SETTLE)
        .build()
        .expect("client")
}

fn base(stack: &LocalStack) -> String {
    stack.pattern(P)["baseUrl"]
        .as_str()
        .expect("base URL")
        .to_owned()
}

async fn create(stack: &LocalStack, body: Value) -> (u16, Option<String>, Value) {
    create_raw(stack, &body.to_string()).await
}

/// A create with the body exactly as given (duplicate keys, escapes), as `application/json`.
async fn create_raw(stack: &LocalStack, body: &str) -> (u16, Option<String>, Value) {
    let (user, password) = stack.credentials(P);
    let response = http()
        .post(format!("{}/users", base(stack)))
        .basic_auth(user, Some(password))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (
        status,
        location,
        response.json().await.unwrap_or(Value::Null),
    )
}

async fn get(stack: &LocalStack, path: &str) -> (u16, Value) {
    let (user, password) = stack.credentials(P);
    let response = http()
        .get(format!("{}{path}", base(stack)))
        .basic_auth(user, Some(password))
        .send()
        .await
        .expect("request");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Polls the status route until the request is processed (404 means "not yet").
async fn processed(stack: &LocalStack, message_id: &str) -> Value {
    testkit::eventually("a processed status", common::SETTLE, || async {
        let (status, body) = get(stack, &format!("/status/{message_id}")).await;
        (status == 200).then_some(body)
    })
    .await
}

#[tokio::test]
async fn create_then_status_then_read_works_over_http_with_basic_auth() {
    let stack = LocalStack::start(P, "").await;
    let (status, location, answer) = create(
        &stack,
        json!({"name": "Ada Lovelace", "email": "ada@example.com", "locale": "en-GB"}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let message_id = answer["messageId"].as_str().expect("messageId").to_owned();
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/status/{message_id}").as_str())
    );

    let state = processed(&stack, &message_id).await;
    assert_eq!(state["state"], "CREATED");
    let user_id = state["userId"].as_str().expect("userId").to_owned();

    let (status, user) = get(&stack, &format!("/users/{user_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["locale"], "en-GB");
    assert_eq!(user["messageId"], message_id.as_str());
}

#[tokio::test]
async fn schema_violations_and_bad_credentials_are_refused_with_nothing_enqueued() {
    let stack = LocalStack::start(P, "").await;
    for bad in [
        json!({"name": "No email"}),
        json!({"name": "", "email": "a@b.co"}),
        json!({"name": "X", "email": "not-an-address"}),
        json!({"name": "X", "email": "a@b.co", "admin": true}),
        json!("just a string"),
    ] {
        let (status, _, body) = create(&stack, bad.clone()).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (400, Some("Invalid request body")),
            "{bad}"
        );
    }
    let url = format!("{}/users", base(&stack));
    let anonymous = http()
        .post(&url)
        .json(&json!({"name": "X", "email": "a@b.co"}))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status().as_u16(), 401);
    let (user, _) = stack.credentials(P);
    let wrong = http()
        .post(&url)
        .basic_auth(user, Some("wrong"))
        .json(&json!({"name": "X", "email": "a@b.co"}))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 403);

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stack.queue_depth(&stack.queue_url(P, "UserQueue")).await, 0);
    assert!(
        stack.items(&stack.table(P, "UsersTable")).await.is_empty(),
        "nothing was enqueued or stored"
    );
}

#[tokio::test]
async fn a_taken_email_makes_no_second_user_and_a_status_that_explains_it() {
    let stack = LocalStack::start(P, "").await;
    let (_, _, first) = create(
        &stack,
        json!({"name": "Grace", "email": "grace@example.com"}),
    )
    .await;
    processed(&stack, first["messageId"].as_str().expect("id")).await;
    let (status, _, second) = create(
        &stack,
        json!({"name": "Not Grace", "email": "GRACE@example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    let state = processed(&stack, second["messageId"].as_str().expect("id")).await;
    assert_eq!(state["state"], "EMAIL_TAKEN");
    assert_eq!(state["userId"], Value::Null);
    assert_eq!(
        users_in(&stack.items(&stack.table(P, "UsersTable")).await),
        1
    );
}

#[tokio::test]
async fn unknown_ids_give_404_on_both_read_routes() {
    let stack = LocalStack::start(P, "").await;
    let (status, _) = get(&stack, "/status/no-such-message").await;
    assert_eq!(status, 404);
    let (status, _) = get(&stack, "/users/no-such-user").await;
    assert_eq!(status, 404);
    // An email claim shares the table, but is no user.
    let (_, _, made) = create(&stack, json!({"name": "Alan", "email": "alan@example.com"})).await;
    processed(&stack, made["messageId"].as_str().expect("id")).await;
    let (status, _) = get(&stack, "/users/email%23alan@example.com").await;
    assert_eq!(status, 404);
}

async fn user_items(
    stack: &LocalStack,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    stack
        .items(&stack.table(P, "UsersTable"))
        .await
        .into_iter()
        .filter(|i| {
            i.get("kind")
                .and_then(|k| k.as_s().ok())
                .map(String::as_str)
                == Some("user")
        })
        .collect()
}

fn users_in(
    items: &[std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>],
) -> usize {
    items
        .iter()
        .filter(|i| {
            i.get("kind")
                .and_then(|k| k.as_s().ok())
                .map(String::as_str)
                == Some("user")
        })
        .count()
}

/// Sends every create at once; asserts each was accepted; returns the message ids.
async fn create_all_at_once(stack: &LocalStack, bodies: Vec<Value>) -> Vec<String> {
    // A first, read-only request fills the authorizer's cache, as a client's first call does, so
    // the burst tests the queue and the consumer, not how many authorizer environments start at
    // once (locally at most 32 per function, README "How the local stack works"; AWS scales on).
    let (status, _) = get(stack, "/status/warm-up").await;
    assert_eq!(status, 404);
    let creates = bodies.into_iter().map(|body| create(stack, body));
    let answers = futures::future::join_all(creates).await;
    answers
        .into_iter()
        .map(|(status, _, answer)| {
            assert_eq!(status, 202, "every create is accepted: {answer}");
            answer["messageId"].as_str().expect("messageId").to_owned()
        })
        .collect()
}

/// Waits until every request has a terminal status, and returns the states.
async fn final_states(stack: &LocalStack, message_ids: &[String]) -> Vec<String> {
    let mut states = Vec::new();
    for id in message_ids {
        let state = processed(stack, id).await;
        states.push(state["state"].as_str().expect("state").to_owned());
    }
    states
}

async fn nothing_left_or_dead_lettered(stack: &LocalStack) {
    let queue = stack.queue_url(P, "UserQueue");
    testkit::eventually("the queue drained", common::SETTLE, || async {
        (stack.queue_depth(&queue).await == 0).then_some(())
    })
    .await;
    assert_eq!(
        stack
            .queue_depth(&stack.queue_url(P, "DeadLetterQueue"))
            .await,
        0,
        "no message was dead-lettered"
    );
}

#[tokio::test]
async fn two_hundred_concurrent_creates_give_two_hundred_users() {
    let stack = LocalStack::start(P, "").await;
    let bodies = (0..200)
        .map(|i| json!({"name": format!("User {i}"), "email": format!("user{i}@example.com")}))
        .collect();
    let ids = create_all_at_once(&stack, bodies).await;
    let states = final_states(&stack, &ids).await;
    assert!(states.iter().all(|s| s == "CREATED"), "{states:?}");
    assert_eq!(
        users_in(&stack.items(&stack.table(P, "UsersTable")).await),
        200
    );
    nothing_left_or_dead_lettered(&stack).await;
}

#[tokio::test]
async fn concurrent_creates_with_one_email_end_in_one_user_and_the_rest_email_taken() {
    let stack = LocalStack::start(P, "").await;
    let bodies = (0..20)
        .map(|i| json!({"name": format!("Twin {i}"), "email": "twin@example.com"}))
        .collect();
    let ids = create_all_at_once(&stack, bodies).await;
    let mut states = final_states(&stack, &ids).await;
    states.sort();
    let mut expected = vec!["CREATED".to_owned()];
    expected.extend(std::iter::repeat_n("EMAIL_TAKEN".to_owned(), 19));
    assert_eq!(states, expected);
    assert_eq!(
        users_in(&stack.items(&stack.table(P, "UsersTable")).await),
        1
    );
    nothing_left_or_dead_lettered(&stack).await;
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_response_breaking_the_openapi_document() {
    let stack = LocalStack::start(P, "").await;
    let root = testkit::repo_root();
    let schemathesis = root.join(".venv-contract/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "schemathesis is not installed: run `make venv`"
    );
    let (user, password) = stack.credentials(P);
    let workdir = std::env::temp_dir().join(testkit::unique("contract"));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let output = tokio::process::Command::new(schemathesis)
        .current_dir(&workdir)
        .arg("run")
        .arg(root.join("patterns/user-api/openapi.yaml"))
        .args(["--url", &base(&stack)])
        .args(["--auth", &format!("{user}:{password}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        .args(["--max-time", "30", "--workers", "2", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .expect("run schemathesis");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_dir_all(&workdir);
    // A failed check makes schemathesis exit non-zero and list FAILURES; warnings (such as test
    // data it could not reach) are not failures.
    assert!(
        output.status.success() && !text.contains("FAILURES"),
        "schemathesis found issues:\n{text}"
    );
    assert!(text.contains("passed"), "schemathesis ran no test:\n{text}");
}

#[tokio::test]
async fn a_redelivered_message_invoked_through_the_lambda_api_makes_no_second_user() {
    let stack = LocalStack::start(P, "").await;
    let body = json!({"name": "Ada", "email": "ada@example.com"});
    let (_, _, answer) = create(&stack, body.clone()).await;
    let message_id = answer["messageId"].as_str().expect("id").to_owned();
    let first = processed(&stack, &message_id).await;

    // The same message again, as SQS redelivers it: same SQS message id, body and attributes.
    let sqs_message_id = user_items(&stack).await[0]["sqsMessageId"]
        .as_s()
        .expect("sqsMessageId")
        .clone();
    let lambda = stack.state["lambdaEndpoint"]
        .as_str()
        .expect("lambda endpoint")
        .to_owned();
    let event = json!({"Records": [{"messageId": sqs_message_id, "receiptHandle": "redelivered", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "2"}, "eventSource": "aws:sqs",
        "messageAttributes": {"requestId": {"stringValue": message_id, "dataType": "String",
                                            "stringListValues": [], "binaryListValues": []}}}]});
    let response = http()
        .post(format!(
            "{lambda}/2015-03-31/functions/{}/invocations",
            stack.function_id("ConsumerFunction")
        ))
        .json(&event)
        .send()
        .await
        .expect("invoke");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers().get("x-amz-function-error").is_none());
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(answer["batchItemFailures"], json!([]));

    let users = user_items(&stack).await;
    assert_eq!(users.len(), 1, "no second user");
    assert_eq!(
        users[0]["userId"].as_s().ok(),
        first["userId"].as_str().map(str::to_owned).as_ref()
    );
    let (_, again) = get(&stack, &format!("/status/{message_id}")).await;
    assert_eq!(
        again["state"], "CREATED",
        "the redelivery did not turn into an email conflict"
    );
}

#[tokio::test]
async fn the_lambda_api_refuses_unknown_functions_and_reports_function_errors() {
    let stack = LocalStack::start(P, "").await;
    let lambda = stack.state["lambdaEndpoint"]
        .as_str()
        .expect("lambda endpoint")
        .to_owned();
    let missing = http()
        .post(format!(
            "{lambda}/2015-03-31/functions/NoSuchFunction/invocations"
        ))
        .json(&json!({}))
        .send()
        .await
        .expect("invoke");
    assert_eq!(missing.status().as_u16(), 404);
    // An SQS consumer given something that is not an SQS event: a function error, as in Lambda.
    let bad = http()
        .post(format!(
            "{lambda}/2015-03-31/functions/{}/invocations",
            stack.function_id("ConsumerFunction")
        ))
        .json(&json!({"Records": "not a list"}))
        .send()
        .await
        .expect("invoke");
    assert_eq!(bad.status().as_u16(), 200);
    assert_eq!(
        bad.headers()
            .get("x-amz-function-error")
            .map(|v| v.to_str().expect("ascii")),
        Some("Unhandled")
    );
    let answer: Value = bad.json().await.expect("JSON");
    // What the Rust runtime (lambda_runtime 1.5) reports, in AWS as here, for an event that does
    // not deserialise into the handler's type: its error's type name, the handler never called.
    assert_eq!(
        answer["errorType"],
        "&lambda_runtime::deserializer::DeserializeError"
    );
}

#[tokio::test]
async fn a_create_the_queue_refuses_gets_400_and_nothing_is_acknowledged() {
    let stack = LocalStack::start(P, "").await;
    // U+FFFE is valid JSON and passes the model, but SQS refuses it (InvalidMessageContents):
    // the client's fault, so 400, and no message id that could be polled.
    let (status, location, answer) = create(
        &stack,
        json!({"name": "Odd \u{FFFE} name", "email": "odd@example.com"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(location, None);
    assert!(answer.get("messageId").is_none(), "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be queued"),
        "{answer}"
    );
    assert_eq!(stack.queue_depth(&stack.queue_url(P, "UserQueue")).await, 0);
}

#[tokio::test]
async fn a_create_whose_queue_call_fails_gets_a_5xx_never_a_202() {
    let stack = LocalStack::start(P, "").await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    sqs.delete_queue()
        .queue_url(stack.queue_url(P, "UserQueue"))
        .send()
        .await
        .expect("delete queue");
    let (status, location, answer) =
        create(&stack, json!({"name": "Ada", "email": "ada@example.com"})).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(location, None);
    assert!(answer.get("messageId").is_none(), "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nothing was accepted"),
        "{answer}"
    );
}

#[tokio::test]
async fn reads_whose_table_call_fails_get_a_5xx_never_a_404() {
    let stack = LocalStack::start(P, "").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    dynamodb
        .delete_table()
        .table_name(stack.table(P, "UsersTable"))
        .send()
        .await
        .expect("delete table");
    for path in ["/status/some-message", "/users/some-user"] {
        let (status, answer) = get(&stack, path).await;
        assert_eq!(status, 500, "{path}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains("could not be read"),
            "{path}: {answer}"
        );
    }
}

/// Short receives so that a failing message reaches the dead-letter queue within seconds (the
/// template is unchanged, as `sam deploy --parameter-overrides` would leave it).
const FAIL_FAST: &str = "QueueVisibilityTimeout=1 ConsumerTimeout=1 MaxReceiveCount=2";

/// Creates `table` again as `described` (keys, attribute definitions, indexes): the "fix".
async fn recreate_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    described: &aws_sdk_dynamodb::types::TableDescription,
) {
    use aws_sdk_dynamodb::types::{BillingMode, GlobalSecondaryIndex};
    let indexes = described
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            GlobalSecondaryIndex::builder()
                .index_name(index.index_name().expect("index name"))
                .set_key_schema(index.key_schema.clone())
                .set_projection(index.projection.clone())
                .build()
                .expect("index")
        })
        .collect::<Vec<_>>();
    dynamodb
        .create_table()
        .table_name(described.table_name().expect("name"))
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(described.attribute_definitions.clone())
        .set_key_schema(described.key_schema.clone())
        .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
        .send()
        .await
        .expect("recreate the table");
}

#[tokio::test]
async fn a_create_dead_lettered_by_an_outage_resolves_under_its_original_id_after_a_fix_and_a_redrive()
 {
    let stack = LocalStack::start(P, FAIL_FAST).await;
    let table = stack.table(P, "UsersTable");
    let dynamodb = aws_sdk_dynamodb::Client::new(&stack.sdk);
    let described = dynamodb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe")
        .table
        .expect("table");
    // The outage: the table is gone, so every write fails and the message is dead-lettered.
    dynamodb
        .delete_table()
        .table_name(&table)
        .send()
        .await
        .expect("delete the table");
    let (status, location, answer) = create(
        &stack,
        json!({"name": "Ada Redriven", "email": "redriven@example.com"}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    let id = answer["messageId"].as_str().expect("messageId").to_owned();
    assert_eq!(location, Some(format!("/v1/status/{id}")));

    let dlq = stack.queue_url(P, "DeadLetterQueue");
    testkit::eventually(
        "the create in the dead-letter queue",
        common::settle_after(Duration::from_secs(2)),
        || async { (stack.queue_depth(&dlq).await == 1).then_some(()) },
    )
    .await;
    let sqs = aws_sdk_sqs::Client::new(&stack.sdk);
    let dead = sqs
        .receive_message()
        .queue_url(&dlq)
        .message_attribute_names("All")
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive");
    let dead = &dead.messages()[0];
    assert_eq!(
        dead.message_attributes()
            .and_then(|a| a.get("requestId"))
            .and_then(|a| a.string_value()),
        Some(id.as_str()),
        "the id the client holds travels with the message"
    );
    let dead_message_id = dead.message_id().expect("message id").to_owned();

    // The fix, then the redrive: the message comes back as a new message with a new id.
    recreate_table(&dynamodb, &described).await;
    let source = sqs_redrive::source_queue_of(&sqs, &dlq)
        .await
        .expect("source queue");
    assert_eq!(source, stack.queue_url(P, "UserQueue"));
    let moved = sqs_redrive::redrive(&sqs, &dlq, &source, None)
        .await
        .expect("redrive");
    assert_eq!(moved, 1);

    // The id the client was given resolves to the user.
    let state = processed(&stack, &id).await;
    assert_eq!(state["state"], "CREATED", "{state}");
    let user_id = state["userId"].as_str().expect("userId").to_owned();
    let (status, user) = get(&stack, &format!("/users/{user_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(user["email"], "redriven@example.com");
    assert_eq!(user["messageId"], id.as_str());
    let users = user_items(&stack).await;
    assert_eq!(users.len(), 1);
    assert_ne!(
        users[0]["sqsMessageId"].as_s().ok(),
        Some(&dead_message_id),
        "the user was written from the redriven copy, a message with another id"
    );
    nothing_left_or_dead_lettered(&stack).await;
}

#[tokio::test]
async fn bodies_the_model_accepts_all_reach_a_terminal_status_and_none_is_dead_lettered() {
    let stack = LocalStack::start(P, FAIL_FAST).await;
    let multibyte = json!({"name": "é".repeat(100),
                           "email": format!("{}@example.com", "é".repeat(242)),
                           "locale": "ü".repeat(35)})
    .to_string();
    // (body, the state it must end in); each is valid for the model, so each is accepted.
    let cases = [
        (
            r#"{"name": "First", "email": "dup@example.com", "name": "Last"}"#,
            "CREATED",
        ),
        (
            r#"{"name": "\ud800", "email": "lone@example.com"}"#,
            "INVALID",
        ),
        (multibyte.as_str(), "CREATED"),
        (
            r#"{"name": "   ", "email": "blank@example.com"}"#,
            "CREATED",
        ),
    ];
    let mut ids = Vec::new();
    for (body, _) in &cases {
        let (status, _, answer) = create_raw(&stack, body).await;
        assert_eq!(status, 202, "the model accepts {body}: {answer}");
        ids.push(answer["messageId"].as_str().expect("messageId").to_owned());
    }
    // Nothing loops and nothing is dead-lettered: with two receives of a second each, a refused
    // record would be in the dead-letter queue by the time the queue drains.
    nothing_left_or_dead_lettered(&stack).await;
    for ((body, want), id) in cases.iter().zip(&ids) {
        let state = processed(&stack, id).await;
        assert_eq!(state["state"], *want, "{body}: {state}");
    }
    let duplicate = processed(&stack, &ids[0]).await;
    let (_, user) = get(
        &stack,
        &format!("/users/{}", duplicate["userId"].as_str().expect("userId")),
    )
    .await;
    assert_eq!(user["name"], "Last", "the last of duplicate keys wins");
    let reasons: Vec<_> = stack
        .items(&stack.table(P, "UsersTable"))
        .await
        .into_iter()
        .filter_map(|i| i.get("reason").and_then(|r| r.as_s().ok()).cloned())
        .collect();
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].contains("unpaired surrogate"), "{reasons:?}");
}

#[tokio::test]
async fn one_request_is_found_by_its_api_request_id_in_the_access_log_the_consumers_log_and_the_user()
 {
    let stack = LocalStack::start(P, "").await;
    let (user, password) = stack.credentials(P);
    let response = http()
        .post(format!("{}/users", base(&stack)))
        .basic_auth(user, Some(password))
        .header("content-type", "application/json")
        .body(json!({"name": "Grace Hopper", "email": "grace@example.com"}).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 202);
    // $context.requestId, the request's apiRequestId (the status id, messageId, is another).
    let id = response.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    let answer: Value = response.json().await.expect("JSON");
    let message_id = answer["messageId"].as_str().expect("messageId").to_owned();
    assert_eq!(processed(&stack, &message_id).await["state"], "CREATED");

    let access = stack
        .lines_with("AccessLogGroup", "requestId", &id, Duration::ZERO)
        .await;
    assert_eq!(access.len(), 1, "{access:?}");
    let line: Value = serde_json::from_str(&access[0]).expect("the stage's JSON format");
    assert_eq!(line["httpMethod"], "POST");
    assert_eq!(line["resourcePath"], "/users");
    assert_eq!(line["status"], "202");
    assert_eq!(line["integrationStatus"], "200", "SQS's answer");
    assert_eq!(line["principal"], "api-user");

    let consumer = stack
        .lines_with("ConsumerLogGroup", "apiRequestId", &id, Duration::ZERO)
        .await;
    assert!(
        consumer.iter().any(|l| l.contains("user created")),
        "{consumer:?}"
    );

    let kinds: Vec<String> = stack
        .items(&stack.table(P, "UsersTable"))
        .await
        .into_iter()
        .filter(|i| i.get("apiRequestId").and_then(|v| v.as_s().ok()) == Some(&id))
        .filter_map(|i| i.get("kind").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    // A created user is its own status (the status route finds it by messageId).
    assert!(kinds.contains(&"user".to_owned()), "{kinds:?}");
}
