//! HTTP APIs' first-class AWS service integrations: `SQS-SendMessage` and `Kinesis-PutRecord`,
//! their request parameters (`$request.body`, `$request.header.X`, `$request.path.x`,
//! `$request.querystring.x`, `$request.body.a.b`, `$context.requestId`) and their answers.
//!
//! Before calling moto, the checks moto skips and AWS makes are made here ([`crate::sqs_checks`],
//! [`crate::kinesis_checks`]): a message or record AWS would refuse is refused, never stored.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::apigw::error::{ApiError, Flavor, stamp};
use crate::apigw::request::Request;
use crate::stack::Clients;

/// A route's integration.
#[derive(Debug, Clone)]
pub enum Integration {
    /// `AWS_PROXY` / `SQS-SendMessage`.
    SqsSendMessage {
        /// Request parameters by name.
        parameters: BTreeMap<String, String>,
    },
    /// `AWS_PROXY` / `Kinesis-PutRecord`.
    KinesisPutRecord {
        /// Request parameters by name.
        parameters: BTreeMap<String, String>,
    },
}

impl Integration {
    /// Reads an integration of `route`, checking its required parameters.
    pub fn new(
        route: &str,
        kind: &str,
        subtype: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<Self> {
        let required: &[&str] = match (kind, subtype) {
            ("AWS_PROXY", "SQS-SendMessage") => &["QueueUrl", "MessageBody"],
            ("AWS_PROXY", "Kinesis-PutRecord") => &["StreamName", "Data", "PartitionKey"],
            _ => bail!("{route}: integration {kind} {subtype} is not served locally yet"),
        };
        for name in required {
            if !parameters.contains_key(*name) {
                bail!("{route}: {subtype} needs request parameter {name}");
            }
        }
        Ok(if subtype == "SQS-SendMessage" {
            Self::SqsSendMessage { parameters }
        } else {
            Self::KinesisPutRecord { parameters }
        })
    }

    /// Runs the integration for `request`.
    pub async fn call(&self, clients: &Clients, request: &Request) -> Result<Response, ApiError> {
        match self {
            Self::SqsSendMessage { parameters } => {
                let value = |name: &str| parameters.get(name).and_then(|t| parameter(t, request));
                let queue_url = value("QueueUrl").ok_or(ApiError::Internal)?;
                let body = value("MessageBody").unwrap_or_default();
                if body.is_empty() {
                    // SQS refuses an empty message body: a client error, decided before the call.
                    return Err(ApiError::BadRequest(
                        "The request must contain the parameter MessageBody.".into(),
                    ));
                }
                if let Some(refused) = crate::sqs_checks::refusal(&body) {
                    return Err(service_failure(&format!(
                        "SQS refused the message: {}: {}",
                        refused.code, refused.message
                    )));
                }
                let mut send = clients
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
                    Ok(out) => Ok(send_message_xml(&out, &request.id)),
                    Err(error) => Err(service_failure(&aws_sdk_sqs::error::DisplayErrorContext(
                        &error,
                    ))),
                }
            }
            Self::KinesisPutRecord { parameters } => {
                let value = |name: &str| parameters.get(name).and_then(|t| parameter(t, request));
                let (Some(stream), Some(key)) = (value("StreamName"), value("PartitionKey")) else {
                    return Err(ApiError::Internal);
                };
                let data = value("Data").unwrap_or_default();
                if let Some(refused) = crate::kinesis_checks::refusal(data.as_bytes(), &key) {
                    return Err(service_failure(&format!(
                        "Kinesis refused the record: {}: {}",
                        refused.code, refused.message
                    )));
                }
                let put = clients
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
                        let mut response = (StatusCode::OK, axum::Json(body)).into_response();
                        stamp(&mut response, Flavor::Http, &request.id);
                        Ok(response)
                    }
                    Err(error) => Err(service_failure(
                        &aws_sdk_kinesis::error::DisplayErrorContext(&error),
                    )),
                }
            }
        }
    }
}

/// Substitutes `$request.*` and `$context.requestId` in an integration parameter value.
fn parameter(template: &str, request: &Request) -> Option<String> {
    if template == "$request.body" {
        return Some(request.body_text());
    }
    if let Some(name) = template.strip_prefix("$request.header.") {
        return request.header(name);
    }
    if let Some(name) = template.strip_prefix("$request.path.") {
        return request.path_params.get(name).cloned();
    }
    if let Some(name) = template.strip_prefix("$request.querystring.") {
        return request.query_params().remove(name);
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

/// A service call that failed. API Gateway answers the client `500` whatever the service said
/// (a refusal of the message included); only a missing or empty request parameter is the
/// client's `400`, decided before the call (LocalStack's tests recorded against AWS). The cause
/// goes to the log, never to the client.
fn service_failure(detail: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %detail, "integration call failed");
    ApiError::Internal
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
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/xml"));
    stamp(&mut response, Flavor::Http, request_id);
    response
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
