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

/// The access log lines the gateway's sink receives for `group`, as they arrive.
async fn access_lines(
    lines: &mut tokio::sync::broadcast::Receiver<Arc<local_gateway::logs::Line>>,
    group: &str,
    count: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    // The line is sent before the answer returns, so it is already there; the bound only
    // decides how long a broken run takes to fail.
    while out.len() < count {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.recv())
            .await
            .expect("an access log line")
            .expect("the sink");
        if line.group == group {
            assert_eq!(line.function, None, "an access log line is no function's");
            out.push(line.text.clone());
        }
    }
    out
}

#[tokio::test]
async fn each_answer_of_both_flavors_gets_its_stages_access_log_line_in_cloudwatch_logs() {
    let (stack, clients) = provisioned().await;
    let sink = local_gateway::logs::global();
    sink.ship_to(
        clients.logs.clone(),
        local_gateway::logs::Shipping::default(),
    );
    let mut lines = sink.subscribe();
    let api = http::load(&stack, &[], &clients)
        .expect("load")
        .pop()
        .expect("one HTTP API");
    let group = api.access_log_group().expect("an access log").to_owned();
    let router = Arc::new(api).router();

    let sent = router
        .clone()
        .oneshot(
            Request::post("/in/x")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await
        .expect("answer");
    let id = sent.headers()["apigw-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    let length = body_of(sent).await.len();
    let missing = router
        .clone()
        .oneshot(
            Request::get("/nowhere")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let got = access_lines(&mut lines, &group, 2).await;
    let line: serde_json::Value = serde_json::from_str(&got[0]).expect("JSON line");
    assert_eq!(
        line,
        serde_json::json!({"requestId": id, "routeKey": "POST /in/{id}", "status": "200",
            "integrationStatus": "200", "integrationError": "-", "errorType": "-", "path": "/in/x",
            "method": "POST", "length": length.to_string()})
    );
    let refused: serde_json::Value = serde_json::from_str(&got[1]).expect("JSON line");
    assert_eq!(refused["status"], "404");
    assert_eq!(refused["routeKey"], "-", "no route matched");
    assert_eq!(refused["integrationStatus"], "-", "no integration ran");
    assert_eq!(refused["errorType"], "RESOURCE_NOT_FOUND");

    // And CloudWatch Logs (moto) holds both, in the stage's group.
    let logs = clients.logs.clone();
    let shipped = testkit::eventually(
        "the access log lines in CloudWatch Logs",
        Duration::from_secs(120),
        || {
            let (logs, group) = (logs.clone(), group.clone());
            async move {
                let out = logs
                    .filter_log_events()
                    .log_group_name(&group)
                    .send()
                    .await
                    .ok()?;
                let messages: Vec<String> = out
                    .events()
                    .iter()
                    .filter_map(|e| e.message().map(str::to_owned))
                    .collect();
                (messages.len() >= 2).then_some(messages)
            }
        },
    )
    .await;
    assert_eq!(shipped, got, "what was printed is what was shipped");

    // The REST API's stage writes its own format to the same group.
    let python = testkit::repo_root().join(".venv/bin/python");
    let shared = rest::Shared {
        invoker: Arc::new(EventQueue::new(
            &[],
            Default::default(),
            clients.sqs.clone(),
            clients.events.clone(),
            Duration::from_secs(1),
        )),
        helper: Arc::new(
            Helper::start(python.to_str().expect("path"))
                .await
                .expect("helper"),
        ),
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
    assert_eq!(api.access_log_group(), Some(group.as_str()));
    let router = Arc::new(api).router();
    let accepted = router
        .clone()
        .oneshot(
            Request::post("/v2/items")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"c":3}"#))
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let id = accepted.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    let unsupported = router
        .clone()
        .oneshot(
            Request::post("/v2/items")
                .header("content-type", "text/plain")
                .body(Body::from("x"))
                .expect("request"),
        )
        .await
        .expect("answer");
    let refused_id = unsupported.headers()["x-amzn-requestid"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        access_lines(&mut lines, &group, 2).await,
        [
            format!("{id} POST /items 202 200 -"),
            format!("{refused_id} POST /items 415 - UNSUPPORTED_MEDIA_TYPE"),
        ]
    );
}
