//! The replay envelope: how a failed record put back on the stream keeps its original sequence
//! number.
//!
//! Kinesis gives every `PutRecord` a new sequence number, higher than any record already in the
//! shard. A failed record re-put as it was would therefore win the consumer's per-key sequence
//! guard against every newer update of its key written meanwhile. So `kinesis-recover --replay
//! stream` puts a record's data inside an envelope, as one JSON object with one member:
//!
//! ```json
//! {"kinesisRecoverReplay": {"version": 1, "sequenceNumber": "<original>", "shardId": "<original shard>",
//!   "approximateArrivalTimestamp": 1795325400.5, "payload": <the original JSON>}}
//! ```
//!
//! (`"data": "<base64>"` instead of `payload` when the original bytes are not JSON.) The
//! consumer recognises the envelope, guards the write with the **original** sequence number and
//! stores the original payload, noting the replay's own sequence number as
//! `replaySequenceNumber`.
//!
//! Anyone who can put records can write an envelope, so the consumer trusts one only to make a
//! record *older*: the original sequence number must be lower than the envelope record's own
//! (true of every genuine replay, which is put after its original). A forged envelope can then
//! only lose against newer data, never freeze a key with a sequence number from the future.

use base64::Engine as _;
use batch_consumer::kinesis::SequenceNumber;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The one member of an envelope object.
pub const ENVELOPE_MEMBER: &str = "kinesisRecoverReplay";

/// The version of the envelope written here.
pub const VERSION: u32 = 1;

/// What an envelope holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Replayed {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// The original record's sequence number.
    pub sequence_number: String,
    /// The original record's shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_id: Option<String>,
    /// When the original reached the stream, in seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_arrival_timestamp: Option<f64>,
    /// The original data, when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The original data in base64, when it is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// Why an envelope cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// The envelope's member does not have the envelope's shape.
    #[error("replay envelope is malformed")]
    Malformed(#[source] serde_json::Error),
    /// A version this consumer does not know.
    #[error("replay envelope version {0} is not supported")]
    Version(u32),
    /// The original sequence number is not a sequence number.
    #[error("replay envelope has an invalid sequence number")]
    BadSequence,
    /// The original is not older than the record carrying it: not a genuine replay.
    #[error("replay envelope claims sequence number {claimed}, not older than its own {own}")]
    NotOlder {
        /// What the envelope claims.
        claimed: String,
        /// The carrying record's sequence number.
        own: String,
    },
    /// Neither `payload` nor `data`, or `data` that is not base64.
    #[error("replay envelope carries no readable data")]
    NoData,
    /// The original data is not JSON.
    #[error("replayed payload is not JSON")]
    NotJson(#[source] serde_json::Error),
}

impl Replayed {
    /// The envelope for an original record (`data` as it was on the stream).
    pub fn new(
        sequence_number: &str,
        shard_id: Option<&str>,
        approximate_arrival_timestamp: Option<f64>,
        data: &[u8],
    ) -> Self {
        let (payload, data) = match serde_json::from_slice::<Value>(data) {
            Ok(payload) => (Some(payload), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ),
        };
        Self {
            version: VERSION,
            sequence_number: sequence_number.to_owned(),
            shard_id: shard_id.map(str::to_owned),
            approximate_arrival_timestamp,
            payload,
            data,
        }
    }

    /// The bytes to put on the stream.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut envelope = serde_json::Map::new();
        envelope.insert(
            ENVELOPE_MEMBER.to_owned(),
            serde_json::to_value(self).unwrap_or(Value::Null),
        );
        Value::Object(envelope).to_string().into_bytes()
    }

    /// The envelope inside `payload`, if `payload` is one: an object whose only member is
    /// [`ENVELOPE_MEMBER`].
    pub fn from_payload(payload: &Value) -> Option<Result<Self, EnvelopeError>> {
        let object = payload.as_object()?;
        if object.len() != 1 {
            return None;
        }
        let inner = object.get(ENVELOPE_MEMBER)?;
        Some(
            serde_json::from_value::<Self>(inner.clone())
                .map_err(EnvelopeError::Malformed)
                .and_then(|r| {
                    if r.version == VERSION {
                        Ok(r)
                    } else {
                        Err(EnvelopeError::Version(r.version))
                    }
                }),
        )
    }

    /// The envelope in `data` (a record's bytes), if it holds one.
    pub fn from_bytes(data: &[u8]) -> Option<Result<Self, EnvelopeError>> {
        Self::from_payload(&serde_json::from_slice(data).ok()?)
    }

    /// The original sequence number, checked to be older than `own` (the carrying record's).
    pub fn original_sequence(&self, own: &SequenceNumber) -> Result<SequenceNumber, EnvelopeError> {
        let original =
            SequenceNumber::parse(&self.sequence_number).ok_or(EnvelopeError::BadSequence)?;
        if original >= *own {
            return Err(EnvelopeError::NotOlder {
                claimed: original.to_string(),
                own: own.to_string(),
            });
        }
        Ok(original)
    }

    /// The original payload, as JSON.
    pub fn original_payload(&self) -> Result<Value, EnvelopeError> {
        match (&self.payload, &self.data) {
            (Some(payload), _) => Ok(payload.clone()),
            (None, Some(data)) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|_| EnvelopeError::NoData)?;
                serde_json::from_slice(&bytes).map_err(EnvelopeError::NotJson)
            }
            (None, None) => Err(EnvelopeError::NoData),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_envelope_round_trips_json_and_other_bytes() {
        let json_record =
            Replayed::new("42", Some("shardId-000000000000"), Some(1.5), br#"{"v":1}"#);
        let back = Replayed::from_bytes(&json_record.to_bytes())
            .expect("an envelope")
            .expect("valid");
        assert_eq!(back, json_record);
        assert_eq!(back.original_payload().expect("json"), json!({"v": 1}));

        let other = Replayed::new("42", None, None, b"not json");
        let back = Replayed::from_bytes(&other.to_bytes())
            .expect("an envelope")
            .expect("valid");
        assert_eq!(back.data.as_deref(), Some("bm90IGpzb24="));
        assert!(matches!(
            back.original_payload(),
            Err(EnvelopeError::NotJson(_))
        ));
    }

    #[test]
    fn only_an_object_with_the_one_member_is_an_envelope() {
        assert!(Replayed::from_payload(&json!({"v": 1})).is_none());
        assert!(Replayed::from_payload(&json!([1])).is_none());
        assert!(
            Replayed::from_payload(&json!({ENVELOPE_MEMBER: {}, "other": 1})).is_none(),
            "a client object with more members is the client's"
        );
        assert!(matches!(
            Replayed::from_payload(&json!({ENVELOPE_MEMBER: {"version": 1}})),
            Some(Err(EnvelopeError::Malformed(_)))
        ));
        assert!(matches!(
            Replayed::from_payload(
                &json!({ENVELOPE_MEMBER: {"version": 2, "sequenceNumber": "1", "payload": {}}})
            ),
            Some(Err(EnvelopeError::Version(2)))
        ));
    }

    #[test]
    fn an_envelope_may_only_make_a_record_older() {
        let own = SequenceNumber::parse("100").expect("seq");
        let older = Replayed::new("99", None, None, b"{}");
        assert_eq!(older.original_sequence(&own).expect("older").as_str(), "99");
        for claimed in ["100", "101", "1".repeat(120).as_str()] {
            assert!(matches!(
                Replayed::new(claimed, None, None, b"{}").original_sequence(&own),
                Err(EnvelopeError::NotOlder { .. })
            ));
        }
        assert!(matches!(
            Replayed::new("x1", None, None, b"{}").original_sequence(&own),
            Err(EnvelopeError::BadSequence)
        ));
    }
}
