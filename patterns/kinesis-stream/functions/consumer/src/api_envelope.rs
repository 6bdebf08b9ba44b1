//! The API's envelope: how a record put on the stream by the API names the request it came from.
//!
//! The API's `PutRecord` mapping template writes the client's body inside an envelope, as one JSON
//! object with one member:
//!
//! ```json
//! {"apiGatewayRequest": {"apiRequestId": "<$context.requestId>", "body": "<base64 of the body>"}}
//! ```
//!
//! The body is base64 so that any body survives the template, JSON or not; once decoded, it is
//! the payload exactly as a record's whole data is without an envelope (size limit, JSON, a
//! record that is not JSON being a poison record). The consumer stores `apiRequestId` beside the
//! item and logs it with every line about the record.
//!
//! - Data that is not such an object (records of other producers, data put before the API wrote
//!   envelopes) is handled as it always was: an object with one more member, or another member,
//!   is a client's object, not an envelope.
//! - A `kinesis-recover --replay stream` envelope ([`crate::replay`]) wraps a record's whole
//!   data, so its payload may be an API envelope in turn: the consumer opens the replay envelope
//!   first, then this one.
//! - The body is the client's: it is never opened as an envelope of either kind, so a client
//!   cannot name another request, nor pass for a replay, whatever it sends.
//! - An envelope that is not exactly this (a member missing, of another type, or one more; an id
//!   that is no API Gateway request id; a body that is not base64) is a poison record, reported
//!   as a failure like any bad data. Its errors name the members, never their values.

use base64::Engine as _;
use batch_consumer::api_request::{API_REQUEST_ID, is_api_request_id};
use serde_json::{Map, Value};

/// The one member of an envelope object.
pub const ENVELOPE_MEMBER: &str = "apiGatewayRequest";

/// The member of the envelope holding the client's body, in base64.
pub const BODY_MEMBER: &str = "body";

/// What an envelope holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiGatewayRequest {
    /// API Gateway's id of the request (`$context.requestId`).
    pub api_request_id: String,
    /// The client's body, decoded.
    pub body: Vec<u8>,
}

/// Why an envelope cannot be used. Names members, never their content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The member is not an object with exactly `apiRequestId` and `body`.
    #[error("API envelope is malformed: {0}")]
    Malformed(&'static str),
    /// `apiRequestId` is not an API Gateway request id
    /// ([`batch_consumer::api_request::is_api_request_id`]).
    #[error("API envelope's apiRequestId is not a request id")]
    BadApiRequestId,
    /// `body` is not base64.
    #[error("API envelope's body is not base64")]
    NotBase64 {
        /// The envelope's request id.
        api_request_id: String,
    },
}

impl EnvelopeError {
    /// The request id the envelope named, when it named a valid one.
    pub fn api_request_id(&self) -> Option<&str> {
        match self {
            EnvelopeError::NotBase64 { api_request_id } => Some(api_request_id),
            EnvelopeError::Malformed(_) | EnvelopeError::BadApiRequestId => None,
        }
    }
}

impl ApiGatewayRequest {
    /// An envelope for `body` (what the API's template writes; used by tests and tools).
    pub fn new(api_request_id: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self {
            api_request_id: api_request_id.into(),
            body: body.into(),
        }
    }

    /// The envelope as a record's data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut inner = Map::new();
        inner.insert(
            API_REQUEST_ID.to_owned(),
            Value::String(self.api_request_id.clone()),
        );
        inner.insert(
            BODY_MEMBER.to_owned(),
            Value::String(base64::engine::general_purpose::STANDARD.encode(&self.body)),
        );
        let mut envelope = Map::new();
        envelope.insert(ENVELOPE_MEMBER.to_owned(), Value::Object(inner));
        Value::Object(envelope).to_string().into_bytes()
    }

    /// The envelope `payload` is, if it is one: an object whose only member is
    /// [`ENVELOPE_MEMBER`]. `None` for any other value, which is a payload of its own.
    pub fn from_payload(payload: &Value) -> Option<Result<Self, EnvelopeError>> {
        let object = payload.as_object()?;
        if object.len() != 1 {
            return None;
        }
        Some(Self::read(object.get(ENVELOPE_MEMBER)?))
    }

    fn read(inner: &Value) -> Result<Self, EnvelopeError> {
        let Value::Object(members) = inner else {
            return Err(EnvelopeError::Malformed(
                "apiGatewayRequest is not an object",
            ));
        };
        if members
            .keys()
            .any(|k| k != API_REQUEST_ID && k != BODY_MEMBER)
        {
            return Err(EnvelopeError::Malformed(
                "apiGatewayRequest has members other than apiRequestId and body",
            ));
        }
        let api_request_id = match members.get(API_REQUEST_ID) {
            Some(Value::String(id)) => id,
            Some(_) => return Err(EnvelopeError::Malformed("apiRequestId is not a string")),
            None => return Err(EnvelopeError::Malformed("apiRequestId is missing")),
        };
        if !is_api_request_id(api_request_id) {
            return Err(EnvelopeError::BadApiRequestId);
        }
        let body = match members.get(BODY_MEMBER) {
            Some(Value::String(body)) => body,
            Some(_) => return Err(EnvelopeError::Malformed("body is not a string")),
            None => return Err(EnvelopeError::Malformed("body is missing")),
        };
        let body = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| EnvelopeError::NotBase64 {
                api_request_id: api_request_id.clone(),
            })?;
        Ok(Self {
            api_request_id: api_request_id.clone(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn open(value: Value) -> Option<Result<ApiGatewayRequest, EnvelopeError>> {
        ApiGatewayRequest::from_payload(&value)
    }

    #[test]
    fn an_envelope_round_trips_any_body() {
        for body in [
            &br#"{"status":"created"}"#[..],
            b"not json",
            b"",
            &[0xff, 0x00, 0xfe],
        ] {
            let envelope = ApiGatewayRequest::new("c6af9ac6-7b61-11e6-9a41-93e8deadbeef", body);
            let value: Value = serde_json::from_slice(&envelope.to_bytes()).expect("JSON");
            assert_eq!(open(value), Some(Ok(envelope)));
        }
    }

    #[test]
    fn only_an_object_with_the_one_member_is_an_envelope() {
        assert_eq!(open(json!({"status": "created"})), None);
        assert_eq!(open(json!([{"apiGatewayRequest": {}}])), None);
        assert_eq!(open(json!("apiGatewayRequest")), None);
        assert_eq!(open(json!(null)), None);
        assert_eq!(
            open(json!({"apiGatewayRequest": {"apiRequestId": "r", "body": ""}, "other": 1})),
            None,
            "a client object with more members is the client's"
        );
        assert_eq!(open(json!({"apigatewayrequest": {}})), None);
    }

    #[test]
    fn a_malformed_envelope_is_refused_naming_members_not_values() {
        let secret = "c2VjcmV0LXBheWxvYWQ=";
        for (inner, expected) in [
            (
                json!("a string"),
                EnvelopeError::Malformed("apiGatewayRequest is not an object"),
            ),
            (
                json!([secret]),
                EnvelopeError::Malformed("apiGatewayRequest is not an object"),
            ),
            (
                json!({"body": secret}),
                EnvelopeError::Malformed("apiRequestId is missing"),
            ),
            (
                json!({"apiRequestId": 42, "body": secret}),
                EnvelopeError::Malformed("apiRequestId is not a string"),
            ),
            (
                json!({"apiRequestId": null, "body": secret}),
                EnvelopeError::Malformed("apiRequestId is not a string"),
            ),
            (
                json!({"apiRequestId": "r-1"}),
                EnvelopeError::Malformed("body is missing"),
            ),
            (
                json!({"apiRequestId": "r-1", "body": 12345}),
                EnvelopeError::Malformed("body is not a string"),
            ),
            (
                json!({"apiRequestId": "r-1", "body": {"v": secret}}),
                EnvelopeError::Malformed("body is not a string"),
            ),
            (
                json!({"apiRequestId": "r-1", "body": secret, "extra": true}),
                EnvelopeError::Malformed(
                    "apiGatewayRequest has members other than apiRequestId and body",
                ),
            ),
            (
                json!({"apiRequestId": "r-1", "body": "%%% not base64 %%%"}),
                EnvelopeError::NotBase64 {
                    api_request_id: "r-1".into(),
                },
            ),
        ] {
            let got = open(json!({ ENVELOPE_MEMBER: inner }));
            assert_eq!(got, Some(Err(expected.clone())), "{inner}");
            assert!(!expected.to_string().contains(secret));
        }
        // Base64 without its padding is not what the template writes.
        assert!(matches!(
            open(json!({ENVELOPE_MEMBER: {"apiRequestId": "r-1", "body": "c2VjcmV0LXBheWxvYWQ"}})),
            Some(Err(EnvelopeError::NotBase64 { .. }))
        ));
    }

    #[test]
    fn an_id_that_is_no_request_id_is_refused_without_being_repeated() {
        let huge = "r".repeat(batch_consumer::api_request::MAX_API_REQUEST_ID_LEN + 1);
        let megabyte = "x".repeat(1024 * 1024);
        for id in [
            "",
            " ",
            "with space",
            "line\nbreak",
            "tab\t",
            "\u{0}",
            "é",
            huge.as_str(),
            megabyte.as_str(),
        ] {
            let got = open(json!({ENVELOPE_MEMBER: {"apiRequestId": id, "body": ""}}));
            assert_eq!(got, Some(Err(EnvelopeError::BadApiRequestId)), "{id:?}");
        }
        let longest = "r".repeat(batch_consumer::api_request::MAX_API_REQUEST_ID_LEN);
        let got = open(json!({ENVELOPE_MEMBER: {"apiRequestId": longest, "body": ""}}));
        assert!(matches!(got, Some(Ok(_))));
    }

    #[test]
    fn a_body_that_is_an_envelope_itself_is_only_the_clients_bytes() {
        let inner = ApiGatewayRequest::new("forged", br#"{"v":1}"#).to_bytes();
        let outer = ApiGatewayRequest::new("real", inner.clone());
        let value: Value = serde_json::from_slice(&outer.to_bytes()).expect("JSON");
        let opened = open(value).expect("an envelope").expect("valid");
        assert_eq!(opened.api_request_id, "real");
        assert_eq!(opened.body, inner, "opened once, never again");
    }
}
