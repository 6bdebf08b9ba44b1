//! API Gateway: one core, two front ends.
//!
//! The core holds what both flavors share: routing ([`routing`]), the request and API Gateway's
//! limits on it ([`request`]), Lambda authorizers with one cache design ([`authorizer`]), and
//! every error answer ([`error`]). The front ends read their own resources and add their own
//! behaviour: HTTP APIs ([`http`], `AWS::ApiGatewayV2::*`, first-class integrations) and REST
//! APIs ([`rest`], an OpenAPI body with `x-amazon-apigateway-*` extensions, SigV4, models and
//! mapping templates rendered by [`helper`]). Each front end is an axum `Router`, so tests can
//! drive it with `tower::ServiceExt::oneshot` and no socket. Each front end's handler writes the
//! stage's access log line of every request it answers ([`access_log`]).

pub mod access_log;
pub mod authorizer;
pub mod error;
pub mod helper;
pub mod http;
pub mod props;
pub mod request;
pub mod rest;
pub mod routing;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use axum::response::Response;

use crate::apigw::error::{ApiError, Flavor};
use crate::apigw::request::Request;

/// Reads what every request needs before routing: the header limit, the stage prefix, the body
/// (at most [`request::MAX_PAYLOAD`]). `Err` is the answer to send.
pub async fn accept(
    flavor: Flavor,
    stage_prefix: &str,
    request: axum::extract::Request,
) -> Result<Request, Response> {
    let id = match flavor {
        Flavor::Http => crate::random_alnum(16),
        Flavor::Rest => uuid::Uuid::new_v4().to_string(),
    };
    let (parts, body) = request.into_parts();
    let refuse = |error: ApiError| error.response(flavor, &id);
    request::check_header_size(&parts.method, &parts.uri, &parts.headers).map_err(refuse)?;
    let full = parts.uri.path();
    let path = full
        .strip_prefix(stage_prefix)
        .filter(|p| stage_prefix.is_empty() || p.is_empty() || p.starts_with('/'))
        .ok_or_else(|| refuse(ApiError::NoRoute))?;
    let path = if path.is_empty() { "/" } else { path }.to_owned();
    let body = axum::body::to_bytes(body, request::MAX_PAYLOAD)
        .await
        .map_err(|_| refuse(ApiError::RequestTooLarge))?;
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    Ok(Request {
        id,
        method: parts.method,
        path,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
        source_ip,
        path_params: BTreeMap::new(),
        received: SystemTime::now(),
    })
}

/// Serves `router` on `listener` until the process ends, with the caller's address known.
pub async fn serve(router: axum::Router, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// `path.logical`, or `logical` in the root stack.
pub(crate) fn qualified(stack: &crate::stack::Stack, logical: &str) -> String {
    if stack.path.is_empty() {
        logical.to_owned()
    } else {
        format!("{}.{logical}", stack.path)
    }
}
