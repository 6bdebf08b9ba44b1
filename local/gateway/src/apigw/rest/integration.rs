//! A REST route's non-proxy `aws` integration: the request template chosen by content type under
//! the passthrough behaviour, the call (a Lambda function, synchronous or `Event`, or a service
//! action on moto), the integration response selected by its pattern, and the response template.
//!
//! Passthrough, as API Gateway documents it (integration-passthrough-behaviors.html): a request
//! with no `Content-Type` is `application/json`; a content type with a template uses it; with no
//! template for it, `WHEN_NO_MATCH` passes the body through, `WHEN_NO_TEMPLATES` passes it only
//! when the integration has no template at all, and `NEVER` answers 415.
//!
//! Each call is noted for the access log (`$context.integration.status`, `.error`, `.latency`):
//! the status Lambda or the service answered (Lambda's own, 200 or 202, when a function fails:
//! its error message is the integration's error), and the error message a service's error body
//! names.

use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::apigw::access_log::{self, IntegrationFacts};
use crate::apigw::error::{ApiError, Flavor, stamp};
use crate::apigw::request::Request;
use crate::apigw::rest::RestApi;
use crate::apigw::rest::openapi::Operation;
use crate::functions::InvokeError;

/// What the integration answered, before response selection.
struct Outcome {
    status: u16,
    body: String,
    /// A Lambda function's error message (selection matches it instead of the status).
    error_message: Option<String>,
}

impl RestApi {
    /// Renders the request template, runs the integration, selects and renders the response.
    /// `Err(ApiError)` is an answer of API Gateway's; an `anyhow` failure inside is a 500, logged.
    pub(crate) async fn integrate(
        &self,
        operation: &Operation,
        request: &Request,
    ) -> Result<Response, ApiError> {
        let integration = &operation.integration;
        if !integration.kind.eq_ignore_ascii_case("aws") {
            tracing::error!(api = %self.id, kind = %integration.kind, "integration type not served locally");
            return Err(ApiError::Internal);
        }
        let params = self.params(request);
        let context = self.context(request, &operation.path);
        let templates = &integration.request_templates;
        let behaviour = integration
            .passthrough_behavior
            .as_deref()
            .unwrap_or("when_no_match")
            .to_ascii_lowercase();
        let request_body = match templates.get(&request.media_type()) {
            Some(template) => {
                self.helper
                    .render_in_stage(
                        template,
                        &request.body_text(),
                        &params,
                        &context,
                        &self.stage_variables_json(),
                    )
                    .await
                    .map_err(|e| self.failed(request, e))?
                    .output
            }
            None if behaviour == "never" => return Err(ApiError::UnsupportedMediaType),
            None if behaviour == "when_no_templates" && !templates.is_empty() => {
                return Err(ApiError::UnsupportedMediaType);
            }
            None => request.body_text(),
        };
        let outcome = self
            .call(integration, &request_body)
            .await
            .map_err(|e| self.failed(request, e))?;
        self.respond(operation, request, outcome, &params, &context)
            .await
            .map_err(|e| self.failed(request, e))
    }

    fn failed(&self, request: &Request, error: anyhow::Error) -> ApiError {
        tracing::error!(api = %self.id, request_id = %request.id, error = %format!("{error:#}"), "integration failed");
        ApiError::Internal
    }

    async fn call(
        &self,
        integration: &crate::apigw::rest::openapi::IntegrationSpec,
        body: &str,
    ) -> Result<Outcome> {
        let uri = integration.uri.clone().unwrap_or_default();
        let started = Instant::now();
        let done = |status: u16, body: String| {
            let error = (status >= 400).then(|| error_message(&body)).flatten();
            noted(started, Some(status), error);
            Outcome {
                status,
                body,
                error_message: None,
            }
        };
        if let Some(arn) = uri
            .split("/functions/")
            .nth(1)
            .and_then(|rest| rest.strip_suffix("/invocations"))
        {
            let payload: Value = serde_json::from_str(body).map_err(|e| {
                anyhow!("the request template did not produce JSON for the function: {e}")
            })?;
            let invocation_type = integration
                .request_parameters
                .get("integration.request.header.X-Amz-Invocation-Type")
                .map(|v| v.trim_matches('\''))
                .unwrap_or("RequestResponse");
            if invocation_type == "Event" {
                // An event not queued is not acknowledged: the error answers 500, never 202.
                self.invoker
                    .invoke(arn, payload)
                    .with_context(|| format!("the integration invokes {arn} asynchronously"))?;
                return Ok(done(202, String::new()));
            }
            let function = self
                .functions
                .iter()
                .find(|f| f.arn == arn)
                .ok_or_else(|| {
                    anyhow!("the integration invokes {arn}, which the stack does not hold")
                })?;
            return match function.invoke(payload).await {
                Ok(answer) => Ok(done(200, answer.to_string())),
                Err(InvokeError::Function(e)) => {
                    noted(started, Some(200), Some(e.message.clone()));
                    Ok(Outcome {
                        status: 200,
                        body: e.payload().to_string(),
                        error_message: Some(e.message),
                    })
                }
                // Lambda refused to run the function: the integration itself failed.
                Err(error @ InvokeError::Throttled { .. }) => {
                    noted(started, Some(429), Some(error.to_string()));
                    bail!("Lambda integration {} throttled: {error}", function.id)
                }
            };
        }
        if let Some(path) = uri.split(":sqs:path/").nth(1) {
            let wants_json = integration
                .request_parameters
                .get("integration.request.header.Accept")
                .is_some_and(|a| a.contains("application/json"));
            let (status, body) = self.services.sqs_path(path, body, wants_json).await?;
            return Ok(done(status, body));
        }
        if let Some((service, action)) = uri
            .split(':')
            .nth(4)
            .and_then(|service| Some((service, uri.split(":action/").nth(1)?)))
        {
            let (status, body) = self.services.call(service, action, body).await?;
            return Ok(done(status, body));
        }
        bail!("integration uri {uri} is not served locally yet")
    }
}

/// Notes the integration's call for the access log.
fn noted(started: Instant, status: Option<u16>, error: Option<String>) {
    access_log::note(|facts| {
        facts.integration = Some(IntegrationFacts {
            status,
            latency: started.elapsed(),
            error,
            request_id: None,
        });
    });
}

/// The message of a service's error body: JSON protocols' `message` (or `Message`), the query
/// API's `Error.Message`.
fn error_message(body: &str) -> Option<String> {
    let error: Value = serde_json::from_str(body).ok()?;
    ["/message", "/Message", "/Error/Message"]
        .iter()
        .find_map(|pointer| error.pointer(pointer).and_then(Value::as_str))
        .map(str::to_owned)
}

impl RestApi {
    /// Selects the integration response (`selectionPattern` against the Lambda error message, or
    /// the status code for AWS services; `default` otherwise) and renders it.
    async fn respond(
        &self,
        operation: &Operation,
        request: &Request,
        outcome: Outcome,
        params: &Value,
        context: &Value,
    ) -> Result<Response> {
        let responses = &operation.integration.responses;
        let subject = outcome
            .error_message
            .clone()
            .unwrap_or_else(|| outcome.status.to_string());
        let chosen = operation
            .selection
            .iter()
            .find(|(pattern, _)| pattern.is_match(&subject))
            .and_then(|(_, key)| responses.get(key))
            .or_else(|| responses.get("default"));
        let Some(chosen) = chosen else {
            bail!("no integration response matches {subject:?} and there is no default");
        };
        let mut status: u16 = chosen
            .status_code
            .as_deref()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200);
        let mut headers = Vec::new();
        let template = chosen
            .response_templates
            .get("application/json")
            .or_else(|| chosen.response_templates.values().next());
        let body = match template {
            Some(t) => {
                let rendered = self
                    .helper
                    .render_in_stage(
                        t,
                        &outcome.body,
                        params,
                        context,
                        &self.stage_variables_json(),
                    )
                    .await?;
                if let Some(s) = rendered.status {
                    status = s;
                }
                headers = rendered.headers;
                rendered.output
            }
            None => outcome.body,
        };
        // Static header mappings (`method.response.header.X: 'value'`).
        for (target, source) in &chosen.response_parameters {
            if let (Some(name), Some(value)) = (
                target.strip_prefix("method.response.header."),
                source.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')),
            ) {
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
        let mut response =
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        stamp(&mut response, Flavor::Rest, &request.id);
        for (name, value) in headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                response.headers_mut().insert(n, v);
            }
        }
        Ok(response)
    }
}
