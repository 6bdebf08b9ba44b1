//! Creating the data-plane resources in moto: buckets, queues, tables, streams, event buses and
//! their archives and rules, secrets (with generated secret strings).

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use super::{Clients, Delivery, fit};
use crate::cfn::{Physical, scalar_to_string};

/// A bucket in moto: `BucketName`, or a generated name made valid for S3 (lower case, at most
/// 63 characters). Encryption, lifecycle and public-access settings are AWS's business; the
/// templates' checks (cfn-lint, checkov) hold them.
pub(super) async fn create_bucket(
    clients: &Clients,
    name: &str,
    props: &Value,
    region: &str,
) -> Result<Physical> {
    let bucket = props
        .get("BucketName")
        .map(scalar_to_string)
        .unwrap_or_else(|| fit(name, 63).to_ascii_lowercase());
    let mut create = clients.s3.create_bucket().bucket(&bucket);
    if region != "us-east-1" {
        create = create.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    create
        .send()
        .await
        .with_context(|| format!("cannot create bucket {bucket}"))?;
    Ok(Physical {
        attributes: [
            ("Arn".to_owned(), format!("arn:aws:s3:::{bucket}")),
            (
                "DomainName".to_owned(),
                format!("{bucket}.s3.amazonaws.com"),
            ),
        ]
        .into_iter()
        .collect(),
        reference: bucket,
    })
}

pub(super) async fn create_queue(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
    let fifo = props.get("FifoQueue").map(scalar_to_string).as_deref() == Some("true");
    let name = match props.get("QueueName") {
        Some(explicit) => scalar_to_string(explicit),
        None if fifo => format!("{name}.fifo"),
        None => fit(name, 80),
    };
    let mut request = clients.sqs.create_queue().queue_name(&name);
    for (property, attribute) in [
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        (
            "MessageRetentionPeriod",
            QueueAttributeName::MessageRetentionPeriod,
        ),
        ("DelaySeconds", QueueAttributeName::DelaySeconds),
        ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
        (
            "ReceiveMessageWaitTimeSeconds",
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        ),
        ("FifoQueue", QueueAttributeName::FifoQueue),
        (
            "ContentBasedDeduplication",
            QueueAttributeName::ContentBasedDeduplication,
        ),
    ] {
        if let Some(value) = props.get(property) {
            request = request.attributes(attribute, scalar_to_string(value));
        }
    }
    if let Some(redrive) = props.get("RedrivePolicy") {
        let target = redrive
            .get("deadLetterTargetArn")
            .map(scalar_to_string)
            .ok_or_else(|| anyhow!("RedrivePolicy needs deadLetterTargetArn"))?;
        let max: u64 = redrive
            .get("maxReceiveCount")
            .map(scalar_to_string)
            .unwrap_or_default()
            .parse()
            .map_err(|_| anyhow!("RedrivePolicy.maxReceiveCount must be a number"))?;
        let policy = serde_json::json!({ "deadLetterTargetArn": target, "maxReceiveCount": max });
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let url = request
        .send()
        .await?
        .queue_url
        .ok_or_else(|| anyhow!("CreateQueue returned no URL"))?;
    let arn = queue_arn(clients, &url).await?;
    Ok(Physical {
        reference: url.clone(),
        attributes: [
            ("Arn".to_owned(), arn),
            ("QueueName".to_owned(), name),
            ("QueueUrl".to_owned(), url),
        ]
        .into_iter()
        .collect(),
    })
}

/// The ARN of the queue at `url`.
pub(super) async fn queue_arn(clients: &Clients, url: &str) -> Result<String> {
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| anyhow!("queue {url} has no ARN"))
}

pub(super) fn key_schema(items: Option<&Value>) -> Result<Vec<KeySchemaElement>> {
    items
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("KeySchema is required"))?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(
                    k.get("AttributeName")
                        .map(scalar_to_string)
                        .unwrap_or_default(),
                )
                .key_type(KeyType::from(
                    k.get("KeyType")
                        .map(scalar_to_string)
                        .unwrap_or_default()
                        .as_str(),
                ))
                .build()?)
        })
        .collect()
}

pub(super) async fn create_table(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
    let name = props
        .get("TableName")
        .map(scalar_to_string)
        .unwrap_or_else(|| name.to_owned());
    let mut request = clients
        .dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(props.get("KeySchema"))?));
    for def in props
        .get("AttributeDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(
                    def.get("AttributeName")
                        .map(scalar_to_string)
                        .unwrap_or_default(),
                )
                .attribute_type(ScalarAttributeType::from(
                    def.get("AttributeType")
                        .map(scalar_to_string)
                        .unwrap_or_default()
                        .as_str(),
                ))
                .build()?,
        );
    }
    for gsi in props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let projection = gsi.get("Projection");
        let mut p = Projection::builder().projection_type(ProjectionType::from(
            projection
                .and_then(|p| p.get("ProjectionType"))
                .map(scalar_to_string)
                .unwrap_or_else(|| "ALL".into())
                .as_str(),
        ));
        for attr in projection
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            p = p.non_key_attributes(scalar_to_string(attr));
        }
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(
                    gsi.get("IndexName")
                        .map(scalar_to_string)
                        .unwrap_or_default(),
                )
                .set_key_schema(Some(key_schema(gsi.get("KeySchema"))?))
                .projection(p.build())
                .build()?,
        );
    }
    let out = request.send().await?;
    let arn = out
        .table_description()
        .and_then(|d| d.table_arn())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "arn:aws:dynamodb:us-east-1:{}:table/{name}",
                crate::ACCOUNT_ID
            )
        });
    Ok(Physical {
        reference: name,
        attributes: [("Arn".to_owned(), arn)].into_iter().collect(),
    })
}

pub(super) async fn create_stream(
    clients: &Clients,
    name: &str,
    props: &Value,
    region: &str,
) -> Result<Physical> {
    use aws_sdk_kinesis::types::{StreamMode, StreamModeDetails};
    let name = props
        .get("Name")
        .map(scalar_to_string)
        .unwrap_or_else(|| name.to_owned());
    let mode = props
        .pointer("/StreamModeDetails/StreamMode")
        .map(scalar_to_string)
        .unwrap_or_else(|| "PROVISIONED".into());
    let mut request = clients.kinesis.create_stream().stream_name(&name);
    if mode == "ON_DEMAND" {
        request = request.stream_mode_details(
            StreamModeDetails::builder()
                .stream_mode(StreamMode::OnDemand)
                .build()?,
        );
    } else {
        let shards: i32 = props
            .get("ShardCount")
            .map(scalar_to_string)
            .unwrap_or_else(|| "1".into())
            .parse()
            .map_err(|_| anyhow!("ShardCount must be a number"))?;
        request = request.shard_count(shards);
    }
    request.send().await?;
    if let Some(key) = props.pointer("/StreamEncryption/KeyId") {
        // Server-side encryption as declared, so PutRecord answers EncryptionType KMS as in AWS.
        let result = clients
            .kinesis
            .start_stream_encryption()
            .stream_name(&name)
            .encryption_type(aws_sdk_kinesis::types::EncryptionType::Kms)
            .key_id(scalar_to_string(key))
            .send()
            .await;
        if let Err(error) = result {
            tracing::warn!(stream = %name, error = %aws_sdk_kinesis::error::DisplayErrorContext(&error), "the emulator did not enable stream encryption");
        }
    }
    // CloudFormation returns once the stream is ACTIVE; so does this.
    for _ in 0..100 {
        let summary = clients
            .kinesis
            .describe_stream_summary()
            .stream_name(&name)
            .send()
            .await?;
        let description = summary
            .stream_description_summary()
            .ok_or_else(|| anyhow!("stream {name} has no description"))?;
        if description.stream_status().as_str() == "ACTIVE" {
            let arn = description.stream_arn().to_owned();
            return Ok(Physical {
                reference: name,
                attributes: [("Arn".to_owned(), arn)].into_iter().collect(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("stream {name} did not become ACTIVE in {region}")
}

pub(super) async fn create_bus(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
    let name = props
        .get("Name")
        .map(scalar_to_string)
        .unwrap_or_else(|| name.to_owned());
    let out = clients.events.create_event_bus().name(&name).send().await?;
    let arn = out
        .event_bus_arn
        .ok_or_else(|| anyhow!("CreateEventBus returned no ARN"))?;
    Ok(Physical {
        reference: name.clone(),
        attributes: [("Arn".to_owned(), arn), ("Name".to_owned(), name)]
            .into_iter()
            .collect(),
    })
}

pub(super) async fn create_archive(
    clients: &Clients,
    name: &str,
    props: &Value,
) -> Result<Physical> {
    let name = props
        .get("ArchiveName")
        .map(scalar_to_string)
        .unwrap_or_else(|| fit(name, 48));
    let source = props
        .get("SourceArn")
        .map(scalar_to_string)
        .ok_or_else(|| anyhow!("Archive needs SourceArn"))?;
    let mut request = clients
        .events
        .create_archive()
        .archive_name(&name)
        .event_source_arn(source);
    if let Some(pattern) = props.get("EventPattern") {
        request = request.event_pattern(pattern.to_string());
    }
    if let Some(days) = props
        .get("RetentionDays")
        .map(scalar_to_string)
        .and_then(|d| d.parse().ok())
    {
        request = request.retention_days(days);
    }
    let out = request.send().await?;
    let arn = out.archive_arn.unwrap_or_default();
    Ok(Physical {
        reference: name,
        attributes: [("Arn".to_owned(), arn)].into_iter().collect(),
    })
}

pub(super) async fn create_rule(
    clients: &Clients,
    name: &str,
    props: &Value,
    deliveries: &mut Vec<Delivery>,
) -> Result<Physical> {
    let name = props
        .get("Name")
        .map(scalar_to_string)
        .unwrap_or_else(|| fit(name, 64));
    let bus = props
        .get("EventBusName")
        .map(scalar_to_string)
        .unwrap_or_else(|| "default".into());
    let mut request = clients.events.put_rule().name(&name).event_bus_name(&bus);
    if let Some(pattern) = props.get("EventPattern") {
        request = request.event_pattern(pattern.to_string());
    }
    let arn = request.send().await?.rule_arn.unwrap_or_default();
    let mut targets = Vec::new();
    for target in props
        .get("Targets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = target
            .get("Id")
            .map(scalar_to_string)
            .unwrap_or_else(|| "target".into());
        let target_arn = target.get("Arn").map(scalar_to_string).unwrap_or_default();
        let delivered_arn = if target_arn.starts_with("arn:aws:lambda:") {
            // moto cannot invoke a Lambda target: deliver through a queue of the gateway's.
            let queue = clients
                .sqs
                .create_queue()
                .queue_name(fit(&format!("{name}-delivery"), 80))
                .send()
                .await?;
            let url = queue.queue_url.ok_or_else(|| anyhow!("no queue URL"))?;
            let queue_arn = queue_arn(clients, &url).await?;
            deliveries.push(Delivery {
                queue_url: url,
                function_arn: target_arn,
            });
            queue_arn
        } else {
            target_arn
        };
        targets.push(
            aws_sdk_eventbridge::types::Target::builder()
                .id(id)
                .arn(delivered_arn)
                .build()?,
        );
    }
    if !targets.is_empty() {
        clients
            .events
            .put_targets()
            .rule(&name)
            .event_bus_name(&bus)
            .set_targets(Some(targets))
            .send()
            .await?;
    }
    Ok(Physical {
        reference: name,
        attributes: [("Arn".to_owned(), arn)].into_iter().collect(),
    })
}

pub(super) async fn create_secret(
    clients: &Clients,
    name: &str,
    props: &Value,
    logical: &str,
    values: &mut BTreeMap<String, String>,
) -> Result<Physical> {
    let name = props
        .get("Name")
        .map(scalar_to_string)
        .unwrap_or_else(|| name.to_owned());
    let value = match (props.get("SecretString"), props.get("GenerateSecretString")) {
        (Some(s), _) => scalar_to_string(s),
        (None, Some(spec)) => generate_secret_string(spec)?,
        (None, None) => generate_secret_string(&serde_json::json!({}))?,
    };
    let out = clients
        .secrets
        .create_secret()
        .name(&name)
        .secret_string(&value)
        .send()
        .await?;
    values.insert(logical.to_owned(), value);
    let arn = out
        .arn
        .ok_or_else(|| anyhow!("CreateSecret returned no ARN"))?;
    Ok(Physical {
        reference: arn.clone(),
        attributes: [("Id".to_owned(), arn)].into_iter().collect(),
    })
}

/// Generates a secret as `GenerateSecretString` describes: a random string of `PasswordLength`
/// (default 32) characters, inserted under `GenerateStringKey` into `SecretStringTemplate`.
pub fn generate_secret_string(spec: &Value) -> Result<String> {
    let length: usize = spec
        .get("PasswordLength")
        .map(scalar_to_string)
        .unwrap_or_else(|| "32".into())
        .parse()
        .map_err(|_| anyhow!("PasswordLength must be a number"))?;
    // Letters and digits always qualify; punctuation is left out locally whether or not
    // ExcludePunctuation is set, which keeps the password easy to paste into a shell.
    let password = crate::random_alnum(length);
    match (
        spec.get("SecretStringTemplate"),
        spec.get("GenerateStringKey"),
    ) {
        (Some(template), Some(key)) => {
            let mut doc: Value = serde_json::from_str(&scalar_to_string(template))
                .map_err(|e| anyhow!("SecretStringTemplate is not JSON: {e}"))?;
            let object = doc
                .as_object_mut()
                .ok_or_else(|| anyhow!("SecretStringTemplate must be a JSON object"))?;
            object.insert(scalar_to_string(key), Value::String(password));
            Ok(doc.to_string())
        }
        _ => Ok(password),
    }
}
