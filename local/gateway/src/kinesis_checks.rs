//! What Kinesis checks in `PutRecord` and moto does not: the record's size and its partition key.
//! The gateway makes both checks before it calls moto, so a local run refuses what AWS would.
//!
//! - Size: the data blob plus the partition key may be at most 1 MiB (1,048,576 bytes) by default
//!   (Kinesis developer guide, service-sizes-and-limits.html; a stream can be raised to 10 MiB with
//!   `UpdateMaxRecordSize` since 2025-10, which the templates here do not do). The API's own
//!   constraint on `Data` is `ValidationException` "Member must have length less than or equal to
//!   1048576"; the wording for data under 1 MiB whose key takes it over is not documented.
//! - Partition key: 1 to 256 Unicode characters (Kinesis API reference, PutRecord).

/// The most bytes a record (data plus partition key) may have.
pub const MAX_RECORD_BYTES: usize = 1_048_576;

/// The most characters a partition key may have.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Why Kinesis would refuse a record: its error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `ValidationException` or `InvalidArgumentException`.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// `Some` when Kinesis would refuse a record of `data` under `partition_key`.
pub fn refusal(data: &[u8], partition_key: &str) -> Option<Refusal> {
    let key_chars = partition_key.chars().count();
    if key_chars == 0 || key_chars > MAX_PARTITION_KEY_CHARS {
        return Some(Refusal {
            code: "ValidationException",
            message: format!(
                "1 validation error detected: Value at 'partitionKey' failed to satisfy constraint: Member must have length between 1 and {MAX_PARTITION_KEY_CHARS}"
            ),
        });
    }
    if data.len() > MAX_RECORD_BYTES {
        return Some(Refusal {
            code: "ValidationException",
            message: format!(
                "1 validation error detected: Value at 'data' failed to satisfy constraint: Member must have length less than or equal to {MAX_RECORD_BYTES}"
            ),
        });
    }
    if data.len() + partition_key.len() > MAX_RECORD_BYTES {
        return Some(Refusal {
            code: "InvalidArgumentException",
            message: format!(
                "The record's data and partition key together exceed {MAX_RECORD_BYTES} bytes"
            ),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_up_to_a_mebibyte_with_their_key_pass_and_larger_ones_are_refused() {
        let key = "k";
        assert_eq!(refusal(&vec![0; MAX_RECORD_BYTES - 1], key), None);
        assert_eq!(
            refusal(&vec![0; MAX_RECORD_BYTES], key).map(|r| r.code),
            Some("InvalidArgumentException")
        );
        assert_eq!(
            refusal(&vec![0; MAX_RECORD_BYTES + 1], key).map(|r| r.code),
            Some("ValidationException")
        );
    }

    #[test]
    fn partition_keys_have_one_to_256_characters() {
        assert!(refusal(b"x", "").is_some());
        assert!(
            refusal(b"x", &"é".repeat(256)).is_none(),
            "characters, not bytes"
        );
        assert!(refusal(b"x", &"a".repeat(257)).is_some());
    }
}
