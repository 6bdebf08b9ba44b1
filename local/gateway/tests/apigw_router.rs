//! The API Gateway core's routers driven with `tower::ServiceExt::oneshot`: no socket, no
//! function, the real SQS client against moto behind the integrations. What API Gateway answers
//! before an integration runs is decided by the core for both flavors; these tests hold it there.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use local_gateway::apigw::{helper::Helper, http, rest};
use local_gateway::event_queue::EventQueue;
use local_gateway::sigv4::SigningKey;
use local_gateway::stack::{self, Clients, Stack};
use tower::ServiceExt as _;

async fn provisioned() -> (Stack, Clients) {
    let sdk = testkit::sdk_config().await;
    let clients = Clients::new(&sdk);
    let template = testkit::repo_root().join("local/gateway/tests/fixtures/apigw/template.yaml");
    let mut stacks = stack::provision(
        &template,
        &testkit::unique("router"),
        &BTreeMap::new(),
        "us-east-1",
        &clients,
    )
    .await
    .expect("provision");
    (stacks.remove(0), clients)
}

async fn body_of(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn received(clients: &Clients, stack: &Stack) -> Vec<String> {
    let url = stack.scope.resources["Inbox"].reference.clone();
    let out = clients
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive");
    out.messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_http_api_router_answers_routes_limits_and_integrations_without_a_socket() {
    let (stack, clients) = provisioned().await;
    let api = http::load(&stack, &[], &clients)
        .expect("load")
        .pop()
        .expect("one HTTP API");
    let router = Arc::new(api).router();
    let post = |path: &str| {
        Request::post(path)
            .body(Body::from(r#"{"a":1}"#))
            .expect("request")
    };

    let sent = router
        .clone()
        .oneshot(post("/in/x%20y"))
        .await
        .expect("answer");
    assert_eq!(sent.status(), StatusCode::OK);
    assert!(sent.headers().contains_key("apigw-requestid"));
    assert!(body_of(sent).await.contains("<MessageId>"));
    assert_eq!(received(&clients, &stack).await, [r#"{"a":1}"#]);

    for (request, status) in [
        (
            Request::get("/in/x").body(Body::empty()).expect("request"),
            404,
        ),
        (post("/in/"), 404),
        (post("/in//x"), 404),
        (post("/nowhere"), 404),
        (
            Request::post("/in/x")
                .header("x-pad", "p".repeat(10_300))
                .body(Body::from("{}"))
                .expect("request"),
            413,
        ),
        (
            Request::post("/in/x").body(Body::empty()).expect("request"),
            400,
        ),
    ] {
        let what = format!("{} {}", request.method(), request.uri());
        let answer = router.clone().oneshot(request).await.expect("answer");
        assert_eq!(answer.status().as_u16(), status, "{what}");
        assert!(
            body_of(answer).await.starts_with(r#"{"message":"#),
            "{what}"
        );
    }
    assert!(
        received(&clients, &stack).await.is_empty(),
        "nothing refused was sent"
    );
}

#[tokio::test]
async fn the_rest_api_router_answers_routes_media_types_and_selection_without_a_socket() {
    let (stack, clients) = provisioned().await;
    let python = testkit::repo_root().join(".venv/bin/python");
    let helper = Arc::new(
        Helper::start(python.to_str().expect("path"))
            .await
            .expect("helper"),
    );
    let shared = rest::Shared {
        invoker: Arc::new(EventQueue::new(
            &[],
            Default::default(),
            clients.sqs.clone(),
            clients.events.clone(),
            Duration::from_secs(1),
        )),
        helper,
        signing: SigningKey {
            access_key_id: "AKIALOCAL".into(),
            secret_access_key: "secret".into(),
        },
        endpoint: std::env::var("MOTO_ENDPOINT").expect("MOTO_ENDPOINT"),
    };
    let api = rest::load(&stack, &[], &shared)
        .expect("load")
        .pop()
        .expect("one REST API");
    assert_eq!(api.auth_kind(), "NONE");
    let router = Arc::new(api).router();
    let post = |content_type: &str, body: &str| {
        Request::post("/v2/items")
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .expect("request")
    };

    let sent = router
        .clone()
        .oneshot(post("application/json; charset=utf-8", r#"{"b":2}"#))
        .await
        .expect("answer");
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    assert_eq!(
        sent.headers()["x-fixture"],
        "items",
        "a static response parameter"
    );
    assert!(sent.headers().contains_key("x-amzn-requestid"));
    let body = body_of(sent).await;
    assert!(body.starts_with(r#"{"id": ""#), "{body}");
    assert!(
        body.contains(r#""greeting": "hello""#),
        "the stage's variables: {body}"
    );
    assert_eq!(received(&clients, &stack).await, [r#"{"b":2}"#]);

    let cases = [
        (post("text/plain", "x"), 415, "Unsupported Media Type"),
        (
            Request::get("/v2/items")
                .body(Body::empty())
                .expect("request"),
            403,
            "Missing Authentication Token",
        ),
        (
            Request::post("/items")
                .body(Body::empty())
                .expect("request"),
            403,
            "Missing Authentication Token",
        ),
        // SQS refuses the message (a control character): the 4xx selection pattern answers.
        (post("application/json", "\u{1}"), 400, "refused"),
    ];
    for (request, status, says) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let answer = router.clone().oneshot(request).await.expect("answer");
        assert_eq!(answer.status().as_u16(), status, "{what}");
        let body = body_of(answer).await;
        assert!(body.contains(says), "{what}: {body}");
    }
    assert!(
        received(&clients, &stack).await.is_empty(),
        "nothing refused was sent"
    );
}
