//! REST APIs (`AWS::Serverless::Api` / `AWS::ApiGateway::RestApi` defined by an OpenAPI body)
//! served at their stage path, as API Gateway serves them.
//!
//! From the OpenAPI document alone ([`openapi`]): routes, `AWS_IAM` (SigV4) authorization, Lambda
//! authorizers (`TOKEN` and `REQUEST`), request validators with their JSON-schema models
//! ([`validate`]), and non-proxy `aws` integrations with their request and response mapping
//! templates ([`integration`], [`services`]). The core decides routing, the authorizer cache and
//! every error answer. The stage's `AccessLogSetting` gets a line per request
//! ([`crate::apigw::access_log`]).

mod integration;
pub mod openapi;
pub mod policy;
pub mod services;
pub mod validate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow};
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequest, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayCustomAuthorizerRequestTypeRequestContext,
    ApiGatewayCustomAuthorizerRequestTypeRequestIdentity,
};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::apigw::access_log::{self, AccessLog};
use crate::apigw::error::{ApiError, Flavor};
use crate::apigw::helper::Helper;
use crate::apigw::props::{self, opt_scalar, scalar_map};
use crate::apigw::request::Request;
use crate::apigw::routing::{Pattern, Table};
use crate::event_queue::EventQueue;
use crate::functions::Function;
use crate::sigv4::{SignedRequest, SigningKey};
use crate::stack::Stack;
use openapi::{Auth, Operation, RestAuthorizer};

/// One REST API, ready to serve.
#[derive(Debug)]
pub struct RestApi {
    /// Stack path and logical id.
    pub id: String,
    /// The API id.
    pub api_id: String,
    /// The stage (served as the first path segment).
    pub stage: String,
    stage_variables: BTreeMap<String, String>,
    routes: Table<Operation>,
    region: String,
    functions: Vec<Arc<Function>>,
    invoker: Arc<EventQueue>,
    helper: Arc<Helper>,
    signing: SigningKey,
    services: services::Services,
    access_log: Option<AccessLog>,
}

/// Everything REST APIs share.
#[derive(Debug, Clone)]
pub struct Shared {
    /// Runs asynchronous invokes.
    pub invoker: Arc<EventQueue>,
    /// Renders templates.
    pub helper: Arc<Helper>,
    /// The published signing credentials.
    pub signing: SigningKey,
    /// moto's endpoint, for service integrations.
    pub endpoint: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiProps {
    #[serde(default)]
    definition_body: Option<Value>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default, deserialize_with = "opt_scalar")]
    stage_name: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    access_log_setting: Option<access_log::Settings>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// An `AWS::ApiGateway::Stage`: where a plain `AWS::ApiGateway::RestApi` keeps its access log.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StageProps {
    #[serde(default, deserialize_with = "opt_scalar")]
    rest_api_id: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    stage_name: Option<String>,
    #[serde(default)]
    access_log_setting: Option<access_log::Settings>,
}

/// The access log settings of the `AWS::ApiGateway::Stage` named `stage` of the API `api_id`.
fn stage_access_log(
    stack: &Stack,
    api_id: &str,
    stage: &str,
) -> Result<Option<access_log::Settings>> {
    for (logical, resource) in stack.template.resources_of("AWS::ApiGateway::Stage") {
        let resolved = stack
            .scope
            .resolve(resource.get("Properties").unwrap_or(&Value::Null))
            .map_err(|e| anyhow!("{logical}: {e}"))?;
        let props: StageProps = props::read(logical, &resolved)?;
        if props.rest_api_id.as_deref() == Some(api_id)
            && props.stage_name.as_deref() == Some(stage)
        {
            return Ok(props.access_log_setting);
        }
    }
    Ok(None)
}

/// Properties with no local effect: logging, tracing, throttling, endpoint type, naming.
const NOT_EMULATED: &[&str] = &[
    "MethodSettings",
    "TracingEnabled",
    "EndpointConfiguration",
    "OpenApiVersion",
    "Name",
    "Description",
    "Tags",
    "CacheClusterEnabled",
    "CacheClusterSize",
];

/// Reads the REST APIs of `stack`.
pub fn load(stack: &Stack, functions: &[Arc<Function>], shared: &Shared) -> Result<Vec<RestApi>> {
    let mut apis = Vec::new();
    for kind in ["AWS::Serverless::Api", "AWS::ApiGateway::RestApi"] {
        for (logical, resource) in stack.template.resources_of(kind) {
            let resolved = stack
                .scope
                .resolve(resource.get("Properties").unwrap_or(&Value::Null))
                .map_err(|e| anyhow!("{logical}: {e}"))?;
            let api: ApiProps = props::read(logical, &resolved)?;
            props::report(logical, &api.rest, NOT_EMULATED);
            let document = api.definition_body.or(api.body).ok_or_else(|| {
                anyhow!("{logical}: only APIs defined by an OpenAPI body are served locally")
            })?;
            let operations =
                openapi::operations(&document, functions).map_err(|e| anyhow!("{logical}: {e}"))?;
            let table = operations
                .into_iter()
                .map(|op| Ok((Pattern::new(&op.method, &op.path)?, op)))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| anyhow!("{logical}: {e}"))?;
            let id = crate::apigw::qualified(stack, logical);
            let api_id = stack
                .scope
                .resources
                .get(logical)
                .map(|p| p.reference.clone())
                .unwrap_or_default();
            let stage = api.stage_name.unwrap_or_else(|| "prod".into());
            let settings = match api.access_log_setting {
                Some(settings) => Some(settings),
                None => stage_access_log(stack, &api_id, &stage)?,
            };
            let access_log = settings
                .map(|s| AccessLog::new(&id, Flavor::Rest, &api_id, &stage, &s))
                .transpose()?;
            apis.push(RestApi {
                id,
                api_id,
                stage,
                stage_variables: api.variables,
                routes: Table::new(Flavor::Rest, table),
                region: stack.scope.region.clone(),
                functions: functions.to_vec(),
                invoker: shared.invoker.clone(),
                helper: shared.helper.clone(),
                signing: shared.signing.clone(),
                services: services::Services {
                    endpoint: shared.endpoint.clone(),
                    region: stack.scope.region.clone(),
                    http: reqwest::Client::new(),
                },
                access_log,
            });
        }
    }
    Ok(apis)
}

/// Repeated headers as REST events carry them: `headers` the last value of each, and
/// `multiValueHeaders` every value (hotsock/voker's captures of real events).
fn rest_headers(request: &Request) -> (HeaderMap, HeaderMap) {
    let mut last = HeaderMap::new();
    let mut all = HeaderMap::new();
    for (name, value) in &request.headers {
        let text = String::from_utf8_lossy(value.as_bytes());
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_str(&text),
        ) {
            last.insert(n.clone(), v.clone());
            all.append(n, v);
        }
    }
    (last, all)
}

impl RestApi {
    /// The API as an axum router (every path, every method).
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().fallback(handle).with_state(self)
    }

    /// The log group of the stage's access log, if it has one.
    pub fn access_log_group(&self) -> Option<&str> {
        self.access_log.as_ref().map(AccessLog::group)
    }

    /// How callers authenticate: `AWS_IAM`, `CUSTOM` (a Lambda authorizer) or `NONE`.
    pub fn auth_kind(&self) -> &'static str {
        if self.routes.iter().any(|r| matches!(r.auth, Auth::Sigv4)) {
            "AWS_IAM"
        } else if self
            .routes
            .iter()
            .any(|r| matches!(r.auth, Auth::Lambda(_)))
        {
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

    fn method_arn(&self, request: &Request) -> String {
        format!(
            "arn:aws:execute-api:{}:{}:{}/{}/{}{}",
            self.region,
            crate::ACCOUNT_ID,
            self.api_id,
            self.stage,
            request.method,
            request.path
        )
    }

    /// The event a Lambda authorizer receives for `request`.
    fn authorizer_event(
        &self,
        authorizer: &RestAuthorizer,
        operation: &Operation,
        request: &Request,
        identity: &[String],
    ) -> Value {
        let method_arn = self.method_arn(request);
        if authorizer.token {
            let mut event = ApiGatewayCustomAuthorizerRequest::default();
            event.type_ = Some("TOKEN".into());
            event.authorization_token = identity.first().cloned();
            event.method_arn = Some(method_arn);
            return serde_json::to_value(event).unwrap_or_default();
        }
        let mut identity = ApiGatewayCustomAuthorizerRequestTypeRequestIdentity::default();
        identity.source_ip = Some(request.source_ip.clone());
        let mut context = ApiGatewayCustomAuthorizerRequestTypeRequestContext::default();
        context.path = Some(format!("/{}{}", self.stage, request.path));
        context.account_id = Some(crate::ACCOUNT_ID.into());
        context.stage = Some(self.stage.clone());
        context.request_id = Some(request.id.clone());
        context.identity = Some(identity);
        context.resource_path = Some(operation.path.clone());
        context.http_method = Some(request.method.clone());
        context.apiid = Some(self.api_id.clone());
        let (headers, multi) = rest_headers(request);
        let mut event = ApiGatewayCustomAuthorizerRequestTypeRequest::default();
        event.type_ = Some("REQUEST".into());
        event.method_arn = Some(method_arn);
        event.resource = Some(operation.path.clone());
        event.path = Some(format!("/{}{}", self.stage, request.path));
        event.http_method = Some(request.method.clone());
        event.headers = headers;
        event.multi_value_headers = multi;
        event.path_parameters = request.path_params.clone().into_iter().collect();
        event.stage_variables = self.stage_variables.clone().into_iter().collect();
        event.request_context = context;
        let mut value = serde_json::to_value(event).unwrap_or_default();
        // Query parameters as REST events carry them: the last value, and every value.
        let mut last = serde_json::Map::new();
        let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in crate::apigw::request::query_pairs(&request.query) {
            last.insert(k.clone(), json!(v));
            all.entry(k).or_default().push(v);
        }
        value["queryStringParameters"] = Value::Object(last);
        value["multiValueQueryStringParameters"] = json!(all);
        value
    }

    /// Runs the route's Lambda authorizer (or its cached policy) and evaluates the policy.
    async fn authorize(
        &self,
        authorizer: &RestAuthorizer,
        operation: &Operation,
        request: &Request,
    ) -> Result<(), ApiError> {
        if let Some(expression) = &authorizer.validation {
            let identity = authorizer.inner.identity(request)?;
            if !identity.iter().all(|token| expression.is_match(token)) {
                return Err(ApiError::Unauthorized);
            }
        }
        let policy = authorizer
            .inner
            .decide(
                request,
                |identity| self.authorizer_event(authorizer, operation, request, identity),
                |answer| {
                    answer
                        .get("policyDocument")
                        .is_some()
                        .then(|| answer.clone())
                },
            )
            .await?;
        note_principal(&policy);
        // A cached policy is evaluated again for each method, as API Gateway evaluates it.
        policy::allows(&policy, &self.method_arn(request))
    }

    /// `$stageVariables`: the stage's `Variables`.
    fn stage_variables_json(&self) -> Value {
        json!(self.stage_variables)
    }

    /// `$input.params()`: path parameters (as sent), query parameters, headers.
    fn params(&self, request: &Request) -> Value {
        json!({
            "path": request.path_params,
            "querystring": request.query_params(),
            "header": request.joined_headers(),
        })
    }

    /// `$context` for mapping templates.
    fn context(&self, request: &Request, resource_path: &str) -> Value {
        let access_key = access_key_of(request).unwrap_or_default();
        json!({
            "requestId": request.id,
            "extendedRequestId": request.id,
            "apiId": self.api_id,
            "stage": self.stage,
            "httpMethod": request.method.as_str(),
            "resourcePath": resource_path,
            "path": format!("/{}{}", self.stage, request.path),
            "domainName": request.host(),
            "requestTimeEpoch": request.epoch_millis(),
            "accountId": crate::ACCOUNT_ID,
            "identity": {
                "sourceIp": request.source_ip,
                "accessKey": access_key,
                "caller": access_key,
                "user": access_key,
                "userAgent": request.user_agent(),
            },
        })
    }

    async fn serve_request(
        &self,
        operation: &Operation,
        request: &Request,
        uri_path: &str,
    ) -> Result<Response, ApiError> {
        match &operation.auth {
            Auth::None => {}
            Auth::Sigv4 => {
                let signed = SignedRequest {
                    method: &request.method,
                    path: uri_path,
                    query: &request.query,
                    headers: &request.headers,
                    body: &request.body,
                };
                if let Err(refusal) = self.signing.verify(&signed, &self.region) {
                    tracing::info!(api = %self.id, route = %operation.path, refusal = ?refusal, "request signature refused");
                    return Err(if matches!(refusal, crate::sigv4::Refusal::Missing) {
                        ApiError::MissingAuthenticationToken
                    } else {
                        ApiError::InvalidSignature(refusal.message())
                    });
                }
                access_log::note(|facts| facts.caller = access_key_of(request));
            }
            Auth::Lambda(authorizer) => self.authorize(authorizer, operation, request).await?,
        }
        operation.validation.check(request)?;
        self.integrate(operation, request).await
    }
}

/// The access key id a SigV4 `Authorization` header names (`Credential=<id>/...`).
fn access_key_of(request: &Request) -> Option<String> {
    request.header("authorization").and_then(|a| {
        a.split("Credential=")
            .nth(1)
            .and_then(|c| c.split('/').next())
            .map(str::to_owned)
    })
}

/// Notes a Lambda authorizer's `principalId` and `context` (values as text, as
/// `$context.authorizer.<key>` gives them) for the access log.
fn note_principal(policy: &Value) {
    access_log::note(|facts| {
        facts.principal_id = policy
            .get("principalId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        facts.authorizer_context = policy
            .get("context")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
    });
}

async fn handle(State(api): State<Arc<RestApi>>, raw: axum::extract::Request) -> Response {
    access_log::logged(api.access_log.as_ref(), raw, |raw| answer(&api, raw)).await
}

async fn answer(api: &RestApi, raw: axum::extract::Request) -> Response {
    let started = Instant::now();
    let uri_path = raw.uri().path().to_owned();
    let prefix = format!("/{}", api.stage);
    let mut request = match crate::apigw::accept(Flavor::Rest, &prefix, raw).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    access_log::note(|facts| facts.request_id = Some(request.id.clone()));
    let Some((operation, params)) = api.routes.find(&request.method, &request.path) else {
        return ApiError::NoRoute.response(Flavor::Rest, &request.id);
    };
    access_log::note(|facts| facts.resource_path = Some(operation.path.clone()));
    request.path_params = params;
    let response = api
        .serve_request(operation, &request, &uri_path)
        .await
        .unwrap_or_else(|error| error.response(Flavor::Rest, &request.id));
    tracing::info!(api = %api.id, method = %request.method, path = %operation.path, status = response.status().as_u16(), ms = started.elapsed().as_millis() as u64, request_id = %request.id, "request");
    response
}
