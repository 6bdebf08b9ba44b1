//! HTTP APIs' first-class AWS service integrations: `SQS-SendMessage` and `Kinesis-PutRecord`,
//! their request parameters ([`super::parameters`]: `$request.body`, `$request.header.X`,
//! `${context.requestId}` inside a value, ...), `SQS-SendMessage`'s `MessageAttributes`
//! ([`super::attributes`]) and their answers. Each call is noted for the access log
//! (`$context.integration.status`, `.error`, `.latency`, `.requestId`).
//!
//! Before calling moto, the checks moto skips and AWS makes are made here ([`crate::sqs_checks`],
//! [`crate::kinesis_checks`], [`super::attributes`]): a message or record AWS would refuse is
//! refused, never stored.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use aws_sdk_sqs::operation::RequestId as _;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::attributes;
use super::parameters::Parameter;
use crate::apigw::access_log::{self, IntegrationFacts};
use crate::apigw::error::{ApiError, Flavor, stamp};
use crate::apigw::request::Request;
use crate::stack::Clients;

/// A route's integration.
#[derive(Debug, Clone)]
pub enum Integration {
    /// `AWS_PROXY` / `SQS-SendMessage`.
    SqsSendMessage {
        /// Request parameters by name.
        parameters: BTreeMap<String, Parameter>,
    },
    /// `AWS_PROXY` / `Kinesis-PutRecord`.
    KinesisPutRecord {
        /// Request parameters by name.
        parameters: BTreeMap<String, Parameter>,
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
        let parameters = parameters
            .into_iter()
            .map(|(name, value)| {
                let parameter = Parameter::parse(&value)
                    .map_err(|e| anyhow!("{route}: request parameter {name}: {e}"))?;
                Ok((name, parameter))
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        if let Some(sample) = parameters
            .get("MessageAttributes")
            .and_then(|p| p.with_samples("x"))
            && let Err(invalid) = attributes::read(&sample)
        {
            // Whether a request's values make it valid only a request tells; say it now.
            tracing::warn!(route, error = %invalid, "MessageAttributes does not read with sample values; requests whose values do not make it valid are answered 500");
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
                let value = |name: &str| parameters.get(name).and_then(|p| p.render(request));
                let queue_url = value("QueueUrl").ok_or(ApiError::Internal)?;
                let body = value("MessageBody").unwrap_or_default();
                if body.is_empty() {
                    // SQS refuses an empty message body: a client error, decided before the call.
                    return Err(ApiError::BadRequest(
                        "The request must contain the parameter MessageBody.".into(),
                    ));
                }
                let started = Instant::now();
                let attributes = match value("MessageAttributes").map(|a| attributes::read(&a)) {
                    None => None,
                    Some(Ok(read)) => Some(read),
                    Some(Err(invalid)) => {
                        let status =
                            matches!(invalid, attributes::Invalid::Refused(_)).then_some(400);
                        noted(started, status, Some(invalid.to_string()), None);
                        return Err(service_failure(&invalid));
                    }
                };
                let attribute_bytes = attributes.as_ref().map_or(0, |a| a.bytes);
                let refused = crate::sqs_checks::refusal(&body).or_else(|| {
                    // The attributes count towards the message's size, with the body.
                    (body.len() + attribute_bytes > crate::sqs_checks::MAX_MESSAGE_BYTES).then(|| {
                        crate::sqs_checks::Refusal {
                            code: "InvalidParameterValue",
                            message: format!(
                                "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
                                crate::sqs_checks::MAX_MESSAGE_BYTES
                            ),
                        }
                    })
                });
                if let Some(refused) = refused {
                    noted(started, Some(400), Some(refused.message.clone()), None);
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
                    .set_message_attributes(attributes.map(|a| a.values))
                    .set_message_group_id(value("MessageGroupId"))
                    .set_message_deduplication_id(value("MessageDeduplicationId"));
                if let Some(delay) = value("DelaySeconds").and_then(|d| d.parse().ok()) {
                    send = send.delay_seconds(delay);
                }
                match send.send().await {
                    Ok(out) => {
                        noted(
                            started,
                            Some(200),
                            None,
                            out.request_id().map(str::to_owned),
                        );
                        Ok(send_message_xml(&out, &request.id))
                    }
                    Err(error) => {
                        noted_failure(started, &error);
                        Err(service_failure(&aws_sdk_sqs::error::DisplayErrorContext(
                            &error,
                        )))
                    }
                }
            }
            Self::KinesisPutRecord { parameters } => {
                let value = |name: &str| parameters.get(name).and_then(|p| p.render(request));
                let (Some(stream), Some(key)) = (value("StreamName"), value("PartitionKey")) else {
                    return Err(ApiError::Internal);
                };
                let data = value("Data").unwrap_or_default();
                let started = Instant::now();
                if let Some(refused) = crate::kinesis_checks::refusal(data.as_bytes(), &key) {
                    noted(started, Some(400), Some(refused.message.clone()), None);
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
                        noted(
                            started,
                            Some(200),
                            None,
                            out.request_id().map(str::to_owned),
                        );
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
                    Err(error) => {
                        noted_failure(started, &error);
                        Err(service_failure(
                            &aws_sdk_kinesis::error::DisplayErrorContext(&error),
                        ))
                    }
                }
            }
        }
    }
}

/// Notes the integration's call (or the refusal that took its place) for the access log.
fn noted(started: Instant, status: Option<u16>, error: Option<String>, request_id: Option<String>) {
    access_log::note(|facts| {
        facts.integration = Some(IntegrationFacts {
            status,
            latency: started.elapsed(),
            error,
            request_id,
        });
    });
}

/// Notes a failed service call for the access log: the service's HTTP status, its message (else
/// the error's own text) and its request id. One SDK error type serves every service client.
fn noted_failure<E>(started: Instant, error: &aws_sdk_sqs::error::SdkError<E>)
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_sqs::error::ProvideErrorMetadata as _;
    let status = error.raw_response().map(|r| r.status().as_u16());
    let message = error
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string());
    noted(
        started,
        status,
        Some(message),
        error.request_id().map(str::to_owned),
    );
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
