//! Request validators (`x-amazon-apigateway-request-validators`): required parameters and a body
//! model (JSON Schema draft 4, as API Gateway validates models), checked before the integration.
//! Models are per content type: the request's (`application/json` when it sends none) picks the
//! model, `$default` serves any other, and with no model for it the body is not validated
//! (api-gateway-method-request-validation.html: "If no matching content type is found, request
//! validation is not performed").
//!
//! Models are compiled once, with the `regex` crate for `pattern` (linear time: no model can be
//! made to stall a request, however the body is written). A body that is not JSON, or is nested
//! deeper than the parser's 128 levels, is refused as a body that does not fit the model: API
//! Gateway documents no nesting limit, so that answer (400 "Invalid request body", which AWS gives
//! for a body that fails the model, LocalStack's AWS-validated `test_api_gateway_request_validator`)
//! is unconfirmed for very deep documents.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use serde_json::Value;

use crate::apigw::error::ApiError;
use crate::apigw::request::Request;
use crate::apigw::rest::openapi::inline_refs;
use crate::cfn::scalar_to_string;

/// What one operation checks.
#[derive(Debug, Default)]
pub struct Validation {
    /// Required parameters (`path`, `query` or `header`, and the name), when parameters are checked.
    params: Vec<(String, String)>,
    /// The body's models by content type, when the body is checked.
    body: BTreeMap<String, jsonschema::Validator>,
}

impl Validation {
    /// Reads what `validator` (a request validator object) asks of `operation`.
    pub fn read(
        at: &str,
        operation: &Value,
        validator: Option<&Value>,
        document: &Value,
    ) -> Result<Self> {
        let flag = |key: &str| {
            validator
                .and_then(|v| v.get(key))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let params = if flag("validateRequestParameters") {
            operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|p| p["required"] == true && p["in"] != "body")
                .map(|p| (scalar_to_string(&p["in"]), scalar_to_string(&p["name"])))
                .collect()
        } else {
            Vec::new()
        };
        let mut body = BTreeMap::new();
        if flag("validateRequestBody") {
            // OpenAPI 3: `requestBody.content.<type>.schema`; Swagger 2: the `in: body` parameter,
            // for the operation's `consumes` (JSON when it names none).
            let mut models: Vec<(String, &Value)> = operation
                .pointer("/requestBody/content")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(kind, media)| Some((kind.to_ascii_lowercase(), media.get("schema")?)))
                .collect();
            if let Some(schema) = operation
                .get("parameters")
                .and_then(Value::as_array)
                .and_then(|p| p.iter().find(|p| p["in"] == "body"))
                .and_then(|p| p.get("schema"))
            {
                let consumes: Vec<String> = operation
                    .get("consumes")
                    .and_then(Value::as_array)
                    .map(|c| c.iter().map(scalar_to_string).collect())
                    .unwrap_or_else(|| vec!["application/json".to_owned()]);
                models.extend(
                    consumes
                        .into_iter()
                        .map(|c| (c.to_ascii_lowercase(), schema)),
                );
            }
            for (kind, schema) in models {
                let schema = inline_refs(schema, document, 0);
                let model = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft4)
                    .with_pattern_options(jsonschema::PatternOptions::regex())
                    .build(&schema)
                    .map_err(|e| anyhow!("{at}: the {kind} model does not compile: {e}"))?;
                body.insert(kind, model);
            }
        }
        Ok(Self { params, body })
    }

    /// `Err` with API Gateway's answer when `request` fails a check.
    pub fn check(&self, request: &Request) -> Result<(), ApiError> {
        if !self.params.is_empty() {
            let query = request.query_params();
            let missing: Vec<&str> = self
                .params
                .iter()
                .filter(|(place, name)| {
                    let value = match place.as_str() {
                        "path" => request.path_params.get(name).cloned(),
                        "query" | "querystring" => query.get(name).cloned(),
                        "header" => request.header(name),
                        _ => None,
                    };
                    value.is_none_or(|v| v.is_empty())
                })
                .map(|(_, name)| name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(ApiError::BadRequestParameters(missing.join(", ")));
            }
        }
        let model = self
            .body
            .get(&request.media_type())
            .or_else(|| self.body.get("$default"));
        if let Some(model) = model {
            let text = request.body_text();
            let Ok(document) = serde_json::from_str::<Value>(&without_lone_surrogates(&text))
            else {
                tracing::info!(request_id = %request.id, "request body is not JSON (or too deep)");
                return Err(ApiError::BadRequestBody);
            };
            if let Some(why) = model.iter_errors(&document).next() {
                // Where in the body and which keyword, never a value (the kind's own text can
                // quote the body: the names of unexpected properties, say).
                tracing::info!(request_id = %request.id, at = %why.instance_path(), rule = why.kind().keyword(), "request body refused by the model");
                return Err(ApiError::BadRequestBody);
            }
        }
        Ok(())
    }
}

/// `text` with each escaped lone surrogate (`\ud800` not followed by its pair) replaced by
/// `\ufffd`. JSON allows them (RFC 8259 section 8.2) and API Gateway's validator accepts them;
/// serde_json refuses them, so they are replaced (one character for one) before validation.
fn without_lone_surrogates(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("\\u") {
        return std::borrow::Cow::Borrowed(text);
    }
    let unit = |at: usize| -> Option<u16> {
        let escape = text.get(at..at + 6)?;
        let hex = escape.strip_prefix("\\u")?;
        u16::from_str_radix(hex, 16).ok()
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if !rest.starts_with('\\') {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8().max(1);
            continue;
        }
        match unit(i) {
            Some(0xD800..=0xDBFF) if matches!(unit(i + 6), Some(0xDC00..=0xDFFF)) => {
                out.push_str(&text[i..i + 12]);
                i += 12;
            }
            Some(0xD800..=0xDFFF) => {
                out.push_str("\\ufffd");
                i += 6;
            }
            _ => {
                // Any other escape: keep it and the character it escapes.
                let escaped = text[i + 1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&text[i..i + 1 + escaped]);
                i += 1 + escaped;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validation(schema: Value) -> Validation {
        let operation =
            json!({"requestBody": {"content": {"application/json": {"schema": schema}}}});
        Validation::read(
            "POST /x",
            &operation,
            Some(&json!({"validateRequestBody": true})),
            &json!({}),
        )
        .expect("read")
    }

    fn request(body: &str) -> Request {
        Request {
            id: "r".into(),
            method: axum::http::Method::POST,
            path: "/x".into(),
            query: String::new(),
            headers: Default::default(),
            body: axum::body::Bytes::from(body.to_owned()),
            source_ip: "127.0.0.1".into(),
            path_params: Default::default(),
            received: std::time::SystemTime::now(),
        }
    }

    #[test]
    fn bodies_are_checked_against_draft_4_models() {
        let v = validation(
            json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}),
        );
        assert!(v.check(&request(r#"{"a": 1}"#)).is_ok());
        assert_eq!(
            v.check(&request(r#"{"a": "1"}"#)),
            Err(ApiError::BadRequestBody)
        );
        assert_eq!(v.check(&request("not json")), Err(ApiError::BadRequestBody));
    }

    #[test]
    fn lone_surrogates_are_valid_json_strings_for_the_model() {
        let v = validation(
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 1}}}),
        );
        assert!(v.check(&request(r#"{"name": "\ud800"}"#)).is_ok());
        assert!(
            v.check(&request(r#"{"name": "\ud83d\ude00"}"#)).is_ok(),
            "a pair is one character"
        );
        assert!(
            v.check(&request(r#"{"name": "\\ud800"}"#)).is_err(),
            "an escaped backslash, then six characters"
        );
        assert_eq!(
            without_lone_surrogates(r#""\udc00\ud800x""#),
            r#""\ufffd\ufffdx""#
        );
    }

    #[test]
    fn the_content_type_picks_the_model_and_one_without_a_model_is_not_validated() {
        let v = validation(json!({"type": "object"}));
        let mut text = request("not json");
        text.headers
            .insert("content-type", "text/plain".parse().expect("value"));
        assert!(v.check(&text).is_ok(), "no text/plain model: not validated");
        let mut charset = request("not json");
        charset.headers.insert(
            "content-type",
            "Application/JSON; charset=utf-8".parse().expect("value"),
        );
        assert_eq!(v.check(&charset), Err(ApiError::BadRequestBody));
    }

    #[test]
    fn deep_documents_are_refused_as_bad_bodies_without_a_crash() {
        let v = validation(json!({"type": "array"}));
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(v.check(&request(&deep)), Err(ApiError::BadRequestBody));
    }

    #[test]
    fn a_pattern_that_backtracks_in_other_engines_is_checked_in_linear_time() {
        // Catastrophic for a backtracking engine on a long non-matching input.
        let v = validation(
            json!({"type": "object", "properties": {"email": {"type": "string", "pattern": "^([a-zA-Z0-9_.+-]+)+@[a-z]+$"}}}),
        );
        let body = json!({"email": "a".repeat(50_000) + "!"}).to_string();
        assert_eq!(v.check(&request(&body)), Err(ApiError::BadRequestBody));
    }
}
