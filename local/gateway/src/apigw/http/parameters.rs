//! HTTP API integrations' request parameters, read once at start-up: a static value, a mapping
//! expression that is the whole value (`$request.body`, `$request.header.name`,
//! `$request.path.name`, `$request.querystring.name`, `$request.body.a.b`, `$context.requestId`),
//! or text with expressions inside in their braced form (`${request.header.name}`,
//! `${context.requestId}`), as API Gateway's parameter mapping table gives each source
//! ("`$request.header.name` or `${request.header.name}`", apigateway developer guide,
//! http-api-parameter-mapping.html; http-api-develop-integrations-aws-services.html lists the
//! sources AWS service integrations take).
//!
//! An expression the gateway does not serve (a stage variable, a context variable it does not
//! know) stops the start with its name, never a literal `$...` sent on to the service. A whole
//! expression with no value for the request (an absent header) leaves the parameter out, as
//! API Gateway does; an embedded one with no value is rendered as nothing (the documentation
//! says nothing of that case; only a deployment can tell).

use anyhow::{Result, bail};
use serde_json::Value;

use crate::apigw::request::Request;

/// The `$context` variables request parameters may name locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextVariable {
    /// `requestId`: the id API Gateway gives the request.
    RequestId,
    /// `extendedRequestId`: the same id on HTTP APIs.
    ExtendedRequestId,
    /// `httpMethod`.
    HttpMethod,
    /// `identity.sourceIp`.
    SourceIp,
    /// `identity.userAgent`.
    UserAgent,
    /// `domainName`: the `Host` header.
    DomainName,
}

impl ContextVariable {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "requestId" => Self::RequestId,
            "extendedRequestId" => Self::ExtendedRequestId,
            "httpMethod" => Self::HttpMethod,
            "identity.sourceIp" => Self::SourceIp,
            "identity.userAgent" => Self::UserAgent,
            "domainName" => Self::DomainName,
            _ => return None,
        })
    }
}

/// Where a mapped value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `request.body`: the whole body.
    Body,
    /// `request.body.a.b`: a member of a JSON body.
    BodyPath(String),
    /// `request.header.name`: every value, joined with commas.
    Header(String),
    /// `request.path.name`.
    Path(String),
    /// `request.querystring.name`: every value, joined with commas.
    Query(String),
    /// `context.name`.
    Context(ContextVariable),
}

impl Source {
    /// Reads an expression without its `$` (`request.header.X`, `context.requestId`).
    fn parse(expression: &str) -> Result<Self> {
        let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let source = if expression == "request.body" {
            Some(Self::Body)
        } else if let Some(path) = expression.strip_prefix("request.body.") {
            nonempty(path).map(Self::BodyPath)
        } else if let Some(name) = expression.strip_prefix("request.header.") {
            nonempty(name).map(Self::Header)
        } else if let Some(name) = expression.strip_prefix("request.path.") {
            nonempty(name).map(Self::Path)
        } else if let Some(name) = expression.strip_prefix("request.querystring.") {
            nonempty(name).map(Self::Query)
        } else if let Some(name) = expression.strip_prefix("context.") {
            match ContextVariable::parse(name) {
                Some(variable) => Some(Self::Context(variable)),
                None => bail!("the context variable ${expression} is not served locally"),
            }
        } else if expression.starts_with("stageVariables.") {
            bail!("stage variables (${expression}) are not served locally in HTTP APIs");
        } else {
            None
        };
        source.ok_or_else(|| anyhow::anyhow!("${expression} is not a request parameter mapping"))
    }

    fn value(&self, request: &Request) -> Option<String> {
        match self {
            Self::Body => Some(request.body_text()),
            Self::BodyPath(path) => {
                let body: Value = serde_json::from_slice(&request.body).ok()?;
                let pointer = format!("/{}", path.replace('.', "/"));
                body.pointer(&pointer).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            }
            Self::Header(name) => request.header(name),
            Self::Path(name) => request.path_params.get(name).cloned(),
            Self::Query(name) => request.query_params().remove(name),
            Self::Context(variable) => Some(match variable {
                ContextVariable::RequestId | ContextVariable::ExtendedRequestId => {
                    request.id.clone()
                }
                ContextVariable::HttpMethod => request.method.to_string(),
                ContextVariable::SourceIp => request.source_ip.clone(),
                ContextVariable::UserAgent => request.user_agent(),
                ContextVariable::DomainName => request.host(),
            }),
        }
    }
}

/// A piece of a parameter's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Itself.
    Text(String),
    /// A `${...}` expression.
    Source(Source),
}

/// One request parameter's value, as the template writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parameter {
    /// A mapping expression that is the whole value.
    Expression(Source),
    /// Text, with `${...}` expressions inside or none (a static value).
    Text(Vec<Piece>),
}

impl Parameter {
    /// Reads a parameter's value from the template.
    pub fn parse(value: &str) -> Result<Self> {
        if let Some(expression) = value.strip_prefix('$').filter(|e| !e.starts_with('{')) {
            let looks_mapped = ["request.", "context.", "stageVariables."]
                .iter()
                .any(|p| expression.starts_with(p));
            if looks_mapped {
                return Ok(Self::Expression(Source::parse(expression)?));
            }
        }
        let mut pieces = Vec::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            let Some(len) = rest[start + 2..].find('}') else {
                break; // an unclosed `${` is text
            };
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            pieces.push(Piece::Source(Source::parse(
                &rest[start + 2..start + 2 + len],
            )?));
            rest = &rest[start + 2 + len + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self::Text(pieces))
    }

    /// The value for `request`; `None` when it is a whole expression with no value.
    pub fn render(&self, request: &Request) -> Option<String> {
        match self {
            Self::Expression(source) => source.value(request),
            Self::Text(pieces) => Some(
                pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Text(text) => text.clone(),
                        Piece::Source(source) => source.value(request).unwrap_or_default(),
                    })
                    .collect(),
            ),
        }
    }

    /// The text with every embedded expression replaced by `sample` (for checking a template's
    /// shape at start-up); `None` for a whole expression, whose shape only a request decides.
    pub fn with_samples(&self, sample: &str) -> Option<String> {
        match self {
            Self::Expression(_) => None,
            Self::Text(pieces) => Some(
                pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Text(text) => text.as_str(),
                        Piece::Source(_) => sample,
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::SystemTime;

    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method};

    use super::*;

    fn request() -> Request {
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", "t-1".parse().expect("value"));
        Request {
            id: "Kx1aBcDeFgHiJkLm".into(),
            method: Method::POST,
            path: "/submit/e-1".into(),
            query: "a=1&a=2".into(),
            headers,
            body: Bytes::from_static(br#"{"order":{"id":7,"name":"x"}}"#),
            source_ip: "127.0.0.1".into(),
            path_params: BTreeMap::from([("eventId".to_owned(), "e-1".to_owned())]),
            received: SystemTime::now(),
        }
    }

    fn render(value: &str) -> Option<String> {
        Parameter::parse(value)
            .expect("parameter")
            .render(&request())
    }

    #[test]
    fn whole_expressions_take_the_requests_values() {
        assert_eq!(
            render("$request.body").as_deref(),
            Some(r#"{"order":{"id":7,"name":"x"}}"#)
        );
        assert_eq!(render("$request.body.order.id").as_deref(), Some("7"));
        assert_eq!(render("$request.body.order.name").as_deref(), Some("x"));
        assert_eq!(render("$request.header.X-Tenant").as_deref(), Some("t-1"));
        assert_eq!(render("$request.path.eventId").as_deref(), Some("e-1"));
        assert_eq!(render("$request.querystring.a").as_deref(), Some("1,2"));
        assert_eq!(
            render("$context.requestId").as_deref(),
            Some("Kx1aBcDeFgHiJkLm")
        );
        assert_eq!(
            render("$request.header.absent"),
            None,
            "left out, as API Gateway does"
        );
        assert_eq!(render("static value").as_deref(), Some("static value"));
    }

    #[test]
    fn braced_expressions_are_substituted_inside_text() {
        assert_eq!(
            render(
                r#"{"apiRequestId":{"DataType":"String","StringValue":"${context.requestId}"}}"#
            )
            .as_deref(),
            Some(r#"{"apiRequestId":{"DataType":"String","StringValue":"Kx1aBcDeFgHiJkLm"}}"#)
        );
        assert_eq!(
            render("${request.path.eventId}/${request.header.absent}/${").as_deref(),
            Some("e-1//${"),
            "an absent value is nothing; an unclosed brace is text"
        );
        let parameter = Parameter::parse("a ${context.httpMethod} b").expect("parameter");
        assert_eq!(parameter.with_samples("x").as_deref(), Some("a x b"));
        assert_eq!(
            Parameter::parse("$request.body")
                .expect("parameter")
                .with_samples("x"),
            None
        );
    }

    #[test]
    fn expressions_the_gateway_does_not_serve_stop_the_start() {
        for value in [
            "$context.authorizer.claims.sub",
            "${stageVariables.queue}",
            "$request.cookie.x",
            "x ${request.header.}",
        ] {
            assert!(Parameter::parse(value).is_err(), "{value}");
        }
    }
}
