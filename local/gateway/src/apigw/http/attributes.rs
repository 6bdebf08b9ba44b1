//! `SQS-SendMessage`'s `MessageAttributes` parameter: a JSON object in the shape of SQS's
//! `SendMessage` JSON API (`{"<name>": {"DataType": "String", "StringValue": "..."}}`, values
//! `StringValue` or `BinaryValue` in base64), read after the request's values are substituted
//! ([`super::parameters`]) and checked as SQS checks it, since moto checks only the data type and
//! that a value is present (SQS developer guide, sqs-message-metadata.html, "Message attribute
//! components"; API reference, MessageAttributeValue):
//! - at most 10 attributes;
//! - a name of at most 256 characters among `A-Z a-z 0-9 _ - .`, not starting with `AWS.` or
//!   `Amazon.` in any case, not starting or ending with a period, no two periods in a row;
//! - a data type `String`, `Number` or `Binary`, optionally with a custom label after a period,
//!   at most 256 characters;
//! - `String` and `Number` need a `StringValue`, `Binary` a `BinaryValue`; the list values are
//!   "not implemented, reserved for future use";
//! - every part of every attribute counts towards the message's size limit, with the body.
//!
//! A value that is not such an object cannot become a `SendMessage` call, and one SQS would
//! refuse is refused before the call; either way API Gateway answers the client 500, as for any
//! failure of the service call (see `service_failure` in [`super::integration`]).

use std::collections::BTreeMap;
use std::collections::HashMap;

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::MessageAttributeValue;
use base64::Engine as _;
use serde::Deserialize;

/// The most attributes one message may have.
pub const MAX_ATTRIBUTES: usize = 10;

/// The longest attribute name and data type, in characters.
pub const MAX_NAME_CHARS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Attribute {
    data_type: String,
    #[serde(default)]
    string_value: Option<String>,
    #[serde(default)]
    binary_value: Option<String>,
    #[serde(default)]
    string_list_values: Option<Vec<String>>,
    #[serde(default)]
    binary_list_values: Option<Vec<String>>,
}

/// The attributes, ready for the SDK, and how many bytes they add to the message.
#[derive(Debug, Clone)]
pub struct Attributes {
    /// By name.
    pub values: HashMap<String, MessageAttributeValue>,
    /// Names, types and values, in bytes.
    pub bytes: usize,
}

/// Why the parameter cannot be sent: not the API's shape, or what SQS would refuse (its code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Not a JSON object of `SendMessage`'s attribute shape.
    #[error("MessageAttributes is not SendMessage's JSON shape: {0}")]
    Shape(String),
    /// SQS would refuse it (`InvalidParameterValue`), for this reason.
    #[error("SQS refused the message attributes: InvalidParameterValue: {0}")]
    Refused(String),
}

fn name_refusal(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        Some(format!(
            "the message attribute name '{name}' must have 1 to {MAX_NAME_CHARS} characters"
        ))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Some(format!(
            "the message attribute name '{name}' has characters other than A-Z, a-z, 0-9, '_', '-' and '.'"
        ))
    } else if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        Some(format!(
            "the message attribute name '{name}' starts with a prefix reserved for AWS"
        ))
    } else if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        Some(format!(
            "the message attribute name '{name}' starts or ends with a period or has two in a row"
        ))
    } else {
        None
    }
}

/// Reads `text` (the parameter after substitution).
pub fn read(text: &str) -> Result<Attributes, Invalid> {
    let parsed: BTreeMap<String, Attribute> =
        serde_json::from_str(text).map_err(|e| Invalid::Shape(e.to_string()))?;
    if parsed.len() > MAX_ATTRIBUTES {
        return Err(Invalid::Refused(format!(
            "a message can have at most {MAX_ATTRIBUTES} attributes, not {}",
            parsed.len()
        )));
    }
    let mut values = HashMap::new();
    let mut bytes = 0;
    for (name, attribute) in parsed {
        if let Some(reason) = name_refusal(&name) {
            return Err(Invalid::Refused(reason));
        }
        let kind = attribute.data_type.split('.').next().unwrap_or_default();
        if attribute.data_type.chars().count() > MAX_NAME_CHARS {
            return Err(Invalid::Refused(format!(
                "the data type of '{name}' is longer than {MAX_NAME_CHARS} characters"
            )));
        }
        if attribute.string_list_values.is_some() || attribute.binary_list_values.is_some() {
            return Err(Invalid::Refused(format!(
                "'{name}': StringListValues and BinaryListValues are not implemented"
            )));
        }
        let mut value = MessageAttributeValue::builder().data_type(&attribute.data_type);
        bytes += name.len() + attribute.data_type.len();
        match (kind, attribute.string_value, attribute.binary_value) {
            ("String" | "Number", Some(text), None) if !text.is_empty() => {
                bytes += text.len();
                value = value.string_value(text);
            }
            ("Binary", None, Some(encoded)) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_bytes())
                    .map_err(|e| {
                        Invalid::Shape(format!("'{name}': BinaryValue is not base64: {e}"))
                    })?;
                if decoded.is_empty() {
                    return Err(Invalid::Refused(format!("'{name}' has an empty value")));
                }
                bytes += decoded.len();
                value = value.binary_value(Blob::new(decoded));
            }
            ("String" | "Number" | "Binary", _, _) => {
                return Err(Invalid::Refused(format!(
                    "'{name}' of type {} must have exactly one non-empty value of its type",
                    attribute.data_type
                )));
            }
            _ => {
                return Err(Invalid::Refused(format!(
                    "'{name}' has the type {}; the supported types are String, Number and Binary",
                    attribute.data_type
                )));
            }
        }
        let value = value
            .build()
            .map_err(|e| Invalid::Shape(format!("'{name}': {e}")))?;
        values.insert(name, value);
    }
    Ok(Attributes { values, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_attribute_in_sendmessages_shape_is_read_with_its_size() {
        let read =
            read(r#"{"apiRequestId":{"DataType":"String","StringValue":"Kx1aBcDeFgHiJkLm"}}"#)
                .expect("attributes");
        let value = &read.values["apiRequestId"];
        assert_eq!(value.data_type(), "String");
        assert_eq!(value.string_value(), Some("Kx1aBcDeFgHiJkLm"));
        assert_eq!(read.bytes, "apiRequestId".len() + "String".len() + 16);
    }

    #[test]
    fn numbers_binaries_and_custom_labels_are_sqs_types() {
        let read = read(
            r#"{"n":{"DataType":"Number.int","StringValue":"7"},"b":{"DataType":"Binary","BinaryValue":"AAE="}}"#,
        )
        .expect("attributes");
        assert_eq!(
            read.values["b"].binary_value().map(|b| b.as_ref().to_vec()),
            Some(vec![0, 1])
        );
        assert_eq!(read.values["n"].data_type(), "Number.int");
    }

    #[test]
    fn what_is_not_the_apis_shape_or_what_sqs_refuses_is_named() {
        for (text, shape) in [
            ("not json", true),
            (r#"["a"]"#, true),
            (
                r#"{"a":{"DataType":"String","StringValue":"x","Extra":1}}"#,
                true,
            ),
            (r#"{"a":{"DataType":"Binary","BinaryValue":"%%"}}"#, true),
            (
                r#"{"AWS.x":{"DataType":"String","StringValue":"x"}}"#,
                false,
            ),
            (r#"{"a..b":{"DataType":"String","StringValue":"x"}}"#, false),
            (r#"{"a b":{"DataType":"String","StringValue":"x"}}"#, false),
            (r#"{"a":{"DataType":"String","StringValue":""}}"#, false),
            (r#"{"a":{"DataType":"String"}}"#, false),
            (r#"{"a":{"DataType":"Json","StringValue":"x"}}"#, false),
            (
                r#"{"a":{"DataType":"String","StringListValues":["x"]}}"#,
                false,
            ),
        ] {
            let error = read(text).expect_err(text);
            assert_eq!(matches!(error, Invalid::Shape(_)), shape, "{text}: {error}");
        }
        let eleven: BTreeMap<String, serde_json::Value> = (0..11)
            .map(|i| {
                (
                    format!("a{i}"),
                    serde_json::json!({"DataType": "String", "StringValue": "x"}),
                )
            })
            .collect();
        let text = serde_json::to_string(&eleven).expect("json");
        assert!(matches!(read(&text), Err(Invalid::Refused(_))));
    }
}
