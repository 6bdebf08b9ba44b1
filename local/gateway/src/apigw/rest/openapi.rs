//! Reading a REST API's OpenAPI document (Swagger 2 or OpenAPI 3) into typed routes, once, at
//! start-up: methods and paths, security (SigV4 or a Lambda authorizer), request validators and
//! their models, and the `x-amazon-apigateway-integration` of each operation.
//!
//! Security fails closed: an operation whose `security` names a scheme the document does not
//! define, or a scheme the gateway cannot enforce (API keys, Cognito), stops the gateway with an
//! error instead of serving the route unauthenticated. (What AWS's import does with an undefined
//! name is not documented; LocalStack ignores it. Refusing is the safe reading.)

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::apigw::authorizer::{self, Authorizer, IdentitySource};
use crate::apigw::props::{self, opt_scalar, scalar, scalar_map};
use crate::apigw::rest::validate::Validation;
use crate::functions::Function;

/// How a REST route authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `NONE`.
    None,
    /// `AWS_IAM`: a SigV4 signature for `execute-api`.
    Sigv4,
    /// A Lambda authorizer.
    Lambda(Arc<RestAuthorizer>),
}

/// A Lambda authorizer of a REST API (`x-amazon-apigateway-authorizer`).
#[derive(Debug)]
pub struct RestAuthorizer {
    /// `TOKEN` (the event carries the token) or `REQUEST` (the whole request).
    pub token: bool,
    /// A `TOKEN` authorizer's `identityValidationExpression`: a token it does not match is 401.
    pub validation: Option<regex::Regex>,
    /// The authorizer and its cache of policies.
    pub inner: Authorizer<Value>,
}

/// One integration response (`responses.<pattern>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseSpec {
    /// The method response status.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub status_code: Option<String>,
    /// Matched against the Lambda error message or the service's status code.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub selection_pattern: Option<String>,
    /// Response templates by content type.
    #[serde(default, deserialize_with = "scalar_map")]
    pub response_templates: BTreeMap<String, String>,
    /// `method.response.header.X: 'value'` mappings.
    #[serde(default, deserialize_with = "scalar_map")]
    pub response_parameters: BTreeMap<String, String>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// `x-amazon-apigateway-integration`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationSpec {
    /// `aws`, `aws_proxy`, `http`, `mock`, ... (only `aws` is served).
    #[serde(rename = "type", deserialize_with = "scalar")]
    pub kind: String,
    /// The target: a Lambda function, a service action or an SQS path.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub uri: Option<String>,
    /// `integration.request.header.X: 'value'` mappings.
    #[serde(default, deserialize_with = "scalar_map")]
    pub request_parameters: BTreeMap<String, String>,
    /// Request templates by content type.
    #[serde(default, deserialize_with = "scalar_map")]
    pub request_templates: BTreeMap<String, String>,
    /// `when_no_match` (the default), `when_no_templates` or `never`.
    #[serde(default, deserialize_with = "opt_scalar")]
    pub passthrough_behavior: Option<String>,
    /// Integration responses by selection pattern (or `default`).
    #[serde(default)]
    pub responses: BTreeMap<String, ResponseSpec>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizerSpec {
    #[serde(rename = "type", deserialize_with = "scalar")]
    kind: String,
    #[serde(deserialize_with = "scalar")]
    authorizer_uri: String,
    #[serde(default, deserialize_with = "opt_scalar")]
    identity_source: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    authorizer_result_ttl_in_seconds: Option<String>,
    #[serde(default, deserialize_with = "opt_scalar")]
    identity_validation_expression: Option<String>,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

/// One operation of the document.
#[derive(Debug)]
pub struct Operation {
    /// Upper-case method or `ANY`.
    pub method: String,
    /// The OpenAPI path (`/users/{userId}`).
    pub path: String,
    /// How callers authenticate.
    pub auth: Auth,
    /// What is checked before the integration runs.
    pub validation: Validation,
    /// The integration.
    pub integration: IntegrationSpec,
    /// The compiled selection patterns, in the order of `integration.responses`.
    pub selection: Vec<(regex::Regex, String)>,
    /// The request body example, if the document gives one.
    pub example: Option<Value>,
}

/// Resolves local `$ref`s (`#/components/schemas/X`, `#/definitions/X`) in `schema`.
pub fn inline_refs(schema: &Value, document: &Value, depth: usize) -> Value {
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

fn schemes(document: &Value) -> Option<&serde_json::Map<String, Value>> {
    document
        .pointer("/components/securitySchemes")
        .or_else(|| document.get("securityDefinitions"))
        .and_then(Value::as_object)
}

fn read_authorizer(
    name: &str,
    scheme: &Value,
    config: &Value,
    functions: &[Arc<Function>],
) -> Result<RestAuthorizer> {
    let spec: AuthorizerSpec = props::read(&format!("authorizer {name}"), config)?;
    props::report(
        &format!("authorizer {name}"),
        &spec.rest,
        &["authorizerCredentials"],
    );
    let token = match spec.kind.to_ascii_lowercase().as_str() {
        "token" => true,
        "request" => false,
        other => bail!("authorizer {name}: type {other:?} is not served locally"),
    };
    let function = authorizer::function_of(&spec.authorizer_uri, functions).ok_or_else(|| {
        anyhow!(
            "authorizer {name}: {} names no function of the stack",
            spec.authorizer_uri
        )
    })?;
    let sources = if token {
        let header = scheme["name"].as_str().unwrap_or("Authorization");
        vec![IdentitySource::Header(header.to_ascii_lowercase())]
    } else {
        spec.identity_source
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| IdentitySource::rest(s).map_err(|e| anyhow!("authorizer {name}: {e}")))
            .collect::<Result<Vec<_>>>()?
    };
    let ttl = authorizer::ttl(spec.authorizer_result_ttl_in_seconds.as_deref(), 300)
        .map_err(|e| anyhow!("authorizer {name}: {e}"))?;
    let validation = spec
        .identity_validation_expression
        .as_deref()
        .filter(|_| token)
        .map(|e| regex::Regex::new(&format!("^(?:{e})$")))
        .transpose()
        .map_err(|e| anyhow!("authorizer {name}: identityValidationExpression: {e}"))?;
    Ok(RestAuthorizer {
        token,
        validation,
        inner: Authorizer::new(name.to_owned(), function, sources, ttl),
    })
}

/// Every scheme's enforcement, by name; a scheme the gateway cannot enforce is an error when an
/// operation uses it.
fn auths(
    document: &Value,
    functions: &[Arc<Function>],
) -> Result<BTreeMap<String, Result<Auth, String>>> {
    let mut out = BTreeMap::new();
    for (name, scheme) in schemes(document).into_iter().flatten() {
        let auth = if let Some(config) = scheme.get("x-amazon-apigateway-authorizer") {
            Ok(Auth::Lambda(Arc::new(read_authorizer(
                name, scheme, config, functions,
            )?)))
        } else if scheme
            .get("x-amazon-apigateway-authtype")
            .and_then(Value::as_str)
            == Some("awsSigv4")
        {
            Ok(Auth::Sigv4)
        } else {
            Err(format!(
                "security scheme {name} ({}) is not served locally",
                scheme["type"].as_str().unwrap_or("no type")
            ))
        };
        out.insert(name.clone(), auth);
    }
    Ok(out)
}

/// The routes of `document`.
pub fn operations(document: &Value, functions: &[Arc<Function>]) -> Result<Vec<Operation>> {
    let auths = auths(document, functions)?;
    let validators = document
        .get("x-amazon-apigateway-request-validators")
        .cloned()
        .unwrap_or(Value::Null);
    let default_validator = document
        .get("x-amazon-apigateway-request-validator")
        .and_then(Value::as_str);
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
                // `parameters`, `summary`, other extensions: not operations.
                _ => continue,
            };
            let at = format!("{method} {path}");
            let integration: IntegrationSpec = props::read(
                &at,
                operation
                    .get("x-amazon-apigateway-integration")
                    .ok_or_else(|| anyhow!("{at} has no x-amazon-apigateway-integration"))?,
            )?;
            props::report(
                &format!("{at} integration"),
                &integration.rest,
                &[
                    "credentials",
                    "httpMethod",
                    "timeoutInMillis",
                    "contentHandling",
                ],
            );
            for (key, response) in &integration.responses {
                props::report(&format!("{at} response {key}"), &response.rest, &[]);
            }
            let selection = integration
                .responses
                .iter()
                .filter(|(key, _)| key.as_str() != "default")
                .map(|(key, r)| {
                    let pattern = r.selection_pattern.as_deref().unwrap_or(key);
                    regex::Regex::new(&format!("^(?:{pattern})$"))
                        .map(|re| (re, key.clone()))
                        .map_err(|e| anyhow!("{at}: selectionPattern {pattern:?}: {e}"))
                })
                .collect::<Result<_>>()?;
            let security = operation
                .get("security")
                .or_else(|| document.get("security"));
            let mut auth = Auth::None;
            for name in security
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
                .flat_map(|m| m.keys())
            {
                match auths.get(name) {
                    None => bail!(
                        "{at}: security names {name}, which the document's security schemes do not define"
                    ),
                    Some(Err(why)) => bail!("{at}: {why}"),
                    Some(Ok(found)) => {
                        if !matches!(auth, Auth::None) {
                            bail!("{at}: more than one security scheme is not served locally");
                        }
                        auth = found.clone();
                    }
                }
            }
            let validator = operation
                .get("x-amazon-apigateway-request-validator")
                .and_then(Value::as_str)
                .or(default_validator)
                .map(|name| {
                    validators
                        .get(name)
                        .ok_or_else(|| anyhow!("{at}: no request validator {name}"))
                })
                .transpose()?;
            let validation = Validation::read(&at, operation, validator, document)?;
            out.push(Operation {
                example: operation
                    .pointer("/requestBody/content/application~1json/example")
                    .cloned(),
                method,
                path: path.clone(),
                auth,
                validation,
                integration,
                selection,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(security: Value, schemes: Value) -> Value {
        json!({
            "openapi": "3.0.1",
            "paths": {"/x": {"get": {
                "security": security,
                "x-amazon-apigateway-integration": {"type": "aws", "uri": "arn:aws:apigateway:us-east-1:dynamodb:action/GetItem",
                                                     "responses": {"default": {"statusCode": "200"}}}
            }}},
            "components": {"securitySchemes": schemes}
        })
    }

    #[test]
    fn an_operation_naming_an_undefined_scheme_stops_the_gateway() {
        let error =
            operations(&document(json!([{"missing": []}]), json!({})), &[]).expect_err("refused");
        assert!(error.to_string().contains("do not define"), "{error}");
    }

    #[test]
    fn a_scheme_the_gateway_cannot_enforce_stops_the_gateway() {
        let schemes = json!({"key": {"type": "apiKey", "name": "x-api-key", "in": "header"}});
        let error = operations(&document(json!([{"key": []}]), schemes), &[]).expect_err("refused");
        assert!(error.to_string().contains("not served locally"), "{error}");
    }

    #[test]
    fn sigv4_schemes_are_enforced() {
        let schemes = json!({"sigv4": {"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"}});
        let ops = operations(&document(json!([{"sigv4": []}]), schemes), &[]).expect("read");
        assert!(matches!(ops[0].auth, Auth::Sigv4));
    }

    #[test]
    fn selection_patterns_that_are_not_regular_expressions_stop_the_gateway() {
        let mut doc = document(json!([]), json!({}));
        doc["paths"]["/x"]["get"]["x-amazon-apigateway-integration"]["responses"]["bad"] =
            json!({"statusCode": "500", "selectionPattern": "5(\\d"});
        assert!(operations(&doc, &[]).is_err());
    }

    #[test]
    fn local_refs_are_inlined_for_validation() {
        let doc = json!({"components": {"schemas": {"A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}}, "B": {"type": "integer"}}}});
        let schema = inline_refs(&json!({"$ref": "#/components/schemas/A"}), &doc, 0);
        assert_eq!(schema["properties"]["b"]["type"], "integer");
    }
}
