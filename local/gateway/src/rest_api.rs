//! REST APIs (`AWS::Serverless::Api` / `AWS::ApiGateway::RestApi` defined by an OpenAPI body)
//! served on 127.0.0.1 at their stage path, as API Gateway serves them.
//!
//! From the OpenAPI document alone: routes, `AWS_IAM` (SigV4) authorization, request validators
//! with their JSON-schema models, and non-proxy `aws` integrations with their request and response
//! mapping templates — a Lambda function (synchronous, or asynchronous with
//! `X-Amz-Invocation-Type: 'Event'`) or an AWS service action such as DynamoDB `GetItem`, which is
//! called on moto with the rendered request. An integration response is selected by matching
//! `selectionPattern` against the integration's status code (for AWS services) or the Lambda
//! error message, and `$context.responseOverride` can change the status and headers.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::apigw_helper::Helper;
use crate::cfn::scalar_to_string;
use crate::event_queue::EventQueue;
use crate::functions::{Function, InvokeError};
use crate::sigv4::{SignedRequest, SigningKey};
use crate::stack::Stack;

/// A Lambda authorizer of a REST API (`x-amazon-apigateway-authorizer`).
#[derive(Debug)]
struct RestAuthorizer {
    name: String,
    function: Arc<Function>,
    identity_headers: Vec<String>,
    ttl: std::time::Duration,
    cache: tokio::sync::Mutex<std::collections::HashMap<String, (Instant, Value)>>,
}

#[derive(Debug, Clone)]
struct Route {
    example: Option<Value>,
    authorizer: Option<Arc<RestAuthorizer>>,
    method: String,
    path: String,
    segments: Vec<String>,
    sigv4: bool,
    validate_body: bool,
    validate_params: bool,
    body_schema: Option<Value>,
    required_params: Vec<(String, String)>,
    integration: Value,
}

/// One REST API, ready to serve.
#[derive(Debug)]
pub struct RestApi {
    /// Stack path and logical id.
    pub id: String,
    /// The API id.
    pub api_id: String,
    /// The stage (served as the first path segment).
    pub stage: String,
    routes: Vec<Route>,
    region: String,
    functions: Vec<Arc<Function>>,
    invoker: Arc<EventQueue>,
    helper: Arc<Helper>,
    signing: SigningKey,
    endpoint: String,
    http: reqwest::Client,
}

/// Everything REST APIs share.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Runs asynchronous invokes.
    pub invoker: Arc<EventQueue>,
    /// Renders templates, validates bodies.
    pub helper: Arc<Helper>,
    /// The published signing credentials.
    pub signing: SigningKey,
    /// moto's endpoint, for service integrations.
    pub endpoint: String,
}

/// Resolves local `$ref`s (`#/components/schemas/X`, `#/definitions/X`) in `schema`.
fn inline_refs(schema: &Value, document: &Value, depth: usize) -> Value {
    if depth > 16 {
        return schema.clone();
    }
    match schema {
        Value::Object(map) => {
            if let Some(reference) = map.get("$ref").and_then(Value::as_str)
                && let Some(pointer) = reference.strip_prefix('#')
                && let Some(target) = document.pointer(pointer)
            {
                return inline_refs(target, document, depth + 1);
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), inline_refs(v, document, depth + 1)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| inline_refs(v, document, depth + 1))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Reads the REST APIs of `stack`.
pub fn load(stack: &Stack, functions: &[Arc<Function>], shared: &Shared) -> Result<Vec<RestApi>> {
    let mut apis = Vec::new();
    for kind in ["AWS::Serverless::Api", "AWS::ApiGateway::RestApi"] {
        for (logical, resource) in stack.template.resources_of(kind) {
            let props = stack
                .scope
                .resolve(resource.get("Properties").unwrap_or(&Value::Null))
                .map_err(|e| anyhow!("{logical}: {e}"))?;
            let document = props
                .get("DefinitionBody")
                .or_else(|| props.get("Body"))
                .cloned()
                .ok_or_else(|| {
                    anyhow!("{logical}: only APIs defined by an OpenAPI body are served locally")
                })?;
            let stage = props
                .get("StageName")
                .map(scalar_to_string)
                .unwrap_or_else(|| "prod".into());
            let api_id = stack
                .scope
                .resources
                .get(logical)
                .map(|p| p.reference.clone())
                .unwrap_or_default();
            apis.push(RestApi {
                id: if stack.path.is_empty() {
                    logical.clone()
                } else {
                    format!("{}.{logical}", stack.path)
                },
                api_id,
                stage,
                routes: routes(&document, functions)?,
                region: stack.scope.region.clone(),
                functions: functions.to_vec(),
                invoker: shared.invoker.clone(),
                helper: shared.helper.clone(),
                signing: shared.signing.clone(),
                endpoint: shared.endpoint.clone(),
                http: reqwest::Client::new(),
            });
        }
    }
    Ok(apis)
}

fn authorizers(
    document: &Value,
    functions: &[Arc<Function>],
) -> Result<BTreeMap<String, Arc<RestAuthorizer>>> {
    let schemes = document
        .pointer("/components/securitySchemes")
        .or_else(|| document.get("securityDefinitions"));
    let mut out = BTreeMap::new();
    for (name, scheme) in schemes.and_then(Value::as_object).into_iter().flatten() {
        let Some(config) = scheme.get("x-amazon-apigateway-authorizer") else {
            continue;
        };
        let kind = config["type"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if kind != "request" && kind != "token" {
            bail!("authorizer {name}: type {kind:?} is not served locally");
        }
        let uri = scalar_to_string(&config["authorizerUri"]);
        let function = functions
            .iter()
            .find(|f| {
                !f.arn.is_empty() && uri.contains(&format!("/functions/{}/invocations", f.arn))
            })
            .cloned()
            .ok_or_else(|| anyhow!("authorizer {name}: {uri} names no function of the stack"))?;
        let identity = if kind == "token" {
            scheme["name"]
                .as_str()
                .unwrap_or("Authorization")
                .to_owned()
        } else {
            config["identitySource"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let identity_headers = identity
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.strip_prefix("method.request.header.")
                    .unwrap_or(s)
                    .to_ascii_lowercase()
            })
            .collect();
        let ttl = config
            .get("authorizerResultTtlInSeconds")
            .map(scalar_to_string)
            .and_then(|t| t.parse().ok())
            .unwrap_or(300);
        out.insert(
            name.clone(),
            Arc::new(RestAuthorizer {
                name: name.clone(),
                function,
                identity_headers,
                ttl: std::time::Duration::from_secs(ttl),
                cache: tokio::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        );
    }
    Ok(out)
}

/// Whether an IAM policy `resource` pattern (`*` and `?` wildcards) covers `arn`.
fn resource_matches(pattern: &str, arn: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some((b'?', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), arn.as_bytes())
}

/// Evaluates an authorizer's policy for `method_arn`: an explicit deny wins, an allow is needed.
fn policy_allows(policy: &Value, method_arn: &str) -> Result<(), &'static str> {
    let mut allowed = false;
    for statement in policy
        .pointer("/policyDocument/Statement")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let resources: Vec<String> = match &statement["Resource"] {
            Value::Array(items) => items.iter().map(scalar_to_string).collect(),
            other => vec![scalar_to_string(other)],
        };
        if !resources.iter().any(|r| resource_matches(r, method_arn)) {
            continue;
        }
        match statement["Effect"].as_str() {
            Some("Deny") => {
                return Err("User is not authorized to access this resource with an explicit deny");
            }
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Ok(())
    } else {
        Err("User is not authorized to access this resource")
    }
}

fn routes(document: &Value, functions: &[Arc<Function>]) -> Result<Vec<Route>> {
    let authorizers = authorizers(document, functions)?;
    let validators = document
        .get("x-amazon-apigateway-request-validators")
        .cloned()
        .unwrap_or(Value::Null);
    let default_validator = document
        .get("x-amazon-apigateway-request-validator")
        .and_then(Value::as_str);
    let schemes = document
        .pointer("/components/securitySchemes")
        .or_else(|| document.get("securityDefinitions"));
    let is_sigv4 = |name: &str| {
        schemes
            .and_then(|s| s.get(name))
            .and_then(|s| s.get("x-amazon-apigateway-authtype"))
            .and_then(Value::as_str)
            == Some("awsSigv4")
    };
    let mut out = Vec::new();
    for (path, item) in document
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let method = match method.as_str() {
                "x-amazon-apigateway-any-method" => "ANY".to_owned(),
                m @ ("get" | "post" | "put" | "delete" | "patch" | "head" | "options") => {
                    m.to_ascii_uppercase()
                }
                _ => continue,
            };
            let integration = operation
                .get("x-amazon-apigateway-integration")
                .cloned()
                .ok_or_else(|| anyhow!("{method} {path} has no x-amazon-apigateway-integration"))?;
            let security = operation
                .get("security")
                .or_else(|| document.get("security"));
            let sigv4 = security
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(|m| m.keys())
                .any(|name| is_sigv4(name));
            let authorizer = security
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(|m| m.keys())
                .find_map(|name| authorizers.get(name).cloned());
            let validator = operation
                .get("x-amazon-apigateway-request-validator")
                .and_then(Value::as_str)
                .or(default_validator)
                .and_then(|name| validators.get(name));
            let flag = |key: &str| {
                validator
                    .and_then(|v| v.get(key))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            };
            let body_schema = operation
                .pointer("/requestBody/content/application~1json/schema")
                .or_else(|| {
                    operation
                        .get("parameters")
                        .and_then(Value::as_array)
                        .and_then(|p| p.iter().find(|p| p["in"] == "body"))
                        .and_then(|p| p.get("schema"))
                })
                .map(|schema| inline_refs(schema, document, 0));
            let required_params = operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p["required"] == true && p["in"] != "body")
                .map(|p| (scalar_to_string(&p["in"]), scalar_to_string(&p["name"])))
                .collect();
            out.push(Route {
                example: operation
                    .pointer("/requestBody/content/application~1json/example")
                    .cloned(),
                authorizer,
                method,
                path: path.clone(),
                segments: path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                sigv4,
                validate_body: flag("validateRequestBody"),
                validate_params: flag("validateRequestParameters"),
                body_schema,
                required_params,
                integration,
            });
        }
    }
    // Literal segments before parameters, as API Gateway prefers the most specific resource.
    out.sort_by_key(|r| r.segments.iter().filter(|s| s.starts_with('{')).count());
    Ok(out)
}

fn json_response(status: StatusCode, body: Value, request_id: &str) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

fn message(status: StatusCode, text: &str, request_id: &str) -> Response {
    json_response(status, json!({ "message": text }), request_id)
}

struct Call {
    request_id: String,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
    path_params: BTreeMap<String, String>,
    source_ip: String,
    resource_path: String,
}

impl RestApi {
    /// Serves the API on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> Result<()> {
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(
                crate::http_api::MAX_PAYLOAD,
            ))
            .with_state(self);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await?;
        Ok(())
    }

    /// Runs a REST Lambda authorizer (or its cached policy) for one request.
    #[allow(clippy::too_many_arguments)]
    async fn authorize(
        &self,
        authorizer: &RestAuthorizer,
        route: &Route,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        path_params: &BTreeMap<String, String>,
        request_id: &str,
    ) -> Result<(), Response> {
        let mut identity = Vec::new();
        for name in &authorizer.identity_headers {
            match headers.get(name.as_str()).and_then(|v| v.to_str().ok()) {
                Some(v) if !v.trim().is_empty() => identity.push(v.to_owned()),
                // A missing identity source is 401 without calling the authorizer.
                _ => {
                    return Err(message(
                        StatusCode::UNAUTHORIZED,
                        "Unauthorized",
                        request_id,
                    ));
                }
            }
        }
        let method_arn = format!(
            "arn:aws:execute-api:{}:{}:{}/{}/{}{}",
            self.region,
            crate::ACCOUNT_ID,
            self.api_id,
            self.stage,
            method,
            path
        );
        let key = identity.join("\u{1f}");
        let cached = {
            let cache = authorizer.cache.lock().await;
            cache
                .get(&key)
                .filter(|(at, _)| at.elapsed() < authorizer.ttl)
                .map(|(_, p)| p.clone())
        };
        let policy = match cached {
            Some(policy) => policy,
            None => {
                let header_map = crate::headers_json(headers);
                let event = json!({
                    "type": "REQUEST",
                    "methodArn": method_arn,
                    "resource": route.path,
                    "path": format!("/{}{}", self.stage, path),
                    "httpMethod": method.as_str(),
                    "headers": header_map,
                    "pathParameters": path_params,
                    "queryStringParameters": {},
                    "stageVariables": {},
                    "requestContext": {"accountId": crate::ACCOUNT_ID, "apiId": self.api_id, "stage": self.stage,
                                       "httpMethod": method.as_str(), "resourcePath": route.path, "requestId": request_id}
                });
                match authorizer.function.invoke(event).await {
                    Ok(policy) if policy.get("policyDocument").is_some() => {
                        if !authorizer.ttl.is_zero() {
                            authorizer
                                .cache
                                .lock()
                                .await
                                .insert(key, (Instant::now(), policy.clone()));
                        }
                        policy
                    }
                    answer => {
                        match answer {
                            Err(error) => {
                                tracing::warn!(authorizer = %authorizer.name, error = %error, "authorizer failed")
                            }
                            Ok(_) => {
                                tracing::warn!(authorizer = %authorizer.name, "authorizer answered without a policy")
                            }
                        }
                        return Err(message(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Internal server error",
                            request_id,
                        ));
                    }
                }
            }
        };
        policy_allows(&policy, &method_arn)
            .map_err(|text| message(StatusCode::FORBIDDEN, text, request_id))
    }

    /// How callers authenticate: `AWS_IAM`, `CUSTOM` (a Lambda authorizer) or `NONE`.
    pub fn auth_kind(&self) -> &'static str {
        if self.routes.iter().any(|r| r.sigv4) {
            "AWS_IAM"
        } else if self.routes.iter().any(|r| r.authorizer.is_some()) {
            "CUSTOM"
        } else {
            "NONE"
        }
    }

    /// Example request bodies the OpenAPI document gives, by route key.
    pub fn examples(&self) -> BTreeMap<String, Value> {
        self.routes
            .iter()
            .filter_map(|r| Some((format!("{} {}", r.method, r.path), r.example.clone()?)))
            .collect()
    }

    /// Route keys served (`POST /jobs`, ...).
    pub fn route_keys(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    fn find(&self, method: &Method, path: &str) -> Option<(&Route, BTreeMap<String, String>)> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes.iter().find_map(|route| {
            if route.method != "ANY" && route.method != method.as_str() {
                return None;
            }
            if route.segments.len() != parts.len() {
                return None;
            }
            let mut params = BTreeMap::new();
            for (segment, part) in route.segments.iter().zip(&parts) {
                match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => {
                        params.insert(name.to_owned(), (*part).to_owned());
                    }
                    None if segment == part => {}
                    None => return None,
                }
            }
            Some((route, params))
        })
    }

    fn params(&self, call: &Call) -> Value {
        let query = crate::query_json(&call.query);
        let headers = crate::headers_json(&call.headers);
        json!({ "path": call.path_params, "querystring": query, "header": headers })
    }

    fn context(&self, call: &Call) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let access_key = call
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split("Credential=").nth(1))
            .and_then(|c| c.split('/').next())
            .unwrap_or_default()
            .to_owned();
        json!({
            "requestId": call.request_id,
            "extendedRequestId": call.request_id,
            "apiId": self.api_id,
            "stage": self.stage,
            "httpMethod": call.method.as_str(),
            "resourcePath": call.resource_path,
            "path": format!("/{}{}", self.stage, call.path),
            "domainName": call.headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            "requestTimeEpoch": now.as_millis() as u64,
            "accountId": crate::ACCOUNT_ID,
            "identity": {
                "sourceIp": call.source_ip,
                "accessKey": access_key,
                "caller": access_key,
                "user": access_key,
                "userAgent": call.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
        })
    }

    async fn validate(&self, route: &Route, call: &Call) -> Result<(), Response> {
        if route.validate_params {
            let params = self.params(call);
            let missing: Vec<&str> = route
                .required_params
                .iter()
                .filter(|(place, name)| {
                    let place = match place.as_str() {
                        "query" => "querystring",
                        other => other,
                    };
                    let value = if place == "header" {
                        call.headers
                            .get(name.as_str())
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    } else {
                        params[place]
                            .get(name.as_str())
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    };
                    value.is_none_or(|v| v.is_empty())
                })
                .map(|(_, name)| name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(message(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "Missing required request parameters: [{}]",
                        missing.join(", ")
                    ),
                    &call.request_id,
                ));
            }
        }
        if route.validate_body
            && let Some(schema) = &route.body_schema
        {
            let body = String::from_utf8_lossy(&call.body);
            match self.helper.validate(schema, &body).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    tracing::info!(route = %route.path, reason = %why, "request body refused by the model");
                    return Err(message(
                        StatusCode::BAD_REQUEST,
                        "Invalid request body",
                        &call.request_id,
                    ));
                }
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "validation helper failed");
                    return Err(message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal server error",
                        &call.request_id,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Renders the request template, runs the integration, selects and renders the response.
    async fn integrate(&self, route: &Route, call: &Call) -> Result<Response> {
        let integration = &route.integration;
        let kind = integration["type"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if kind != "aws" {
            bail!("integration type {kind:?} is not served locally yet");
        }
        let params = self.params(call);
        let context = self.context(call);
        let content_type = call
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|| "application/json".into());
        let templates = integration
            .get("requestTemplates")
            .and_then(Value::as_object);
        let template =
            templates.and_then(|t| t.get(&content_type).or_else(|| t.get("application/json")));
        let body_text = String::from_utf8_lossy(&call.body).into_owned();
        let request_body = match template {
            Some(t) => {
                self.helper
                    .render(&scalar_to_string(t), &body_text, &params, &context)
                    .await?
                    .output
            }
            None if integration["passthroughBehavior"] == "never" => {
                return Ok(message(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported Media Type",
                    &call.request_id,
                ));
            }
            None => body_text.clone(),
        };
        let uri = scalar_to_string(&integration["uri"]);
        let (status, response_body, error_message) = if let Some(arn) = uri
            .split("/functions/")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/invocations"))
        {
            let payload: Value = serde_json::from_str(&request_body).map_err(|e| {
                anyhow!("the request template did not produce JSON for the function: {e}")
            })?;
            let invocation_type = integration
                .pointer("/requestParameters/integration.request.header.X-Amz-Invocation-Type")
                .and_then(Value::as_str)
                .map(|v| v.trim_matches('\''))
                .unwrap_or("RequestResponse");
            if invocation_type == "Event" {
                self.invoker.invoke(arn, payload).ok_or_else(|| {
                    anyhow!("the integration invokes {arn}, which the stack does not hold")
                })?;
                (202u16, String::new(), None)
            } else {
                let function = self
                    .functions
                    .iter()
                    .find(|f| f.arn == arn)
                    .ok_or_else(|| {
                        anyhow!("the integration invokes {arn}, which the stack does not hold")
                    })?;
                match function.invoke(payload).await {
                    Ok(answer) => (200, answer.to_string(), None),
                    Err(InvokeError::Function(e)) => {
                        (200, e.payload().to_string(), Some(e.message))
                    }
                    Err(error @ InvokeError::Throttled { .. }) => {
                        // Lambda refused to run the function: the integration itself failed.
                        tracing::warn!(function = %function.id, error = %error, "Lambda integration throttled");
                        return Ok(message(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "Internal server error",
                            &call.request_id,
                        ));
                    }
                }
            }
        } else if let Some(path) = uri.split(":sqs:path/").nth(1) {
            self.sqs_path(path, &request_body, integration).await?
        } else if let Some((service, action)) = uri
            .split(':')
            .nth(4)
            .and_then(|service| Some((service, uri.split(":action/").nth(1)?)))
        {
            self.call_service(service, action, &request_body).await?
        } else {
            bail!("integration uri {uri} is not served locally yet");
        };
        // Select the integration response: selectionPattern against the Lambda error message, or
        // against the status code for AWS services; `default` otherwise.
        let responses = integration.get("responses").and_then(Value::as_object);
        let subject = error_message.clone().unwrap_or_else(|| status.to_string());
        let chosen = responses
            .into_iter()
            .flatten()
            .filter(|(key, _)| *key != "default")
            .find(|(key, r)| {
                let pattern = r
                    .get("selectionPattern")
                    .and_then(Value::as_str)
                    .unwrap_or(key);
                full_match(pattern, &subject)
            })
            .map(|(_, r)| r)
            .or_else(|| responses.and_then(|r| r.get("default")));
        let Some(chosen) = chosen else {
            return Ok(message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                &call.request_id,
            ));
        };
        let mut out_status: u16 = chosen
            .get("statusCode")
            .map(scalar_to_string)
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let mut headers = Vec::new();
        let body = match chosen.pointer("/responseTemplates/application~1json") {
            Some(t) => {
                let rendered = self
                    .helper
                    .render(&scalar_to_string(t), &response_body, &params, &context)
                    .await?;
                if let Some(s) = rendered.status {
                    out_status = s;
                }
                headers = rendered.headers;
                rendered.output
            }
            None => response_body,
        };
        let mut response = (
            StatusCode::from_u16(out_status).unwrap_or(StatusCode::OK),
            body,
        )
            .into_response();
        let h = response.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        if let Ok(v) = HeaderValue::from_str(&call.request_id) {
            h.insert("x-amzn-requestid", v);
        }
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                h.insert(n, v);
            }
        }
        Ok(response)
    }

    /// An SQS "path" integration (`sqs:path/<account>/<queue>`): the request template builds a
    /// query-protocol form (`Action=SendMessage&MessageBody=...`). AWS answers it in JSON when the
    /// integration asks with `Accept: application/json`; moto only speaks XML there, so the
    /// gateway sends the same call in SQS's JSON protocol and answers in that JSON shape.
    async fn sqs_path(
        &self,
        path: &str,
        form: &str,
        integration: &Value,
    ) -> Result<(u16, String, Option<String>)> {
        let queue_url = format!(
            "{}/{}",
            self.endpoint.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let request = send_message_request(&queue_url, form)?;
        let wants_json = integration
            .pointer("/requestParameters/integration.request.header.Accept")
            .and_then(Value::as_str)
            .is_some_and(|a| a.contains("application/json"));
        let message_body = request["MessageBody"].as_str().unwrap_or_default();
        // What SQS checks and moto does not (the character set, the size in bytes).
        let (status, body) = match crate::sqs_checks::refusal(message_body) {
            Some(refused) => (400, json!({"__type": format!("com.amazonaws.sqs#{}", refused.code), "message": refused.message}).to_string()),
            None => {
                let (status, body, _) = self
                    .call_service("sqs", "SendMessage", &request.to_string())
                    .await?;
                (status, body)
            }
        };
        if status >= 300 && wants_json {
            // The query API's error, in the JSON shape it has with `Accept: application/json`
            // (moto answers in SQS's JSON protocol: `__type` and `message`).
            let error: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let code = error["__type"]
                .as_str()
                .and_then(|t| t.rsplit('#').next())
                .unwrap_or("InternalFailure");
            let wrapped = json!({
                "Error": {
                    "Code": code,
                    "Message": error["message"].as_str().unwrap_or_default(),
                    "Type": if status < 500 { "Sender" } else { "Receiver" },
                },
                "RequestId": uuid::Uuid::new_v4().to_string(),
            });
            return Ok((status, wrapped.to_string(), None));
        }
        if status >= 300 || !wants_json {
            return Ok((status, body, None));
        }
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let wrapped = json!({
            "SendMessageResponse": {
                "ResponseMetadata": { "RequestId": uuid::Uuid::new_v4().to_string() },
                "SendMessageResult": {
                    "MD5OfMessageAttributes": answer.get("MD5OfMessageAttributes"),
                    "MD5OfMessageBody": answer.get("MD5OfMessageBody"),
                    "MessageId": answer.get("MessageId"),
                    "SequenceNumber": answer.get("SequenceNumber"),
                }
            }
        });
        Ok((status, wrapped.to_string(), None))
    }

    /// Calls an AWS service action on moto with the rendered body (the JSON protocols).
    async fn call_service(
        &self,
        service: &str,
        action: &str,
        body: &str,
    ) -> Result<(u16, String, Option<String>)> {
        let (target, content_type) = match service {
            "dynamodb" => ("DynamoDB_20120810", "application/x-amz-json-1.0"),
            "sqs" => ("AmazonSQS", "application/x-amz-json-1.0"),
            "kinesis" => ("Kinesis_20131202", "application/x-amz-json-1.1"),
            "events" => ("AWSEvents", "application/x-amz-json-1.1"),
            other => bail!("service integrations with {other} are not served locally yet"),
        };
        // moto routes by the credential scope's service; it does not check the signature.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/{service}/aws4_request, SignedHeaders=host, Signature=local",
            self.region
        );
        let response = self
            .http
            .post(format!("{}/", self.endpoint.trim_end_matches('/')))
            .header("x-amz-target", format!("{target}.{action}"))
            .header("content-type", content_type)
            .header("authorization", authorization)
            .body(body.to_owned())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?, None))
    }
}

/// The SQS JSON-protocol `SendMessage` request for a query-protocol form: the body, the optional
/// fields, and the message attributes (`MessageAttribute.N.Name`, `.Value.DataType`,
/// `.Value.StringValue` or `.Value.BinaryValue`, base64 in both protocols) as `MessageAttributes`.
fn send_message_request(queue_url: &str, form: &str) -> Result<Value> {
    let fields: BTreeMap<String, String> = form
        .trim()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    if fields.get("Action").map(String::as_str) != Some("SendMessage") {
        bail!("only Action=SendMessage is served locally for SQS path integrations");
    }
    let mut request = json!({ "QueueUrl": queue_url, "MessageBody": fields.get("MessageBody").cloned().unwrap_or_default() });
    for key in ["DelaySeconds", "MessageGroupId", "MessageDeduplicationId"] {
        if let Some(v) = fields.get(key) {
            request[key] = json!(v);
        }
    }
    let mut attributes = serde_json::Map::new();
    for (key, name) in &fields {
        let Some(n) = key
            .strip_prefix("MessageAttribute.")
            .and_then(|rest| rest.strip_suffix(".Name"))
        else {
            continue;
        };
        let field = |part: &str| fields.get(&format!("MessageAttribute.{n}.Value.{part}"));
        let mut value = serde_json::Map::new();
        for (part, json_key) in [
            ("DataType", "DataType"),
            ("StringValue", "StringValue"),
            ("BinaryValue", "BinaryValue"),
        ] {
            if let Some(v) = field(part) {
                value.insert(json_key.to_owned(), json!(v));
            }
        }
        if !value.contains_key("DataType") {
            bail!("MessageAttribute.{n} ({name}) has no Value.DataType");
        }
        attributes.insert(name.clone(), Value::Object(value));
    }
    if !attributes.is_empty() {
        request["MessageAttributes"] = Value::Object(attributes);
    }
    Ok(request)
}

/// Decodes one `application/x-www-form-urlencoded` component.
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&text[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `pattern` (a Java-style regex as API Gateway uses) matches all of `subject`. A small
/// subset: literals, `.`, `.*`, `\d`, `{n}`, character classes are enough for status codes.
fn full_match(pattern: &str, subject: &str) -> bool {
    fn expand(pattern: &str) -> Option<Vec<(String, usize, usize)>> {
        // (class, min, max) atoms
        let chars: Vec<char> = pattern.chars().collect();
        let mut atoms: Vec<(String, usize, usize)> = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let class = match chars[i] {
                '\\' if chars.get(i + 1) == Some(&'d') => {
                    i += 2;
                    "0123456789".to_owned()
                }
                '\\' => {
                    i += 2;
                    chars.get(i - 1)?.to_string()
                }
                '.' => {
                    i += 1;
                    "ANY".to_owned()
                }
                '[' => {
                    let end = chars[i..].iter().position(|c| *c == ']')? + i;
                    let mut set = String::new();
                    let inner: Vec<char> = chars[i + 1..end].to_vec();
                    let mut j = 0;
                    while j < inner.len() {
                        if j + 2 < inner.len() && inner[j + 1] == '-' {
                            for c in inner[j]..=inner[j + 2] {
                                set.push(c);
                            }
                            j += 3;
                        } else {
                            set.push(inner[j]);
                            j += 1;
                        }
                    }
                    i = end + 1;
                    set
                }
                c => {
                    i += 1;
                    c.to_string()
                }
            };
            let (min, max) = match chars.get(i) {
                Some('*') => {
                    i += 1;
                    (0, usize::MAX)
                }
                Some('+') => {
                    i += 1;
                    (1, usize::MAX)
                }
                Some('?') => {
                    i += 1;
                    (0, 1)
                }
                Some('{') => {
                    let end = chars[i..].iter().position(|c| *c == '}')? + i;
                    let n: usize = chars[i + 1..end].iter().collect::<String>().parse().ok()?;
                    i = end + 1;
                    (n, n)
                }
                _ => (1, 1),
            };
            atoms.push((class, min, max));
        }
        Some(atoms)
    }
    fn matches(atoms: &[(String, usize, usize)], s: &[char]) -> bool {
        let Some(((class, min, max), rest)) = atoms.split_first() else {
            return s.is_empty();
        };
        let fits = |c: &char| class == "ANY" || class.contains(*c);
        let mut n = 0;
        while n < *min {
            if n >= s.len() || !fits(&s[n]) {
                return false;
            }
            n += 1;
        }
        loop {
            if matches(rest, &s[n..]) {
                return true;
            }
            if n >= *max || n >= s.len() || !fits(&s[n]) {
                return false;
            }
            n += 1;
        }
    }
    match expand(pattern) {
        Some(atoms) => matches(&atoms, &subject.chars().collect::<Vec<_>>()),
        None => false,
    }
}

async fn handle(
    State(api): State<Arc<RestApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let prefix = format!("/{}", api.stage);
    let full_path = uri.path();
    // API Gateway answers an unknown resource or stage with 403 Missing Authentication Token.
    let missing = || {
        message(
            StatusCode::FORBIDDEN,
            "Missing Authentication Token",
            &request_id,
        )
    };
    let Some(path) = full_path
        .strip_prefix(&prefix)
        .filter(|p| p.is_empty() || p.starts_with('/'))
    else {
        return missing();
    };
    let Some((route, path_params)) = api.find(&method, path) else {
        return missing();
    };
    if route.sigv4 {
        let signed = SignedRequest {
            method: &method,
            path: full_path,
            query: uri.query().unwrap_or_default(),
            headers: &headers,
            body: &body,
        };
        if let Err(refusal) = api.signing.verify(&signed, &api.region) {
            tracing::info!(api = %api.id, route = %route.path, refusal = ?refusal, "request signature refused");
            return message(StatusCode::FORBIDDEN, &refusal.message(), &request_id);
        }
    }
    if let Some(authorizer) = &route.authorizer
        && let Err(refused) = api
            .authorize(
                authorizer,
                route,
                &method,
                path,
                &headers,
                &path_params,
                &request_id,
            )
            .await
    {
        return refused;
    }
    let call = Call {
        request_id: request_id.clone(),
        method: method.clone(),
        path: path.to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
        path_params,
        source_ip: peer.ip().to_string(),
        resource_path: route.path.clone(),
    };
    let response = match api.validate(route, &call).await {
        Err(refused) => refused,
        Ok(()) => match api.integrate(route, &call).await {
            Ok(response) => response,
            Err(error) => {
                tracing::error!(api = %api.id, route = %route.path, error = %format!("{error:#}"), "integration failed");
                message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                    &request_id,
                )
            }
        },
    };
    tracing::info!(api = %api.id, method = %method, path = %route.path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, request_id = %request_id, "request");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_patterns_match_whole_status_codes() {
        assert!(full_match("4\\d{2}", "404"));
        assert!(full_match("2..", "202"));
        assert!(!full_match("4\\d{2}", "4040"));
        assert!(!full_match("5.*", "404"));
        assert!(full_match("[45]\\d\\d", "503"));
    }

    #[test]
    fn policies_allow_by_wildcard_and_deny_explicitly() {
        let arn = "arn:aws:execute-api:us-east-1:123456789012:abc/v1/POST/users";
        let policy = |effect: &str, resource: &str| json!({"policyDocument": {"Statement": [{"Effect": effect, "Resource": resource, "Action": "execute-api:Invoke"}]}});
        assert!(
            policy_allows(
                &policy(
                    "Allow",
                    "arn:aws:execute-api:us-east-1:123456789012:abc/v1/*/*"
                ),
                arn
            )
            .is_ok()
        );
        assert!(
            policy_allows(
                &policy(
                    "Allow",
                    "arn:aws:execute-api:us-east-1:123456789012:abc/v1/GET/*"
                ),
                arn
            )
            .is_err()
        );
        assert_eq!(
            policy_allows(&policy("Deny", arn), arn),
            Err("User is not authorized to access this resource with an explicit deny")
        );
    }

    #[test]
    fn send_message_forms_carry_their_message_attributes_into_the_json_request() {
        let form = "Action=SendMessage&MessageBody=%7B%22a%22%3A1%7D\
                    &MessageAttribute.1.Name=requestId&MessageAttribute.1.Value.DataType=String\
                    &MessageAttribute.1.Value.StringValue=req+1%2F2\
                    &MessageAttribute.2.Name=blob&MessageAttribute.2.Value.DataType=Binary\
                    &MessageAttribute.2.Value.BinaryValue=AAE%3D";
        let request = send_message_request("http://q/1/queue", form).expect("request");
        assert_eq!(request["MessageBody"], r#"{"a":1}"#);
        assert_eq!(
            request["MessageAttributes"],
            json!({"requestId": {"DataType": "String", "StringValue": "req 1/2"},
                   "blob": {"DataType": "Binary", "BinaryValue": "AAE="}})
        );
        let plain = send_message_request("http://q/1/queue", "Action=SendMessage&MessageBody=x")
            .expect("request");
        assert!(plain.get("MessageAttributes").is_none());
        assert!(
            send_message_request(
                "http://q/1/queue",
                "Action=SendMessage&MessageBody=x&MessageAttribute.1.Name=a"
            )
            .is_err(),
            "an attribute without a data type is refused, as SQS refuses it"
        );
    }

    #[test]
    fn local_refs_are_inlined_for_validation() {
        let doc = json!({"components": {"schemas": {"A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}}, "B": {"type": "integer"}}}});
        let schema = inline_refs(&json!({"$ref": "#/components/schemas/A"}), &doc, 0);
        assert_eq!(schema["properties"]["b"]["type"], "integer");
    }
}
