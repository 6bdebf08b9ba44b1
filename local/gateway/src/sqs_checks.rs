//! What SQS checks in `SendMessage` and moto does not: the message's character set and its size
//! in bytes. The gateway makes both checks before it calls moto, so a local run refuses what AWS
//! would refuse, where AWS refuses it (the integration's call to SQS), instead of queueing it.
//!
//! - Characters: "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF";
//!   anything else is `InvalidMessageContents` (SQS API reference, SendMessage, MessageBody).
//! - Size: at most 1 MiB (1,048,576 bytes) since August 2025 (SQS developer guide,
//!   quotas-messages.html); more is `InvalidParameterValue`. The exact wording of AWS's messages
//!   is not documented; the ones below say the same thing.

/// The most bytes a message body may have.
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// Why SQS would refuse a message body: its error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `InvalidMessageContents` or `InvalidParameterValue`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

fn allowed(c: char) -> bool {
    matches!(c as u32,
        0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// `Some` when SQS would refuse `body`.
pub fn refusal(body: &str) -> Option<Refusal> {
    if let Some(c) = body.chars().find(|c| !allowed(*c)) {
        return Some(Refusal {
            code: "InvalidMessageContents",
            message: format!(
                "Invalid binary character '#x{:X}' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF",
                c as u32
            ),
        });
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Some(Refusal {
            code: "InvalidParameterValue",
            message: format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {MAX_MESSAGE_BYTES} bytes."
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_json_and_every_allowed_plane_pass() {
        for body in [
            "{\"a\": 1}",
            "tab\tnew\nline\r",
            "é中😀",
            "\u{D7FF}\u{E000}\u{FFFD}",
        ] {
            assert_eq!(refusal(body), None, "{body:?}");
        }
    }

    #[test]
    fn characters_sqs_forbids_are_refused_by_code_point() {
        for (body, point) in [
            ("a\u{0}b", "#x0"),
            ("\u{1F}", "#x1F"),
            ("x\u{FFFE}", "#xFFFE"),
        ] {
            let refused = refusal(body).expect("refused");
            assert_eq!(refused.code, "InvalidMessageContents");
            assert!(refused.message.contains(point), "{}", refused.message);
        }
    }

    #[test]
    fn size_counts_bytes_not_characters() {
        // 524,289 two-byte characters: fewer characters than the limit, more bytes.
        let body = "é".repeat(MAX_MESSAGE_BYTES / 2 + 1);
        assert!(body.chars().count() < MAX_MESSAGE_BYTES);
        assert_eq!(
            refusal(&body).map(|r| r.code),
            Some("InvalidParameterValue")
        );
        assert_eq!(refusal(&"a".repeat(MAX_MESSAGE_BYTES)), None);
    }
}
