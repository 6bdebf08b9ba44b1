//! HTTP APIs (`AWS::ApiGatewayV2::*`, protocol HTTP) served from their templates.
//!
//! Routes come from `AWS::ApiGatewayV2::Route` (`RouteKey`, `Target`, `AuthorizationType`,
//! `AuthorizerId`), authorizers from `AWS::ApiGatewayV2::Authorizer` (identity sources, result
//! TTL, payload 2.0 with simple responses), integrations from `AWS::ApiGatewayV2::Integration`
//! (first-class `SQS-SendMessage` and `Kinesis-PutRecord`, [`integration`]), access logs from
//! the stage's `AccessLogSettings` ([`crate::apigw::access_log`]). The core decides routing, the
//! authorizer's cache and every error answer.

mod attributes;
mod integration;
pub mod parameters;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use aws_lambda_events::apigw::{
    ApiGatewayV2CustomAuthorizerV2Request, ApiGatewayV2httpRequestContext,
    ApiGatewayV2httpRequestContextHttpDescription,
};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::apigw::access_log::{self, AccessLog};
use crate::apigw::authorizer::{self, Authorizer, IdentitySource};
use crate::apigw::error::{ApiError, Flavor};
use crate::apigw::props::{self, opt_scalar, scalar, scalar_map};
use crate::apigw::request::Request;
use crate::apigw::routing::{Pattern, Table};
use crate::functions::Function;
use crate::stack::{Clients, Stack};

pub use integration::Integration;

#[derive(Debug)]
struct Route {
    key: String,
    authorizer: Option<Arc<Authorizer<bool>>>,
    integration: Integration,
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
    /// The stage's name (`$default` or its own).
    pub stage_name: String,
    routes: Table<Route>,
    region: String,
    clients: Clients,
    access_log: Option<AccessLog>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiProps {
    #[serde(default, deserialize_with = "opt_scalar")]
    protocol_type: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StageProps {
    #[serde(deserialize_with = "scalar")]
    api_id: String,
    #[serde(deserialize_with = "scalar")]
    stage_name: String,
    #[serde(default)]
    access_log_settings: Option<access_log::Settings>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RouteProps {
    #[serde(deserialize_with = "scalar")]
    api_id: String,
    #[serde(deserialize_with = "scalar")]
    route_key: String,
    #[serde(default, deserialize_with = "opt_scalar")]
    target: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    authorization_type: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    authorizer_id: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AuthorizerProps {
    #[serde(deserialize_with = "scalar")]
    authorizer_type: String,
    #[serde(default, deserialize_with = "opt_scalar")]
    authorizer_uri: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    authorizer_payload_format_version: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    enable_simple_responses: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    authorizer_result_ttl_in_seconds: Option<String>,
    #[serde(default)]
    identity_source: Vec<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct IntegrationProps {
    #[serde(deserialize_with = "scalar")]
    integration_type: String,
    #[serde(default, deserialize_with = "opt_scalar")]
    integration_subtype: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    request_parameters: BTreeMap<String, String>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// A resource's logical id, physical id and resolved properties.
type Resource = (String, String, Value);

fn resources(stack: &Stack, kind: &str) -> Result<Vec<Resource>> {
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
}

/// Reads the HTTP APIs of `stack`.
pub fn load(stack: &Stack, functions: &[Arc<Function>], clients: &Clients) -> Result<Vec<HttpApi>> {
    let authorizers = resources(stack, "AWS::ApiGatewayV2::Authorizer")?;
    let integrations = resources(stack, "AWS::ApiGatewayV2::Integration")?;
    let routes = resources(stack, "AWS::ApiGatewayV2::Route")?;
    let stages: Vec<StageProps> = resources(stack, "AWS::ApiGatewayV2::Stage")?
        .iter()
        .map(|(logical, _, p)| {
            let stage: StageProps = props::read(logical, p)?;
            props::report(
                logical,
                &stage.rest,
                &["AutoDeploy", "DefaultRouteSettings", "Description", "Tags"],
            );
            Ok(stage)
        })
        .collect::<Result<_>>()?;
    let mut apis = Vec::new();
    for (logical, api_id, p) in resources(stack, "AWS::ApiGatewayV2::Api")? {
        let api: ApiProps = props::read(&logical, &p)?;
        if api.protocol_type.as_deref() != Some("HTTP") {
            continue;
        }
        props::report(
            &logical,
            &api.rest,
            &["Name", "Description", "Tags", "CorsConfiguration"],
        );
        let stage = stages.iter().find(|s| s.api_id == api_id);
        let stage_name = stage
            .map(|s| s.stage_name.clone())
            .unwrap_or_else(|| "$default".into());
        let id = crate::apigw::qualified(stack, &logical);
        let access_log = stage
            .and_then(|s| s.access_log_settings.as_ref())
            .map(|settings| AccessLog::new(&id, Flavor::Http, &api_id, &stage_name, settings))
            .transpose()?;
        let stage_prefix = if stage_name == "$default" {
            String::new()
        } else {
            format!("/{stage_name}")
        };
        let mut table = Vec::new();
        let mut built: BTreeMap<String, Arc<Authorizer<bool>>> = BTreeMap::new();
        for (route_logical, _, p) in &routes {
            let route: RouteProps = props::read(route_logical, p)?;
            if route.api_id != api_id {
                continue;
            }
            props::report(route_logical, &route.rest, &["OperationName"]);
            let target = route.target.unwrap_or_default();
            let integration_id = target.strip_prefix("integrations/").ok_or_else(|| {
                anyhow!("{route_logical}: Target {target:?} is not integrations/<id>")
            })?;
            let (integration_logical, _, p) = integrations
                .iter()
                .find(|(_, physical, _)| physical == integration_id)
                .ok_or_else(|| anyhow!("{route_logical}: no integration {integration_id}"))?;
            let integration_props: IntegrationProps = props::read(integration_logical, p)?;
            props::report(
                integration_logical,
                &integration_props.rest,
                &[
                    "ApiId",
                    "CredentialsArn",
                    "PayloadFormatVersion",
                    "TimeoutInMillis",
                    "Description",
                ],
            );
            let integration = Integration::new(
                route_logical,
                &integration_props.integration_type,
                integration_props
                    .integration_subtype
                    .as_deref()
                    .unwrap_or_default(),
                integration_props.request_parameters,
            )?;
            let authorizer = match route.authorization_type.as_deref() {
                None | Some("NONE") => None,
                Some("CUSTOM") => {
                    let wanted = route.authorizer_id.unwrap_or_default();
                    let found = match built.get(&wanted) {
                        Some(a) => a.clone(),
                        None => {
                            let (auth_logical, _, p) = authorizers
                                .iter()
                                .find(|(_, physical, _)| *physical == wanted)
                                .ok_or_else(|| {
                                    anyhow!("{route_logical}: no authorizer {wanted}")
                                })?;
                            let a = Arc::new(read_authorizer(auth_logical, &wanted, p, functions)?);
                            built.insert(wanted, a.clone());
                            a
                        }
                    };
                    Some(found)
                }
                // JWT and AWS_IAM are refused at start-up: a route the gateway cannot
                // authorize is never served unauthenticated.
                Some(other) => {
                    bail!("{route_logical}: AuthorizationType {other} is not served locally")
                }
            };
            table.push((
                Pattern::from_route_key(&route.route_key)
                    .map_err(|e| anyhow!("{route_logical}: {e}"))?,
                Route {
                    key: route.route_key,
                    authorizer,
                    integration,
                },
            ));
        }
        apis.push(HttpApi {
            id,
            api_id,
            stage_prefix,
            stage_name,
            routes: Table::new(Flavor::Http, table),
            region: stack.scope.region.clone(),
            clients: clients.clone(),
            access_log,
        });
    }
    Ok(apis)
}

fn read_authorizer(
    logical: &str,
    physical: &str,
    p: &Value,
    functions: &[Arc<Function>],
) -> Result<Authorizer<bool>> {
    let a: AuthorizerProps = props::read(logical, p)?;
    props::report(
        logical,
        &a.rest,
        &["ApiId", "Name", "AuthorizerCredentialsArn"],
    );
    if a.authorizer_type != "REQUEST" {
        bail!("{logical}: only REQUEST (Lambda) authorizers are served locally");
    }
    if a.authorizer_payload_format_version.as_deref() != Some("2.0")
        || a.enable_simple_responses.as_deref() != Some("true")
    {
        bail!("{logical}: only payload format 2.0 with simple responses is served locally");
    }
    let uri = a.authorizer_uri.unwrap_or_default();
    let function = authorizer::function_of(&uri, functions)
        .ok_or_else(|| anyhow!("{logical}: AuthorizerUri {uri} names no function of the stack"))?;
    let sources = a
        .identity_source
        .iter()
        .map(|s| IdentitySource::http(s).map_err(|e| anyhow!("{logical}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let ttl = authorizer::ttl(a.authorizer_result_ttl_in_seconds.as_deref(), 0)
        .map_err(|e| anyhow!("{logical}: {e}"))?;
    if !ttl.is_zero() && sources.is_empty() {
        bail!("{logical}: caching needs an identity source");
    }
    Ok(Authorizer::new(physical.to_owned(), function, sources, ttl))
}

/// A header map holding `joined` (one value per name), for events.
pub(crate) fn header_map(joined: &BTreeMap<String, String>) -> HeaderMap {
    joined
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            ))
        })
        .collect()
}

impl HttpApi {
    /// The API as an axum router (every path, every method).
    pub fn router(self: Arc<Self>) -> axum::Router {
        axum::Router::new().fallback(handle).with_state(self)
    }

    /// The log group of the stage's access log, if it has one.
    pub fn access_log_group(&self) -> Option<&str> {
        self.access_log.as_ref().map(AccessLog::group)
    }

    /// The route keys served (`POST /submit`, ...), most specific first.
    pub fn route_keys(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.key.clone()).collect()
    }

    /// The payload 2.0 authorizer event for `request` on `route`.
    fn authorizer_event(&self, route: &Route, request: &Request, identity: &[String]) -> Value {
        let host = request.host();
        let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
        http.method = request.method.clone();
        http.path = Some(request.path.clone());
        http.protocol = Some("HTTP/1.1".into());
        http.source_ip = Some(request.source_ip.clone());
        http.user_agent = Some(request.user_agent());
        let mut context = ApiGatewayV2httpRequestContext::default();
        context.route_key = Some(route.key.clone());
        context.account_id = Some(crate::ACCOUNT_ID.into());
        context.stage = Some(self.stage_name.clone());
        context.request_id = Some(request.id.clone());
        context.apiid = Some(self.api_id.clone());
        context.domain_prefix = Some(host.split('.').next().unwrap_or_default().to_owned());
        context.domain_name = Some(host);
        context.time_epoch = request.epoch_millis();
        context.http = http;
        let mut event = ApiGatewayV2CustomAuthorizerV2Request::default();
        event.version = Some("2.0".into());
        event.type_ = Some("REQUEST".into());
        event.route_arn = Some(format!(
            "arn:aws:execute-api:{}:{}:{}/{}/{}{}",
            self.region,
            crate::ACCOUNT_ID,
            self.api_id,
            self.stage_name,
            request.method,
            request.path
        ));
        event.identity_source = Some(identity.to_vec());
        event.route_key = Some(route.key.clone());
        event.raw_path = Some(request.path.clone());
        event.raw_query_string = Some(request.query.clone());
        event.headers = header_map(&request.joined_headers());
        event.query_string_parameters = request.query_params().into_iter().collect();
        event.path_parameters = request.path_params.clone().into_iter().collect();
        event.request_context = context;
        serde_json::to_value(event).unwrap_or_default()
    }
}

async fn handle(State(api): State<Arc<HttpApi>>, raw: axum::extract::Request) -> Response {
    access_log::logged(api.access_log.as_ref(), raw, |raw| answer(&api, raw)).await
}

async fn answer(api: &HttpApi, raw: axum::extract::Request) -> Response {
    let started = Instant::now();
    let mut request = match crate::apigw::accept(Flavor::Http, &api.stage_prefix, raw).await {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    access_log::note(|facts| facts.request_id = Some(request.id.clone()));
    let Some((route, params)) = api.routes.find(&request.method, &request.path) else {
        return ApiError::NoRoute.response(Flavor::Http, &request.id);
    };
    access_log::note(|facts| facts.route_key = Some(route.key.clone()));
    request.path_params = params;
    let decision = match &route.authorizer {
        None => Ok(()),
        Some(authorizer) => authorizer
            .decide(
                &request,
                |identity| api.authorizer_event(route, &request, identity),
                |answer| answer.get("isAuthorized").and_then(Value::as_bool),
            )
            .await
            .and_then(|allowed| {
                if allowed {
                    Ok(())
                } else {
                    Err(ApiError::Forbidden)
                }
            }),
    };
    let response = match decision {
        Ok(()) => route
            .integration
            .call(&api.clients, &request)
            .await
            .unwrap_or_else(|error| error.response(Flavor::Http, &request.id)),
        Err(refused) => refused.response(Flavor::Http, &request.id),
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
