//! Every mapping template written in the repository's templates renders with the gateway's
//! template engine (airspeed-ext, through the helper) on representative inputs, and yields JSON:
//! a typo in a template fails here, not in front of a user.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use local_gateway::apigw::helper::Helper;
use local_gateway::cfn::{Scope, Template};
use serde_json::{Value, json};

/// (where, template text, whether it must give JSON rather than a form) for every request and
/// response template of every OpenAPI body.
fn mapping_templates() -> Vec<(String, String, bool)> {
    let root = testkit::repo_root();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join("patterns")).expect("patterns/") {
        let path = entry.expect("entry").path().join("template.yaml");
        if !path.exists() {
            continue;
        }
        let template = Template::load(&path).expect("template");
        let scope = Scope::for_checks(&template).expect("checkable template");
        for (logical, resource) in template.resources() {
            let props = scope.resolve(&resource["Properties"]).expect("resolvable");
            let Some(body) = props.get("DefinitionBody").or_else(|| props.get("Body")) else {
                continue;
            };
            for (route, item) in body["paths"].as_object().into_iter().flatten() {
                for (method, operation) in item.as_object().into_iter().flatten() {
                    let integration = &operation["x-amazon-apigateway-integration"];
                    let at = |what: &str| {
                        format!("{}: {logical} {method} {route} {what}", path.display())
                    };
                    let form = integration
                        .pointer("/requestParameters/integration.request.header.Content-Type")
                        .and_then(Value::as_str)
                        .is_some_and(|c| c.contains("x-www-form-urlencoded"));
                    for (content, text) in integration["requestTemplates"]
                        .as_object()
                        .into_iter()
                        .flatten()
                    {
                        out.push((
                            at(&format!("request {content}")),
                            text.as_str().unwrap_or_default().to_owned(),
                            !form,
                        ));
                    }
                    for (key, response) in
                        integration["responses"].as_object().into_iter().flatten()
                    {
                        for (content, text) in response["responseTemplates"]
                            .as_object()
                            .into_iter()
                            .flatten()
                        {
                            out.push((
                                at(&format!("response {key} {content}")),
                                text.as_str().unwrap_or_default().to_owned(),
                                true,
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_mapping_template_renders_to_json() {
    let templates = mapping_templates();
    assert!(
        templates.len() >= 4,
        "expected the async-invoke templates at least"
    );
    let python = testkit::repo_root().join(".venv/bin/python");
    let helper = Helper::start(python.to_str().expect("path"))
        .await
        .expect("helper");
    let context = json!({"requestId": "req-1", "extendedRequestId": "Ab+c/dEF9x8=", "stage": "v1", "domainName": "127.0.0.1:3000", "httpMethod": "GET",
                         "resourcePath": "/jobs/{jobId}", "identity": {"sourceIp": "127.0.0.1"}});
    let params = json!({"path": {"jobId": "job-\"1'"}, "querystring": {}, "header": {}});
    // Bodies a template may meet: a client request, an empty service answer, a full item.
    let bodies = [
        r#"{"seconds": 1}"#.to_owned(),
        "{}".to_owned(),
        json!({"Item": {"jobId": {"S": "job-1"}, "status": {"S": "SUCCEEDED"}, "parameters": {"S": "{\"seconds\":1}"},
                        "result": {"S": "{\"sleptSeconds\":1}"}, "attempts": {"N": "1"}, "startedAt": {"N": "1"}, "finishedAt": {"N": "2"}}})
        .to_string(),
        json!({"Items": [{"messageId": {"S": "m-1"}, "userId": {"S": "u-1"}, "state": {"S": "CREATED"}, "kind": {"S": "user"}}], "Count": 1}).to_string(),
        json!({"Items": [], "Count": 0}).to_string(),
        json!({"Item": {"userId": {"S": "u-1"}, "kind": {"S": "user"}, "name": {"S": "O'Brien \"Ann\""}, "email": {"S": "a@b.co"},
                        "messageId": {"S": "m-1"}, "createdAt": {"N": "1"}}}).to_string(),
        json!({"SendMessageResponse": {"SendMessageResult": {"MessageId": "m-1"}}}).to_string(),
    ];
    for (at, text, json) in &templates {
        for body in &bodies {
            let rendered = helper
                .render(text, body, &params, &context)
                .await
                .unwrap_or_else(|e| panic!("{at}: {e:#}"));
            if *json {
                let parsed: Result<Value, _> = serde_json::from_str(&rendered.output);
                assert!(
                    parsed.is_ok(),
                    "{at} with body {body} gave no JSON:\n{}",
                    rendered.output
                );
            } else {
                assert!(
                    rendered.output.trim().starts_with("Action="),
                    "{at} gave no query-protocol form:\n{}",
                    rendered.output
                );
            }
        }
    }
}

/// The user-api template of `what` (`"post /users request"`, `"get /status/{messageId} response"`).
fn user_api_template(what: &str) -> String {
    let found: Vec<String> = mapping_templates()
        .into_iter()
        .filter(|(at, _, _)| at.contains("patterns/user-api/") && at.contains(what))
        .map(|(_, text, _)| text)
        .collect();
    assert_eq!(found.len(), 1, "one user-api template {what:?}");
    found.into_iter().next().expect("template")
}

fn form_fields(form: &str) -> std::collections::BTreeMap<String, String> {
    form.trim()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                let mut out = Vec::new();
                let bytes = s.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'%' {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
                        i += 3;
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).expect("utf-8")
            };
            (decode(k), decode(v))
        })
        .collect()
}

#[tokio::test]
async fn user_api_create_queues_an_id_clients_cannot_set_and_answers_with_it() {
    let python = testkit::repo_root().join(".venv/bin/python");
    let helper = Helper::start(python.to_str().expect("path"))
        .await
        .expect("helper");
    // The extended request id API Gateway generates (base64): sent and answered URL-safe. The
    // request id, which clients can override, is never the status id; it travels as
    // apiRequestId, the id the access log names.
    let context =
        json!({"requestId": "client-chosen", "extendedRequestId": "Ab+c/dEF9x8=", "stage": "v1"});
    let params = json!({"path": {}, "querystring": {}, "header": {}});
    let body = r#"{"name": "Ada & Co", "email": "ada@example.com"}"#;

    let form = helper
        .render(
            &user_api_template("post /users request"),
            body,
            &params,
            &context,
        )
        .await
        .expect("request template")
        .output;
    let fields = form_fields(&form);
    assert_eq!(fields["Action"], "SendMessage");
    assert_eq!(fields["MessageBody"], body);
    assert_eq!(fields["MessageAttribute.1.Name"], "requestId");
    assert_eq!(fields["MessageAttribute.1.Value.DataType"], "String");
    assert_eq!(
        fields["MessageAttribute.1.Value.StringValue"],
        "Ab-c_dEF9x8"
    );
    assert_eq!(fields["MessageAttribute.2.Name"], "apiRequestId");
    assert_eq!(fields["MessageAttribute.2.Value.DataType"], "String");
    assert_eq!(
        fields["MessageAttribute.2.Value.StringValue"],
        "client-chosen"
    );

    let response = user_api_template("post /users response default");
    let sqs_answer = json!({"SendMessageResponse": {"SendMessageResult": {"MessageId": "sqs-id-changes-on-redrive"}}});
    let accepted = helper
        .render(&response, &sqs_answer.to_string(), &params, &context)
        .await
        .expect("response template");
    let answer: Value = serde_json::from_str(&accepted.output).expect("JSON");
    assert_eq!(answer, json!({"messageId": "Ab-c_dEF9x8"}));
    assert_eq!(
        accepted.status, None,
        "202, as the integration response says"
    );
    assert_eq!(
        accepted.headers,
        [("Location".to_owned(), "/v1/status/Ab-c_dEF9x8".to_owned())]
    );

    // No message id: SQS queued nothing, so there is no id to hand out.
    let refused = helper
        .render(&response, "{}", &params, &context)
        .await
        .expect("response template");
    assert_eq!(refused.status, Some(500));
    assert!(refused.headers.is_empty());
}

#[tokio::test]
async fn user_api_status_names_the_reason_when_the_index_has_it() {
    let python = testkit::repo_root().join(".venv/bin/python");
    let helper = Helper::start(python.to_str().expect("path"))
        .await
        .expect("helper");
    let context = json!({"requestId": "r", "stage": "v1"});
    let params = json!({"path": {"messageId": "req-1"}, "querystring": {}, "header": {}});
    let template = user_api_template("get /status/{messageId} response default");
    let render = |item: Value| {
        let helper = &helper;
        let template = &template;
        let params = &params;
        let context = &context;
        async move {
            let rendered = helper
                .render(
                    template,
                    &json!({"Items": [item], "Count": 1}).to_string(),
                    params,
                    context,
                )
                .await
                .expect("render");
            serde_json::from_str::<Value>(&rendered.output).expect("JSON")
        }
    };
    let invalid = render(json!({"userId": {"S": "message#req-1"}, "messageId": {"S": "req-1"}, "kind": {"S": "status"},
                                "state": {"S": "INVALID"}, "reason": {"S": "name must be 1-100 characters"}}))
    .await;
    assert_eq!(
        invalid,
        json!({"messageId": "req-1", "userId": null, "state": "INVALID", "reason": "name must be 1-100 characters"})
    );
    let created = render(
        json!({"userId": {"S": "u-1"}, "messageId": {"S": "req-1"}, "kind": {"S": "user"},
                                "state": {"S": "CREATED"}}),
    )
    .await;
    assert_eq!(
        created,
        json!({"messageId": "req-1", "userId": "u-1", "state": "CREATED", "reason": null})
    );
}

#[tokio::test]
async fn kinesis_stream_puts_the_body_in_the_apis_envelope_with_the_request_id() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let python = testkit::repo_root().join(".venv/bin/python");
    let helper = Helper::start(python.to_str().expect("path"))
        .await
        .expect("helper");
    let templates: Vec<(String, String)> = mapping_templates()
        .into_iter()
        .filter(|(at, _, _)| at.contains("patterns/kinesis-stream/") && at.contains(" request "))
        .map(|(at, text, _)| (at, text))
        .collect();
    assert_eq!(templates.len(), 3, "one request template per content type");
    let params =
        json!({"path": {"streamName": "s", "eventId": "e-1"}, "querystring": {}, "header": {}});
    // A body that is no JSON, with quotes, a backslash, a template-looking dollar and non-ASCII;
    // and a request id with characters JSON must escape (clients can override REST ids).
    let body = "not json \" quote \\ $input.body ünï 😀";
    for id in ["6f1f0000-0000-4000-8000-000000000000", r#"a"b'c\d"#] {
        let context = json!({"requestId": id, "stage": "prod"});
        for (at, text) in &templates {
            let rendered = helper
                .render(text, body, &params, &context)
                .await
                .unwrap_or_else(|e| panic!("{at}: {e:#}"));
            let put: Value = serde_json::from_str(&rendered.output)
                .unwrap_or_else(|e| panic!("{at}: {e}: {}", rendered.output));
            let data = b64
                .decode(put["Data"].as_str().expect("Data"))
                .expect("Data is base64");
            let envelope: Value = serde_json::from_slice(&data)
                .unwrap_or_else(|e| panic!("{at}: the envelope is JSON: {e}"));
            let request = envelope["apiGatewayRequest"]
                .as_object()
                .unwrap_or_else(|| panic!("{at}: {envelope}"));
            assert_eq!(request.len(), 2, "{at}: apiRequestId and body only");
            assert_eq!(request["apiRequestId"], id, "{at}");
            let sent = b64
                .decode(request["body"].as_str().expect("body"))
                .expect("the body is base64");
            assert_eq!(String::from_utf8(sent).expect("utf-8"), body, "{at}");
            assert_eq!(put["PartitionKey"], "e-1", "{at}");
        }
    }
}
