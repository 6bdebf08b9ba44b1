//! Provisioning a template's resources in moto, as CloudFormation would: physical names generated
//! from the stack and logical ids, nested `AWS::Serverless::Application`s followed to their own
//! templates, and every `Ref` / `Fn::GetAtt` answered with the emulator's real values.
//!
//! Only the data-plane resources the patterns need are created in moto (queues, tables, secrets);
//! functions, APIs, roles, keys and log groups get physical ids so references resolve, and the
//! local gateway itself plays their part. No Lambda function or event source mapping is created in
//! moto: without Docker it cannot run them, and its pollers would steal messages.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::cfn::{Physical, ResolveError, Scope, Template, scalar_to_string};

/// The AWS clients provisioning uses.
#[derive(Debug, Clone)]
pub struct Clients {
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// Secrets Manager.
    pub secrets: aws_sdk_secretsmanager::Client,
    /// Kinesis.
    pub kinesis: aws_sdk_kinesis::Client,
    /// EventBridge.
    pub events: aws_sdk_eventbridge::Client,
    /// S3 (path-style, for the emulator).
    pub s3: aws_sdk_s3::Client,
}

/// A rule target the gateway delivers itself: moto cannot invoke Lambda targets, so the rule
/// targets a queue the gateway owns, and the gateway invokes the function from it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The internal queue.
    pub queue_url: String,
    /// The function the rule targets.
    pub function_arn: String,
}

/// One provisioned stack (the root, or a nested application).
#[derive(Debug, Clone)]
pub struct Stack {
    /// Path of logical ids from the root (`""` for the root, `"Orders"` for a nested one).
    pub path: String,
    /// The template.
    pub template: Template,
    /// Parameters and physical resources.
    pub scope: Scope,
    /// Resolved `Outputs`.
    pub outputs: BTreeMap<String, String>,
    /// Generated secret values, by logical id (the local stack publishes its credentials).
    pub secret_values: BTreeMap<String, String>,
    /// Rule targets the gateway delivers.
    pub deliveries: Vec<Delivery>,
}

/// Provisions `template` and every stack it nests; returns them root first.
pub async fn provision(
    template: &Path,
    stack_name: &str,
    overrides: &BTreeMap<String, String>,
    region: &str,
    clients: &Clients,
) -> Result<Vec<Stack>> {
    let mut stacks = Vec::new();
    provision_one(
        template,
        String::new(),
        stack_name.to_owned(),
        &BTreeMap::new(),
        overrides,
        region,
        clients,
        &mut stacks,
    )
    .await?;
    Ok(stacks)
}

/// Overrides that reach the stack at `path`: unqualified names, and names qualified by its path.
fn overrides_for(path: &str, overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, value) in overrides {
        match key.rsplit_once('.') {
            None => {
                out.insert(key.clone(), value.clone());
            }
            Some((prefix, name)) if prefix == path => {
                out.insert(name.to_owned(), value.clone());
            }
            Some(_) => {}
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn provision_one<'a>(
    template_path: &'a Path,
    path: String,
    stack_name: String,
    given: &'a BTreeMap<String, String>,
    overrides: &'a BTreeMap<String, String>,
    region: &'a str,
    clients: &'a Clients,
    stacks: &'a mut Vec<Stack>,
) -> futures::future::BoxFuture<'a, Result<Stack>> {
    Box::pin(async move {
        let template = Template::load(template_path)?;
        let parameters = template.resolve_parameters(given, &overrides_for(&path, overrides))?;
        let mut scope = Scope {
            parameters,
            resources: BTreeMap::new(),
            stack_name: stack_name.clone(),
            region: region.to_owned(),
            account_id: crate::ACCOUNT_ID.to_owned(),
            conditions: BTreeMap::new(),
        };
        scope
            .evaluate_conditions(template.doc.get("Conditions"))
            .map_err(|e| anyhow!("{}: {e}", template_path.display()))?;
        scope
            .check_rules(template.doc.get("Rules"))
            .map_err(|e| anyhow!("{}: {e}", template_path.display()))?;
        let mut secret_values = BTreeMap::new();
        let mut deliveries = Vec::new();
        let index = stacks.len();
        // Resources whose Condition is false do not exist.
        let mut skipped = Vec::new();
        for (logical, resource) in template.resources() {
            if let Some(condition) = resource.get("Condition").and_then(Value::as_str)
                && !scope
                    .condition(condition)
                    .map_err(|e| anyhow!("{logical}: {e}"))?
            {
                skipped.push(logical.clone());
            }
        }
        // Resources the gateway plays itself only need ids.
        for (logical, resource) in template.resources().filter(|(l, _)| !skipped.contains(l)) {
            let kind = resource
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(physical) = passive_physical(&stack_name, logical, kind, region) {
                scope.resources.insert(logical.clone(), physical);
            }
        }
        // Resources created in moto, in dependency order: retry whatever waits for another.
        let mut pending: Vec<(String, Value)> = template
            .resources()
            .filter(|(logical, _)| {
                !scope.resources.contains_key(*logical) && !skipped.contains(logical)
            })
            .map(|(l, r)| (l.clone(), r.clone()))
            .collect();
        while !pending.is_empty() {
            let mut waiting = Vec::new();
            let mut last_wait = String::new();
            let before = pending.len();
            for (logical, resource) in pending {
                let kind = resource
                    .get("Type")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let props = match scope.resolve(resource.get("Properties").unwrap_or(&Value::Null))
                {
                    Ok(p) => p,
                    Err(ResolveError::Pending(on)) => {
                        last_wait = format!("{logical} waits for {on}");
                        waiting.push((logical, resource));
                        continue;
                    }
                    Err(ResolveError::Invalid(why)) => bail!("{logical}: {why}"),
                };
                let name = physical_name(&stack_name, &logical);
                let physical = match kind {
                    "AWS::SQS::Queue" => create_queue(clients, &name, &props).await,
                    "AWS::DynamoDB::Table" => create_table(clients, &name, &props).await,
                    "AWS::Kinesis::Stream" => create_stream(clients, &name, &props, region).await,
                    "AWS::S3::Bucket" => create_bucket(clients, &name, &props, region).await,
                    "AWS::Events::EventBus" => create_bus(clients, &name, &props).await,
                    "AWS::Events::Archive" => create_archive(clients, &name, &props).await,
                    "AWS::Events::Rule" => {
                        create_rule(clients, &name, &props, &mut deliveries).await
                    }
                    "AWS::SecretsManager::Secret" => {
                        create_secret(clients, &name, &props, &logical, &mut secret_values).await
                    }
                    "AWS::Serverless::Application" => {
                        let location =
                            props
                                .get("Location")
                                .and_then(Value::as_str)
                                .ok_or_else(|| {
                                    anyhow!("{logical}: Location must be a local template path")
                                })?;
                        let child_path = template_path
                            .parent()
                            .unwrap_or(Path::new("."))
                            .join(location);
                        let given: BTreeMap<String, String> = props
                            .get("Parameters")
                            .and_then(Value::as_object)
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), scalar_to_string(v)))
                            .collect();
                        let child_stack_path = if path.is_empty() {
                            logical.clone()
                        } else {
                            format!("{path}.{logical}")
                        };
                        let child = provision_one(
                            &child_path,
                            child_stack_path,
                            format!("{stack_name}-{logical}"),
                            &given,
                            overrides,
                            region,
                            clients,
                            stacks,
                        )
                        .await?;
                        Ok(Physical {
                            reference: child.scope.stack_name.clone(),
                            attributes: child
                                .outputs
                                .iter()
                                .map(|(k, v)| (format!("Outputs.{k}"), v.clone()))
                                .collect(),
                        })
                    }
                    _ => Ok(Physical {
                        reference: name.clone(),
                        attributes: BTreeMap::new(),
                    }),
                }
                .with_context(|| format!("creating {logical} ({kind}) of stack {stack_name}"))?;
                scope.resources.insert(logical, physical);
            }
            if waiting.len() == before {
                bail!(
                    "cannot order the resources of {}: {last_wait}",
                    template_path.display()
                );
            }
            pending = waiting;
        }
        let mut outputs = BTreeMap::new();
        for (name, output) in template
            .doc
            .get("Outputs")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if let Some(value) = output.get("Value") {
                let value = scope
                    .resolve_str(value)
                    .map_err(|e| anyhow!("output {name}: {e}"))?;
                outputs.insert(name.clone(), value);
            }
        }
        let stack = Stack {
            path,
            template,
            scope,
            outputs,
            secret_values,
            deliveries,
        };
        stacks.insert(index, stack.clone());
        Ok(stack)
    })
}

/// A CloudFormation-like physical name: stack, logical id and a random suffix.
fn physical_name(stack: &str, logical: &str) -> String {
    let suffix = crate::random_alnum(8).to_ascii_uppercase();
    let mut base = format!("{stack}-{logical}");
    base.truncate(60);
    format!("{base}-{suffix}")
}

/// Shortens a generated physical name to a service's limit, keeping its random suffix (as
/// CloudFormation shortens the stack and logical-id parts).
fn fit(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (head, suffix) = name.rsplit_once('-').unwrap_or((name, ""));
    let keep = max.saturating_sub(suffix.len() + 1);
    format!("{}-{suffix}", &head[..keep.min(head.len())])
}

fn passive_physical(stack: &str, logical: &str, kind: &str, region: &str) -> Option<Physical> {
    let account = crate::ACCOUNT_ID;
    let name = physical_name(stack, logical);
    let attrs = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    Some(match kind {
        "AWS::Serverless::Function" | "AWS::Lambda::Function" => Physical {
            attributes: attrs(&[(
                "Arn",
                format!("arn:aws:lambda:{region}:{account}:function:{name}"),
            )]),
            reference: name,
        },
        "AWS::KMS::Key" => {
            let id = uuid::Uuid::new_v4().to_string();
            Physical {
                attributes: attrs(&[
                    ("Arn", format!("arn:aws:kms:{region}:{account}:key/{id}")),
                    ("KeyId", id.clone()),
                ]),
                reference: id,
            }
        }
        "AWS::Logs::LogGroup" => Physical {
            attributes: attrs(&[(
                "Arn",
                format!("arn:aws:logs:{region}:{account}:log-group:{name}:*"),
            )]),
            reference: name,
        },
        "AWS::IAM::Role" => Physical {
            attributes: attrs(&[
                ("Arn", format!("arn:aws:iam::{account}:role/{name}")),
                ("RoleId", crate::random_alnum(21).to_ascii_uppercase()),
            ]),
            reference: name,
        },
        "AWS::ApiGatewayV2::Api"
        | "AWS::Serverless::HttpApi"
        | "AWS::ApiGateway::RestApi"
        | "AWS::Serverless::Api" => {
            let id = crate::random_alnum(10).to_ascii_lowercase();
            Physical {
                attributes: attrs(&[(
                    "ApiEndpoint",
                    format!("https://{id}.execute-api.{region}.amazonaws.com"),
                )]),
                reference: id,
            }
        }
        kind if kind.starts_with("AWS::ApiGatewayV2::")
            || kind.starts_with("AWS::ApiGateway::") =>
        {
            Physical {
                reference: crate::random_alnum(7).to_ascii_lowercase(),
                attributes: BTreeMap::new(),
            }
        }
        "AWS::Lambda::Permission"
        | "AWS::S3::BucketPolicy"
        | "AWS::SQS::QueuePolicy"
        | "AWS::SQS::QueueInlinePolicy"
        | "AWS::IAM::Policy"
        | "AWS::IAM::ManagedPolicy"
        | "AWS::Lambda::EventSourceMapping" => Physical {
            reference: name,
            attributes: BTreeMap::new(),
        },
        _ => return None,
    })
}

/// A bucket in moto: `BucketName`, or a generated name made valid for S3 (lower case, at most
/// 63 characters). Encryption, lifecycle and public-access settings are AWS's business; the
/// templates' checks (cfn-lint, checkov) hold them.
async fn create_bucket(
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

async fn create_queue(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
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
async fn queue_arn(clients: &Clients, url: &str) -> Result<String> {
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

fn key_schema(items: Option<&Value>) -> Result<Vec<KeySchemaElement>> {
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

async fn create_table(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
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

async fn create_stream(
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

async fn create_bus(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
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

async fn create_archive(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
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

async fn create_rule(
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

async fn create_secret(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_keeping_the_suffix() {
        assert_eq!(fit("short-ABC", 48), "short-ABC");
        let long = fit("t-582d65b17432-OrdersStack-FailureArchive-HLCPIR6G", 48);
        assert_eq!(long.len(), 48);
        assert!(long.ends_with("-HLCPIR6G"));
    }

    #[test]
    fn generated_secret_fills_the_template() {
        let spec = serde_json::json!({
            "SecretStringTemplate": "{\"username\": \"api-user\"}",
            "GenerateStringKey": "password",
            "PasswordLength": 24
        });
        let secret: Value =
            serde_json::from_str(&generate_secret_string(&spec).expect("generated")).expect("json");
        assert_eq!(secret["username"], "api-user");
        let password = secret["password"].as_str().expect("string");
        assert_eq!(password.len(), 24);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn overrides_reach_unqualified_or_matching_stacks_only() {
        let o = BTreeMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("Orders.B".to_owned(), "2".to_owned()),
            ("Other.C".to_owned(), "3".to_owned()),
        ]);
        let got = overrides_for("Orders", &o);
        assert_eq!(got.get("A").map(String::as_str), Some("1"));
        assert_eq!(got.get("B").map(String::as_str), Some("2"));
        assert!(!got.contains_key("C"));
    }
}
