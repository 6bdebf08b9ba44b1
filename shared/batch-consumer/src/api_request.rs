//! `apiRequestId`: the id of the API Gateway request a record came from.
//!
//! The APIs in front of the queues and streams put API Gateway's request id
//! (`$context.requestId`) beside what they enqueue, and the consumers carry it into every log line
//! about the record (the tracing field `apiRequestId`) and into the item they store (the String
//! attribute `apiRequestId`), so one id leads from an API access log line to the function's log
//! lines and to the stored item. The name differs from `requestId` on purpose: Lambda's JSON log
//! lines already have a `requestId` of their own, the id of the *invocation*, which handles a
//! whole batch.
//!
//! On SQS the id travels as the message attribute `apiRequestId` ([`sqs_api_request_id`]); how
//! other sources carry it is theirs to say (the kinesis-stream consumer reads it from the
//! envelope its API writes). Whatever the source, only an id that looks like one is used
//! ([`is_api_request_id`]): the value ends up in logs and items, and a producer other than the
//! API could put anything there.

use aws_lambda_events::sqs::SqsMessage;

/// The name everything uses: the SQS message attribute, the tracing field, the item attribute.
pub const API_REQUEST_ID: &str = "apiRequestId";

/// Longest `apiRequestId` accepted, in bytes. API Gateway's request ids are far shorter: a UUID
/// (36 characters) for REST APIs, about 16 characters for HTTP APIs.
pub const MAX_API_REQUEST_ID_LEN: usize = 128;

/// Whether `id` can be used as an `apiRequestId`: 1 to [`MAX_API_REQUEST_ID_LEN`] bytes of
/// printable ASCII without spaces, as every API Gateway request id is. Anything else (empty,
/// huge, control characters, other scripts) is no request id of the API's, and is never logged
/// or stored as one.
pub fn is_api_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_API_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The `apiRequestId` a message carries in its message attribute of that name, if it is a
/// `String` attribute (or a `String.*` custom type) holding a usable id ([`is_api_request_id`]).
///
/// A message without it (sent by another producer than the API, or before the API sent it) has
/// none, and is otherwise handled as every message.
pub fn sqs_api_request_id(record: &SqsMessage) -> Option<&str> {
    let attribute = record.message_attributes.get(API_REQUEST_ID)?;
    let is_string = attribute
        .data_type
        .as_deref()
        .is_some_and(|t| t == "String" || t.starts_with("String."));
    attribute
        .string_value
        .as_deref()
        .filter(|id| is_string && is_api_request_id(id))
}

/// A record's error that knows which API request the record came from, so that the batch's log
/// line reporting the failure carries `apiRequestId` too
/// ([`kinesis::process_kinesis_batch_traced`](crate::kinesis::process_kinesis_batch_traced)).
pub trait FromApiRequest: std::error::Error + 'static {
    /// The `apiRequestId` of the record that failed, when it is known.
    fn api_request_id(&self) -> Option<&str>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attributes: serde_json::Value) -> SqsMessage {
        serde_json::from_value(serde_json::json!({
            "messageId": "m-1", "body": "{}", "messageAttributes": attributes
        }))
        .expect("message")
    }

    fn attribute(data_type: &str, value: &str) -> serde_json::Value {
        serde_json::json!({API_REQUEST_ID: {"stringValue": value, "dataType": data_type,
            "stringListValues": [], "binaryListValues": []}})
    }

    #[test]
    fn the_string_attribute_carries_the_api_request_id() {
        let id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef";
        assert_eq!(
            sqs_api_request_id(&message(attribute("String", id))),
            Some(id)
        );
        assert_eq!(
            sqs_api_request_id(&message(attribute("String.uuid", "JNlxtgE9IAMEPsQ="))),
            Some("JNlxtgE9IAMEPsQ=")
        );
        assert_eq!(sqs_api_request_id(&message(serde_json::json!({}))), None);
    }

    #[test]
    fn what_is_no_request_id_is_ignored() {
        let huge = "a".repeat(MAX_API_REQUEST_ID_LEN + 1);
        for (data_type, value) in [
            ("Number", "12345"),
            ("Binary", "abc"),
            ("String", ""),
            ("String", "with space"),
            ("String", "line\nbreak"),
            ("String", "é"),
            ("String", huge.as_str()),
        ] {
            assert_eq!(
                sqs_api_request_id(&message(attribute(data_type, value))),
                None,
                "{data_type} {value:?}"
            );
        }
        assert!(is_api_request_id(&"a".repeat(MAX_API_REQUEST_ID_LEN)));
    }
}
