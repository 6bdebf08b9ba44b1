//! Template properties read into typed structs once, at start-up, with every property the gateway
//! does not use reported: a known one it does not emulate (access logs, throttling) at info level,
//! an unknown one as a warning, so nothing a template says is ignored in silence.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Reads `props` (resolved) into `T`.
pub fn read<T: DeserializeOwned>(resource: &str, props: &Value) -> Result<T> {
    let props = if props.is_null() {
        Value::Object(Default::default())
    } else {
        props.clone()
    };
    serde_json::from_value(props).map_err(|e| anyhow!("{resource}: {e}"))
}

/// Reports the properties left in `rest`: those in `not_emulated` are known and have no local
/// effect, any other is not understood by the gateway.
pub fn report(resource: &str, rest: &BTreeMap<String, Value>, not_emulated: &[&str]) {
    let (known, unknown): (Vec<&String>, Vec<&String>) = rest
        .keys()
        .partition(|k| not_emulated.contains(&k.as_str()));
    if !known.is_empty() {
        tracing::info!(resource, properties = ?known, "properties with no local effect");
    }
    if !unknown.is_empty() {
        tracing::warn!(resource, properties = ?unknown, "properties the local gateway does not serve");
    }
}

/// A scalar (string, number or boolean) as text, as CloudFormation passes them.
pub fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = Value::deserialize(d)?;
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a scalar, found {other}"
        ))),
    }
}

/// An optional scalar as text.
pub fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a scalar, found {other}"
        ))),
    }
}

/// A map of scalars as text.
pub fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = Option::<BTreeMap<String, Value>>::deserialize(d)?.unwrap_or_default();
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(n) => Ok((k, n.to_string())),
            Value::Bool(b) => Ok((k, b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "{k}: expected a scalar, found {other}"
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Sample {
        #[serde(deserialize_with = "scalar")]
        name: String,
        #[serde(default, deserialize_with = "opt_scalar")]
        ttl: Option<String>,
        #[serde(default, deserialize_with = "scalar_map")]
        params: BTreeMap<String, String>,
        #[serde(flatten)]
        rest: BTreeMap<String, Value>,
    }

    #[test]
    fn scalars_of_any_kind_read_as_text_and_the_rest_is_kept_for_the_report() {
        let sample: Sample = read(
            "R",
            &json!({"Name": 7, "Ttl": true, "Params": {"a": 1}, "Other": [1]}),
        )
        .expect("read");
        assert_eq!(sample.name, "7");
        assert_eq!(sample.ttl.as_deref(), Some("true"));
        assert_eq!(sample.params["a"], "1");
        assert_eq!(sample.rest.keys().collect::<Vec<_>>(), ["Other"]);
        assert!(read::<Sample>("R", &json!({"Name": {"x": 1}})).is_err());
        assert!(read::<Sample>("R", &json!({})).is_err(), "Name is required");
    }
}
