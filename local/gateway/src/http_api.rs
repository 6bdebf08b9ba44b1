//! HTTP APIs (`AWS::ApiGatewayV2::*`, protocol HTTP) served on 127.0.0.1 from their templates.
//!
//! Routes come from `AWS::ApiGatewayV2::Route` (`RouteKey`, `Target`, `AuthorizationType`,
//! `AuthorizerId`), authorizers from `AWS::ApiGatewayV2::Authorizer` (identity sources, result TTL,
//! simple responses), integrations from `AWS::ApiGatewayV2::Integration` (first-class
//! `SQS-SendMessage` with its request parameters). Behaviour follows API Gateway: a missing
//! identity source is 401 without calling the authorizer, `isAuthorized: false` is 403, an
//! authorizer failure is 500, and decisions are cached per identity-source value for the TTL.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::cfn::scalar_to_string;
use crate::functions::Function;
use crate::stack::{Clients, Stack};

/// API Gateway's payload limit for HTTP APIs (10 MB).
pub const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

#[derive(Debug)]
struct Route {
    key: String,
    method: String,
    segments: Option<Vec<Segment>>, // None: the $default route
    authorizer: Option<Arc<Authorizer>>,
    integration: Integration,
}

#[derive(Debug)]
struct Authorizer {
    id: String,
    function: Arc<Function>,
    identity_headers: Vec<String>,
    ttl: Duration,
}

#[derive(Debug, Clone)]
enum Integration {
    SqsSendMessage {
        parameters: BTreeMap<String, String>,
    },
    KinesisPutRecord {
        parameters: BTreeMap<String, String>,
    },
}

/// One HTTP API, ready to serve.
#[derive(Debug)]
pub struct HttpApi {
    /// Stack path and logical id.
    pub id: String,
    /// The API id (physical).
    pub api_id: String,
    /// Stage path prefix (`""` for `$default`).
    pub stage_prefix: String,
    stage_name: String,
    routes: Vec<Route>,
    region: String,
    clients: Clients,
    cache: Mutex<HashMap<(String, String), (Instant, bool)>>,
}

/// Reads the HTTP APIs of `stack`.
pub fn load(stack: &Stack, functions: &[Arc<Function>], clients: &Clients) -> Result<Vec<HttpApi>> {
    let resolved = |kind: &str| -> Result<Vec<(String, String, Value)>> {
        stack
            .template
            .resources_of(kind)
            .map(|(logical, r)| {
                let props = stack
                    .scope
                    .resolve(r.get("Properties").unwrap_or(&Value::Null))
                    .map_err(|e| anyhow!("{logical}: {e}"))?;
                let physical = stack
                    .scope
                    .resources
                    .get(logical)
                    .map(|p| p.reference.clone())
                    .unwrap_or_default();
                Ok((logical.clone(), physical, props))
            })
            .collect()
    };
    let authorizers = resolved("AWS::ApiGatewayV2::Authorizer")?;
    let integrations = resolved("AWS::ApiGatewayV2::Integration")?;
    let routes = resolved("AWS::ApiGatewayV2::Route")?;
    let stages = resolved("AWS::ApiGatewayV2::Stage")?;
    let mut apis = Vec::new();
    for (logical, api_id, props) in resolved("AWS::ApiGatewayV2::Api")? {
        if props.get("ProtocolType").and_then(Value::as_str) != Some("HTTP") {
            continue;
        }
        let id = qualified(stack, &logical);
        let belongs =
            |p: &Value| p.get("ApiId").map(scalar_to_string).as_deref() == Some(api_id.as_str());
        let stage_name = stages
            .iter()
            .find(|(_, _, p)| belongs(p))
            .and_then(|(_, _, p)| p.get("StageName").map(scalar_to_string))
            .unwrap_or_else(|| "$default".into());
        let stage_prefix = if stage_name == "$default" {
            String::new()
        } else {
            format!("/{stage_name}")
        };
        let mut api_routes = Vec::new();
        for (route_logical, _, route) in routes.iter().filter(|(_, _, p)| belongs(p)) {
            let key = route
                .get("RouteKey")
                .map(scalar_to_string)
                .unwrap_or_default();
            let target = route
                .get("Target")
                .map(scalar_to_string)
                .unwrap_or_default();
            let integration_id = target.strip_prefix("integrations/").ok_or_else(|| {
                anyhow!("{route_logical}: Target {target:?} is not integrations/<id>")
            })?;
            let (_, _, integration) = integrations
                .iter()
                .find(|(_, physical, _)| physical == integration_id)
                .ok_or_else(|| anyhow!("{route_logical}: no integration {integration_id}"))?;
            let integration = parse_integration(route_logical, integration)?;
            let authorizer = match route
                .get("AuthorizationType")
                .map(scalar_to_string)
                .as_deref()
            {
                None | Some("NONE") => None,
                Some("CUSTOM") => {
                    let wanted = route
                        .get("AuthorizerId")
                        .map(scalar_to_string)
                        .unwrap_or_default();
                    let (auth_logical, physical, auth) = authorizers
                        .iter()
                        .find(|(_, physical, _)| *physical == wanted)
                        .ok_or_else(|| anyhow!("{route_logical}: no authorizer {wanted}"))?;
                    Some(Arc::new(parse_authorizer(
                        auth_logical,
                        physical,
                        auth,
                        functions,
                    )?))
                }
                Some(other) => {
                    bail!("{route_logical}: AuthorizationType {other} is not served locally")
                }
            };
            let (method, segments) = parse_route_key(&key)?;
            api_routes.push(Route {
                key,
                method,
                segments,
                authorizer,
                integration,
            });
        }
        // Most specific first: more literal segments win, greedy paths and $default come last.
        api_routes.sort_by_key(|r| match &r.segments {
            None => (2, 0),
            Some(s) if s.iter().any(|x| matches!(x, Segment::Greedy(_))) => {
                (1, usize::MAX - s.len())
            }
            Some(s) => (
                0,
                s.iter()
                    .filter(|x| !matches!(x, Segment::Literal(_)))
                    .count(),
            ),
        });
        apis.push(HttpApi {
            id,
            api_id: api_id.clone(),
            stage_prefix,
            stage_name,
            routes: api_routes,
            region: stack.scope.region.clone(),
            clients: clients.clone(),
            cache: Mutex::new(HashMap::new()),
        });
    }
    Ok(apis)
}

fn qualified(stack: &Stack, logical: &str) -> String {
    if stack.path.is_empty() {
        logical.to_owned()
    } else {
        format!("{}.{logical}", stack.path)
    }
}

fn parse_route_key(key: &str) -> Result<(String, Option<Vec<Segment>>)> {
    if key == "$default" {
        return Ok(("ANY".into(), None));
    }
    let (method, path) = key
        .split_once(' ')
        .ok_or_else(|| anyhow!("RouteKey {key:?} is not 'METHOD /path'"))?;
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(greedy) => Segment::Greedy(greedy.to_owned()),
                    None => Segment::Param(name.to_owned()),
                },
                None => Segment::Literal(s.to_owned()),
            },
        )
        .collect();
    Ok((method.to_ascii_uppercase(), Some(segments)))
}

fn parse_integration(route: &str, props: &Value) -> Result<Integration> {
    let kind = props
        .get("IntegrationType")
        .map(scalar_to_string)
        .unwrap_or_default();
    let subtype = props
        .get("IntegrationSubtype")
        .map(scalar_to_string)
        .unwrap_or_default();
    let parameters: BTreeMap<String, String> = props
        .get("RequestParameters")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), scalar_to_string(v)))
        .collect();
    match (kind.as_str(), subtype.as_str()) {
        ("AWS_PROXY", "SQS-SendMessage") => {
            for required in ["QueueUrl", "MessageBody"] {
                if !parameters.contains_key(required) {
                    bail!("{route}: SQS-SendMessage needs request parameter {required}");
                }
            }
            Ok(Integration::SqsSendMessage { parameters })
        }
        ("AWS_PROXY", "Kinesis-PutRecord") => {
            for required in ["StreamName", "Data", "PartitionKey"] {
                if !parameters.contains_key(required) {
                    bail!("{route}: Kinesis-PutRecord needs request parameter {required}");
                }
            }
            Ok(Integration::KinesisPutRecord { parameters })
        }
        _ => bail!("{route}: integration {kind} {subtype} is not served locally yet"),
    }
}

fn parse_authorizer(
    logical: &str,
    physical: &str,
    props: &Value,
    functions: &[Arc<Function>],
) -> Result<Authorizer> {
    let get = |k: &str| props.get(k).map(scalar_to_string);
    if get("AuthorizerType").as_deref() != Some("REQUEST") {
        bail!("{logical}: only REQUEST (Lambda) authorizers are served locally");
    }
    if get("AuthorizerPayloadFormatVersion").as_deref() != Some("2.0")
        || get("EnableSimpleResponses").as_deref() != Some("true")
    {
        bail!("{logical}: only payload format 2.0 with simple responses is served locally");
    }
    let uri = get("AuthorizerUri").unwrap_or_default();
    let function = functions
        .iter()
        .find(|f| !f.arn.is_empty() && uri.contains(&format!("/functions/{}/invocations", f.arn)))
        .cloned()
        .ok_or_else(|| anyhow!("{logical}: AuthorizerUri {uri} names no function of the stack"))?;
    let identity_headers = props
        .get("IdentitySource")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let s = scalar_to_string(s);
            s.strip_prefix("$request.header.")
                .map(str::to_ascii_lowercase)
                .ok_or_else(|| {
                    anyhow!("{logical}: identity source {s} is not served locally (headers only)")
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let ttl: u64 = get("AuthorizerResultTtlInSeconds")
        .unwrap_or_else(|| "0".into())
        .parse()
        .map_err(|_| anyhow!("{logical}: AuthorizerResultTtlInSeconds must be a number"))?;
    if ttl > 3600 {
        bail!("{logical}: AuthorizerResultTtlInSeconds must be at most 3600");
    }
    if ttl > 0 && identity_headers.is_empty() {
        bail!("{logical}: caching needs an identity source");
    }
    Ok(Authorizer {
        id: physical.to_owned(),
        function,
        identity_headers,
        ttl: Duration::from_secs(ttl),
    })
}

/// The parsed request, as integrations and authorizers see it.
struct Request {
    id: String,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
    path_params: BTreeMap<String, String>,
    source_ip: String,
    host: String,
}

fn message(status: StatusCode, text: &str, request_id: &str) -> Response {
    let mut response = (status, axum::Json(json!({ "message": text }))).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("apigw-requestid", v);
    }
    response
}

impl HttpApi {
    /// Serves the API on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: tokio::net::TcpListener) -> Result<()> {
        let app = axum::Router::new()
            .fallback(handle)
            .layer(axum::extract::DefaultBodyLimit::max(MAX_PAYLOAD))
            .with_state(self);
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await?;
        Ok(())
    }

    /// The route keys served (`POST /submit`, ...), most specific first.
    pub fn route_keys(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.key.clone()).collect()
    }

    fn find_route(
        &self,
        method: &Method,
        path: &str,
    ) -> Option<(&Route, BTreeMap<String, String>)> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes.iter().find_map(|route| {
            if route.method != "ANY" && route.method != method.as_str() {
                return None;
            }
            let Some(segments) = &route.segments else {
                return Some((route, BTreeMap::new()));
            };
            let mut params = BTreeMap::new();
            for (i, segment) in segments.iter().enumerate() {
                match segment {
                    Segment::Greedy(name) => {
                        if parts.len() <= i {
                            return None;
                        }
                        params.insert(name.clone(), parts[i..].join("/"));
                        return Some((route, params));
                    }
                    Segment::Literal(lit) => {
                        if parts.get(i) != Some(&lit.as_str()) {
                            return None;
                        }
                    }
                    Segment::Param(name) => {
                        params.insert(name.clone(), (*parts.get(i)?).to_owned());
                    }
                }
            }
            (parts.len() == segments.len()).then_some((route, params))
        })
    }

    /// Runs the route's authorizer (or its cached decision). `Err` carries the response to send.
    async fn authorize(&self, route: &Route, request: &Request) -> Result<(), Response> {
        let Some(authorizer) = &route.authorizer else {
            return Ok(());
        };
        let mut identity = Vec::new();
        for header in &authorizer.identity_headers {
            match request.headers.get(header).and_then(|v| v.to_str().ok()) {
                Some(v) if !v.trim().is_empty() => identity.push(v.to_owned()),
                // API Gateway answers 401 without calling the authorizer.
                _ => {
                    return Err(message(
                        StatusCode::UNAUTHORIZED,
                        "Unauthorized",
                        &request.id,
                    ));
                }
            }
        }
        let cache_key = (authorizer.id.clone(), identity.join("\u{1f}"));
        if !authorizer.ttl.is_zero() {
            let cache = self.cache.lock().await;
            if let Some((at, allowed)) = cache.get(&cache_key)
                && at.elapsed() < authorizer.ttl
            {
                return if *allowed {
                    Ok(())
                } else {
                    Err(message(StatusCode::FORBIDDEN, "Forbidden", &request.id))
                };
            }
        }
        let event = self.authorizer_event(route, request, &identity);
        let allowed = match authorizer.function.invoke(event).await {
            Ok(answer) => match answer.get("isAuthorized") {
                Some(Value::Bool(b)) => *b,
                _ => {
                    tracing::warn!(authorizer = %authorizer.function.id, "authorizer answer has no boolean isAuthorized");
                    return Err(message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                        &request.id,
                    ));
                }
            },
            Err(error) => {
                tracing::warn!(authorizer = %authorizer.function.id, error = %error, "authorizer failed");
                return Err(message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    &request.id,
                ));
            }
        };
        if !authorizer.ttl.is_zero() {
            self.cache
                .lock()
                .await
                .insert(cache_key, (Instant::now(), allowed));
        }
        if allowed {
            Ok(())
        } else {
            Err(message(StatusCode::FORBIDDEN, "Forbidden", &request.id))
        }
    }

    fn authorizer_event(&self, route: &Route, request: &Request, identity: &[String]) -> Value {
        let headers = crate::headers_json(&request.headers);
        let query = crate::query_json(&request.query);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": format!(
                "arn:aws:execute-api:{}:{}:{}/{}/{}{}",
                self.region, crate::ACCOUNT_ID, self.api_id, self.stage_name, request.method, request.path
            ),
            "identitySource": identity,
            "routeKey": route.key,
            "rawPath": request.path,
            "rawQueryString": request.query,
            "cookies": [],
            "headers": headers,
            "queryStringParameters": query,
            "pathParameters": request.path_params,
            "stageVariables": {},
            "requestContext": {
                "accountId": crate::ACCOUNT_ID,
                "apiId": self.api_id,
                "domainName": request.host,
                "domainPrefix": request.host.split('.').next().unwrap_or_default(),
                "http": {
                    "method": request.method.as_str(),
                    "path": request.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": request.source_ip,
                    "userAgent": request.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default()
                },
                "requestId": request.id,
                "routeKey": route.key,
                "stage": self.stage_name,
                "time": "",
                "timeEpoch": now.as_millis() as i64
            }
        })
    }

    /// Substitutes `$request.*` and `$context.requestId` in an integration parameter value.
    fn parameter(&self, template: &str, request: &Request) -> Option<String> {
        if template == "$request.body" {
            return Some(String::from_utf8_lossy(&request.body).into_owned());
        }
        if let Some(name) = template.strip_prefix("$request.header.") {
            return request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
        }
        if let Some(name) = template.strip_prefix("$request.path.") {
            return request.path_params.get(name).cloned();
        }
        if let Some(name) = template.strip_prefix("$request.querystring.") {
            return request
                .query
                .split('&')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned());
        }
        if let Some(pointer) = template.strip_prefix("$request.body.") {
            let body: Value = serde_json::from_slice(&request.body).ok()?;
            let pointer = format!("/{}", pointer.replace('.', "/"));
            return body.pointer(&pointer).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        if template == "$context.requestId" {
            return Some(request.id.clone());
        }
        Some(template.to_owned())
    }

    async fn integrate(&self, route: &Route, request: &Request) -> Response {
        match &route.integration {
            Integration::SqsSendMessage { parameters } => {
                let value = |name: &str| {
                    parameters
                        .get(name)
                        .and_then(|t| self.parameter(t, request))
                };
                let Some(queue_url) = value("QueueUrl") else {
                    return message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                        &request.id,
                    );
                };
                let body = value("MessageBody").unwrap_or_default();
                if body.is_empty() {
                    // SQS refuses an empty message body, so nothing is enqueued.
                    return message(
                        StatusCode::BAD_REQUEST,
                        "The request must contain the parameter MessageBody.",
                        &request.id,
                    );
                }
                if let Some(refused) = crate::sqs_checks::refusal(&body) {
                    // SQS answers 400; API Gateway passes a failed call on as its own 500.
                    return service_failure(
                        &format!(
                            "SQS refused the message: {}: {}",
                            refused.code, refused.message
                        ),
                        &request.id,
                    );
                }
                let mut send = self
                    .clients
                    .sqs
                    .send_message()
                    .queue_url(queue_url)
                    .message_body(body)
                    .set_message_group_id(value("MessageGroupId"))
                    .set_message_deduplication_id(value("MessageDeduplicationId"));
                if let Some(delay) = value("DelaySeconds").and_then(|d| d.parse().ok()) {
                    send = send.delay_seconds(delay);
                }
                match send.send().await {
                    Ok(out) => send_message_xml(&out, &request.id),
                    Err(error) => service_failure(
                        &aws_sdk_sqs::error::DisplayErrorContext(&error),
                        &request.id,
                    ),
                }
            }
            Integration::KinesisPutRecord { parameters } => {
                let value = |name: &str| {
                    parameters
                        .get(name)
                        .and_then(|t| self.parameter(t, request))
                };
                let (Some(stream), Some(key)) = (value("StreamName"), value("PartitionKey")) else {
                    return message(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Internal Server Error",
                        &request.id,
                    );
                };
                let data = value("Data").unwrap_or_default();
                let put = self
                    .clients
                    .kinesis
                    .put_record()
                    .stream_name(stream)
                    .partition_key(key)
                    .data(aws_sdk_kinesis::primitives::Blob::new(data.into_bytes()))
                    .set_explicit_hash_key(value("ExplicitHashKey"))
                    .set_sequence_number_for_ordering(value("SequenceNumberForOrdering"));
                match put.send().await {
                    Ok(out) => {
                        let mut body = json!({
                            "SequenceNumber": out.sequence_number(),
                            "ShardId": out.shard_id(),
                        });
                        // Present only when the stream is encrypted (moto never reports it).
                        if let Some(kind) = out.encryption_type() {
                            body["EncryptionType"] = json!(kind.as_str());
                        }
                        ok_json(body, &request.id)
                    }
                    Err(error) => service_failure(
                        &aws_sdk_kinesis::error::DisplayErrorContext(&error),
                        &request.id,
                    ),
                }
            }
        }
    }
}

/// `200` with the service's answer, as a first-class integration passes it through.
fn ok_json(body: Value, request_id: &str) -> Response {
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("apigw-requestid", v);
    }
    response
}

/// A service call that failed. API Gateway answers the client `500` whatever the service said
/// (a refusal of the message included); only a missing or empty request parameter is the
/// client's `400`, decided before the call (LocalStack's tests recorded against AWS). The cause
/// goes to the log, never to the client.
fn service_failure(detail: &dyn std::fmt::Display, request_id: &str) -> Response {
    tracing::warn!(error = %detail, "integration call failed");
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        request_id,
    )
}

/// SQS's own answer to `SendMessage`, which the `SQS-SendMessage` integration passes to the
/// client unchanged: the query API's XML (AWS's samples of this integration show it, seed 001
/// among them).
fn send_message_xml(
    out: &aws_sdk_sqs::operation::send_message::SendMessageOutput,
    request_id: &str,
) -> Response {
    let element = |name: &str, value: Option<&str>| {
        value
            .map(|v| format!("<{name}>{}</{name}>", xml_escape(v)))
            .unwrap_or_default()
    };
    let body = format!(
        "<?xml version=\"1.0\"?><SendMessageResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><SendMessageResult>{}{}{}{}</SendMessageResult><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></SendMessageResponse>",
        element("MessageId", out.message_id()),
        element("MD5OfMessageBody", out.md5_of_message_body()),
        element("MD5OfMessageAttributes", out.md5_of_message_attributes()),
        element("SequenceNumber", out.sequence_number()),
        uuid::Uuid::new_v4()
    );
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("apigw-requestid", v);
    }
    response
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn handle(
    State(api): State<Arc<HttpApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let request_id = crate::random_alnum(16);
    let path = uri.path();
    let Some(path) = path
        .strip_prefix(api.stage_prefix.as_str())
        .filter(|p| api.stage_prefix.is_empty() || p.is_empty() || p.starts_with('/'))
    else {
        return message(StatusCode::NOT_FOUND, "Not Found", &request_id);
    };
    let path = if path.is_empty() { "/" } else { path };
    let Some((route, path_params)) = api.find_route(&method, path) else {
        return message(StatusCode::NOT_FOUND, "Not Found", &request_id);
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request = Request {
        id: request_id,
        method: method.clone(),
        path: path.to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
        path_params,
        source_ip: peer.ip().to_string(),
        host,
    };
    let response = match api.authorize(route, &request).await {
        Ok(()) => api.integrate(route, &request).await,
        Err(denied) => denied,
    };
    tracing::info!(
        api = %api.id,
        route = %route.key,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        request_id = %request.id,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_keys_parse_into_segments() {
        let (method, segments) = parse_route_key("post /submit/{stream}/{rest+}").expect("parsed");
        assert_eq!(method, "POST");
        assert_eq!(
            segments.expect("segments"),
            vec![
                Segment::Literal("submit".into()),
                Segment::Param("stream".into()),
                Segment::Greedy("rest".into())
            ]
        );
        assert_eq!(parse_route_key("$default").expect("parsed").1, None);
        assert!(parse_route_key("/no-method").is_err());
    }
}
