//! The record of a provisioned stack, so that a restarted gateway serves the same stack: the
//! same queues, tables, streams, secrets (and their values), function names and API ids, and so
//! the same `stack.json`, as a CloudFormation stack stays what it is while its control plane
//! restarts.
//!
//! After a start the gateway writes `resources.json` into its state folder
//! ([`crate::durable::state_dir`]). The next start with the same key (stack name, template,
//! endpoint, region, overrides) resumes from it if the emulator still holds what it names
//! ([`resume_or_wipe`]); otherwise the folder is wiped and the stack provisioned anew.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::{Clients, Delivery, Stack};
use crate::cfn::Physical;
use crate::sigv4::SigningKey;

/// What makes two starts the same stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordKey {
    /// `--stack-name`.
    pub stack_name: String,
    /// The root template, canonical.
    pub template: PathBuf,
    /// The emulator's endpoint.
    pub endpoint: String,
    /// The region.
    pub region: String,
    /// The parameter overrides.
    pub overrides: BTreeMap<String, String>,
}

impl RecordKey {
    /// The key of a start with these options; the template path is made canonical, so a
    /// relative and an absolute path to one template are one stack.
    pub fn new(
        template: &Path,
        stack_name: &str,
        endpoint: &str,
        region: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self> {
        Ok(Self {
            stack_name: stack_name.to_owned(),
            template: std::fs::canonicalize(template)
                .with_context(|| format!("cannot find {}", template.display()))?,
            endpoint: endpoint.to_owned(),
            region: region.to_owned(),
            overrides: overrides.clone(),
        })
    }
}

/// What provisioning produced for one stack (the root or a nested one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackState {
    /// Physical resources by logical id.
    pub resources: BTreeMap<String, Physical>,
    /// Generated secret values by logical id.
    pub secret_values: BTreeMap<String, String>,
    /// Resolved outputs.
    pub outputs: BTreeMap<String, String>,
    /// Rule targets the gateway delivers.
    pub deliveries: Vec<Delivery>,
}

/// The whole record of one start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackRecord {
    /// Which start this was.
    pub key: RecordKey,
    /// Every stack by its path (`""` for the root).
    pub stacks: BTreeMap<String, StackState>,
    /// The key requests to `AWS_IAM` APIs are signed with.
    pub signing: Option<SigningKey>,
    /// The ports the servers listened on, by server (API id, or `lambda`).
    pub ports: BTreeMap<String, u16>,
}

impl StackRecord {
    /// The record of `stacks`, provisioned under `key`.
    pub fn of(key: RecordKey, stacks: &[Stack]) -> Self {
        Self {
            key,
            stacks: stacks
                .iter()
                .map(|stack| {
                    (
                        stack.path.clone(),
                        StackState {
                            resources: stack.scope.resources.clone(),
                            secret_values: stack.secret_values.clone(),
                            outputs: stack.outputs.clone(),
                            deliveries: stack.deliveries.clone(),
                        },
                    )
                })
                .collect(),
            signing: None,
            ports: BTreeMap::new(),
        }
    }

    /// The port `server` listened on last time, if any.
    pub fn port(&self, server: &str) -> Option<u16> {
        self.ports.get(server).copied()
    }
}

/// Where the record lives in the state folder `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("resources.json")
}

/// Writes the record into the state folder `dir` (private: it holds secret values).
pub fn save(dir: &Path, record: &StackRecord) -> Result<()> {
    crate::durable::write_json(&path(dir), record)
}

/// The previous start's record, if it was a start with `key` and the emulator still holds its
/// queues, tables and streams. Otherwise the state folder `dir` is wiped (its checkpoints and
/// queued events belonged to resources that are gone), and `None` says: provision anew.
pub async fn resume_or_wipe(
    dir: &Path,
    key: &RecordKey,
    clients: &Clients,
) -> Result<Option<StackRecord>> {
    let previous = match crate::durable::read_json::<StackRecord>(&path(dir)) {
        Ok(previous) => previous,
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "the record of the previous stack is unreadable; provisioning anew");
            None
        }
    };
    let reason = match &previous {
        None => None,
        Some(record) if record.key != *key => Some("it was provisioned with other options"),
        Some(record) => match probe(record, clients).await {
            Ok(()) => return Ok(previous),
            Err(error) => {
                tracing::info!(error = %format!("{error:#}"), "the emulator no longer holds the previous stack");
                Some("the emulator no longer holds its resources")
            }
        },
    };
    if let Some(reason) = reason {
        tracing::info!(reason, "provisioning anew, not resuming the previous stack");
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot wipe {}", dir.display())),
    }
}

/// Asks the emulator for every queue, table and stream of `record`: an error names the first
/// one it does not hold.
async fn probe(record: &StackRecord, clients: &Clients) -> Result<()> {
    for state in record.stacks.values() {
        for delivery in &state.deliveries {
            probe_queue(clients, &delivery.queue_url).await?;
        }
        for (logical, physical) in &state.resources {
            let arn = physical
                .attributes
                .get("Arn")
                .map(String::as_str)
                .unwrap_or_default();
            if let Some(url) = physical.attributes.get("QueueUrl") {
                probe_queue(clients, url).await?;
            } else if arn.starts_with("arn:aws:dynamodb:") {
                clients
                    .dynamodb
                    .describe_table()
                    .table_name(&physical.reference)
                    .send()
                    .await
                    .map_err(aws_sdk_dynamodb::Error::from)
                    .with_context(|| format!("table {logical}"))?;
            } else if arn.starts_with("arn:aws:kinesis:") {
                clients
                    .kinesis
                    .describe_stream_summary()
                    .stream_name(&physical.reference)
                    .send()
                    .await
                    .map_err(aws_sdk_kinesis::Error::from)
                    .with_context(|| format!("stream {logical}"))?;
            }
        }
    }
    Ok(())
}

async fn probe_queue(clients: &Clients, url: &str) -> Result<()> {
    clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)
        .with_context(|| format!("queue {url}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_its_file() {
        let dir = std::env::temp_dir().join(format!("record-{}", uuid::Uuid::new_v4()));
        let queue = Physical {
            reference: "http://moto/123/q".into(),
            attributes: [
                ("Arn".to_owned(), "arn:aws:sqs:us-east-1:123:q".to_owned()),
                ("QueueUrl".to_owned(), "http://moto/123/q".to_owned()),
            ]
            .into_iter()
            .collect(),
        };
        let record = StackRecord {
            key: RecordKey {
                stack_name: "s".into(),
                template: "/t/template.yaml".into(),
                endpoint: "http://127.0.0.1:5000".into(),
                region: "us-east-1".into(),
                overrides: [("A".to_owned(), "1".to_owned())].into_iter().collect(),
            },
            stacks: [(
                String::new(),
                StackState {
                    resources: [("Queue".to_owned(), queue)].into_iter().collect(),
                    secret_values: [("Secret".to_owned(), "{\"password\":\"p\"}".to_owned())]
                        .into_iter()
                        .collect(),
                    outputs: [("Url".to_owned(), "u".to_owned())].into_iter().collect(),
                    deliveries: vec![Delivery {
                        queue_url: "http://moto/123/d".into(),
                        function_arn: "arn:aws:lambda:us-east-1:123:function:f".into(),
                    }],
                },
            )]
            .into_iter()
            .collect(),
            signing: Some(SigningKey {
                access_key_id: "AKIALOCAL".into(),
                secret_access_key: "secret".into(),
            }),
            ports: [("lambda".to_owned(), 3100)].into_iter().collect(),
        };
        save(&dir, &record).expect("save");
        let back: Option<StackRecord> = crate::durable::read_json(&path(&dir)).expect("read");
        assert_eq!(back.as_ref(), Some(&record));
        assert_eq!(record.port("lambda"), Some(3100));
        let _ = std::fs::remove_dir_all(dir);
    }
}
