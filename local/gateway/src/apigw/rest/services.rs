//! REST APIs' AWS service integrations on moto: a service action in a JSON protocol
//! (`arn:aws:apigateway:<region>:dynamodb:action/GetItem`) and SQS's "path" integration
//! (`sqs:path/<account>/<queue>`, a query-protocol form).
//!
//! The checks moto skips and AWS makes are made here first ([`crate::sqs_checks`],
//! [`crate::kinesis_checks`]), answered in the service's own error shape, so the integration
//! response selection sees what it would see on AWS.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};

/// A service's answer: status and body.
pub type Answer = (u16, String);

/// Calls services on moto.
#[derive(Debug, Clone)]
pub struct Services {
    /// moto's endpoint.
    pub endpoint: String,
    /// The region requests are signed for.
    pub region: String,
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Services {
    /// Calls `service`'s `action` with the rendered JSON `body`.
    pub async fn call(&self, service: &str, action: &str, body: &str) -> Result<Answer> {
        let (target, content_type) = match service {
            "dynamodb" => ("DynamoDB_20120810", "application/x-amz-json-1.0"),
            "sqs" => ("AmazonSQS", "application/x-amz-json-1.0"),
            "kinesis" => ("Kinesis_20131202", "application/x-amz-json-1.1"),
            "events" => ("AWSEvents", "application/x-amz-json-1.1"),
            other => bail!("service integrations with {other} are not served locally yet"),
        };
        if let Some(refused) = refusal(service, action, body) {
            return Ok(refused);
        }
        // moto routes by the credential scope's service; it does not check the signature.
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/{}/{service}/aws4_request, SignedHeaders=host, Signature=local",
            self.region
        );
        let response = self
            .http
            .post(format!("{}/", self.endpoint.trim_end_matches('/')))
            .header("x-amz-target", format!("{target}.{action}"))
            .header("content-type", content_type)
            .header("authorization", authorization)
            .body(body.to_owned())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// An SQS "path" integration: the request template builds a query-protocol form
    /// (`Action=SendMessage&MessageBody=...`). AWS answers it in JSON when the integration asks
    /// with `Accept: application/json`; moto only speaks XML there, so the gateway sends the same
    /// call in SQS's JSON protocol and answers in that JSON shape.
    pub async fn sqs_path(&self, path: &str, form: &str, wants_json: bool) -> Result<Answer> {
        let queue_url = format!(
            "{}/{}",
            self.endpoint.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let request = send_message_request(&queue_url, form)?;
        let (status, body) = self
            .call("sqs", "SendMessage", &request.to_string())
            .await?;
        if status >= 300 && wants_json {
            // The query API's error, in the JSON shape it has with `Accept: application/json`
            // (moto answers in SQS's JSON protocol: `__type` and `message`).
            let error: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let code = error["__type"]
                .as_str()
                .and_then(|t| t.rsplit('#').next())
                .unwrap_or("InternalFailure");
            let wrapped = json!({
                "Error": {
                    "Code": code,
                    "Message": error["message"].as_str().unwrap_or_default(),
                    "Type": if status < 500 { "Sender" } else { "Receiver" },
                },
                "RequestId": uuid::Uuid::new_v4().to_string(),
            });
            return Ok((status, wrapped.to_string()));
        }
        if status >= 300 || !wants_json {
            return Ok((status, body));
        }
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let wrapped = json!({
            "SendMessageResponse": {
                "ResponseMetadata": { "RequestId": uuid::Uuid::new_v4().to_string() },
                "SendMessageResult": {
                    "MD5OfMessageAttributes": answer.get("MD5OfMessageAttributes"),
                    "MD5OfMessageBody": answer.get("MD5OfMessageBody"),
                    "MessageId": answer.get("MessageId"),
                    "SequenceNumber": answer.get("SequenceNumber"),
                }
            }
        });
        Ok((status, wrapped.to_string()))
    }
}

/// The answer AWS would give instead of moto's, for what moto does not check.
fn refusal(service: &str, action: &str, body: &str) -> Option<Answer> {
    let request: Value = serde_json::from_str(body).ok()?;
    let (namespace, code, message) = match (service, action) {
        ("sqs", "SendMessage") => {
            let refused = crate::sqs_checks::refusal(request["MessageBody"].as_str()?)?;
            ("com.amazonaws.sqs#", refused.code, refused.message)
        }
        ("kinesis", "PutRecord") => {
            // `Data` is base64 in Kinesis's JSON protocol; moto checks the encoding itself.
            let data = base64::engine::general_purpose::STANDARD
                .decode(request["Data"].as_str()?)
                .ok()?;
            let key = request["PartitionKey"].as_str().unwrap_or_default();
            let refused = crate::kinesis_checks::refusal(&data, key)?;
            ("", refused.code, refused.message)
        }
        _ => return None,
    };
    Some((
        400,
        json!({"__type": format!("{namespace}{code}"), "message": message}).to_string(),
    ))
}

/// The SQS JSON-protocol `SendMessage` request for a query-protocol form: the body, the optional
/// fields, and the message attributes (`MessageAttribute.N.Name`, `.Value.DataType`,
/// `.Value.StringValue` or `.Value.BinaryValue`, base64 in both protocols) as `MessageAttributes`.
pub fn send_message_request(queue_url: &str, form: &str) -> Result<Value> {
    let fields: BTreeMap<String, String> = form
        .trim()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    if fields.get("Action").map(String::as_str) != Some("SendMessage") {
        bail!("only Action=SendMessage is served locally for SQS path integrations");
    }
    let mut request = json!({ "QueueUrl": queue_url, "MessageBody": fields.get("MessageBody").cloned().unwrap_or_default() });
    for key in ["DelaySeconds", "MessageGroupId", "MessageDeduplicationId"] {
        if let Some(v) = fields.get(key) {
            request[key] = json!(v);
        }
    }
    let mut attributes = serde_json::Map::new();
    for (key, name) in &fields {
        let Some(n) = key
            .strip_prefix("MessageAttribute.")
            .and_then(|rest| rest.strip_suffix(".Name"))
        else {
            continue;
        };
        let field = |part: &str| fields.get(&format!("MessageAttribute.{n}.Value.{part}"));
        let mut value = serde_json::Map::new();
        for part in ["DataType", "StringValue", "BinaryValue"] {
            if let Some(v) = field(part) {
                value.insert(part.to_owned(), json!(v));
            }
        }
        if !value.contains_key("DataType") {
            bail!("MessageAttribute.{n} ({name}) has no Value.DataType");
        }
        attributes.insert(name.clone(), Value::Object(value));
    }
    if !attributes.is_empty() {
        request["MessageAttributes"] = Value::Object(attributes);
    }
    Ok(request)
}

/// Decodes one `application/x-www-form-urlencoded` component.
fn form_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_message_forms_carry_their_message_attributes_into_the_json_request() {
        let form = "Action=SendMessage&MessageBody=%7B%22a%22%3A1%7D\
                    &MessageAttribute.1.Name=requestId&MessageAttribute.1.Value.DataType=String\
                    &MessageAttribute.1.Value.StringValue=req+1%2F2\
                    &MessageAttribute.2.Name=blob&MessageAttribute.2.Value.DataType=Binary\
                    &MessageAttribute.2.Value.BinaryValue=AAE%3D";
        let request = send_message_request("http://q/1/queue", form).expect("request");
        assert_eq!(request["MessageBody"], r#"{"a":1}"#);
        assert_eq!(
            request["MessageAttributes"],
            json!({"requestId": {"DataType": "String", "StringValue": "req 1/2"},
                   "blob": {"DataType": "Binary", "BinaryValue": "AAE="}})
        );
        let plain = send_message_request("http://q/1/queue", "Action=SendMessage&MessageBody=x")
            .expect("request");
        assert!(plain.get("MessageAttributes").is_none());
        assert!(
            send_message_request(
                "http://q/1/queue",
                "Action=SendMessage&MessageBody=x&MessageAttribute.1.Name=a"
            )
            .is_err(),
            "an attribute without a data type is refused, as SQS refuses it"
        );
    }

    #[test]
    fn form_components_decode_plus_and_never_split_a_character() {
        assert_eq!(form_decode("a+b%20c"), "a b c");
        assert_eq!(form_decode("%é%"), "%é%");
        assert_eq!(form_decode("%C3%A9"), "é");
    }

    #[test]
    fn what_moto_skips_is_refused_in_the_services_own_error_shape() {
        let too_big = json!({"MessageBody": "x".repeat(crate::sqs_checks::MAX_MESSAGE_BYTES + 1)});
        let (status, body) = refusal("sqs", "SendMessage", &too_big.to_string()).expect("refused");
        assert_eq!(status, 400);
        assert!(body.contains("com.amazonaws.sqs#InvalidParameterValue"));
        let data = base64::engine::general_purpose::STANDARD.encode(vec![
            0u8;
            crate::kinesis_checks::MAX_RECORD_BYTES
                + 1
        ]);
        let record = json!({"StreamName": "s", "PartitionKey": "k", "Data": data});
        let (status, body) = refusal("kinesis", "PutRecord", &record.to_string()).expect("refused");
        assert_eq!(status, 400);
        assert!(body.contains("ValidationException"));
        assert!(
            refusal(
                "kinesis",
                "PutRecord",
                &json!({"PartitionKey": "k", "Data": "AA=="}).to_string()
            )
            .is_none()
        );
    }
}
