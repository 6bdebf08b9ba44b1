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
use serde_json::Value;

use crate::cfn::{Physical, ResolveError, Scope, Template, scalar_to_string};

mod monitoring;
pub mod record;
mod resources;
use monitoring::*;
pub use resources::generate_secret_string;
use resources::*;

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
    /// CloudWatch: the templates' alarms, dashboards and the metrics the gateway knows.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// CloudWatch Logs: function and access logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// SNS: the alarms' topics.
    pub sns: aws_sdk_sns::Client,
}

impl Clients {
    /// Every client from one SDK configuration, S3 with path-style addressing (buckets as paths
    /// of the emulator's one host name).
    pub fn new(sdk: &aws_setup::SdkConfig) -> Self {
        Self {
            sqs: aws_sdk_sqs::Client::new(sdk),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            kinesis: aws_sdk_kinesis::Client::new(sdk),
            events: aws_sdk_eventbridge::Client::new(sdk),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(true)
                    .build(),
            ),
            cloudwatch: aws_sdk_cloudwatch::Client::new(sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(sdk),
            sns: aws_sdk_sns::Client::new(sdk),
        }
    }
}

/// A rule target the gateway delivers itself: moto cannot invoke Lambda targets, so the rule
/// targets a queue the gateway owns, and the gateway invokes the function from it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    provision_resuming(template, stack_name, overrides, region, clients, None).await
}

/// Provisions as [`provision`] does, taking from `previous` (the record of an earlier start of
/// the same stack, [`record::resume_or_wipe`]) every physical resource and secret value it
/// holds instead of creating them again: the stack it returns is the one provisioned before.
pub async fn provision_resuming(
    template: &Path,
    stack_name: &str,
    overrides: &BTreeMap<String, String>,
    region: &str,
    clients: &Clients,
    previous: Option<&record::StackRecord>,
) -> Result<Vec<Stack>> {
    if previous.is_some() {
        tracing::info!(stack = stack_name, "resuming the stack provisioned before");
    }
    let mut stacks = Vec::new();
    provision_one(
        template,
        String::new(),
        stack_name.to_owned(),
        &BTreeMap::new(),
        overrides,
        region,
        clients,
        previous,
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
    previous: Option<&'a record::StackRecord>,
    stacks: &'a mut Vec<Stack>,
) -> futures::future::BoxFuture<'a, Result<Stack>> {
    Box::pin(async move {
        // What this stack was provisioned with before, when resuming.
        let resumed = previous.and_then(|r| r.stacks.get(&path));
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
        let mut secret_values = resumed.map(|r| r.secret_values.clone()).unwrap_or_default();
        let mut deliveries = resumed.map(|r| r.deliveries.clone()).unwrap_or_default();
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
                let physical = resumed
                    .and_then(|r| r.resources.get(logical))
                    .cloned()
                    .unwrap_or(physical);
                scope.resources.insert(logical.clone(), physical);
            }
        }
        // The event source mappings SAM generates for a function's queue and stream events,
        // `<function><event>` ("Generated AWS CloudFormation resources"): `Ref` is the mapping's
        // UUID, the one the gateway's poller of that event uses (`mapping_uuid`).
        for (logical, function, event) in template.generated_mappings() {
            if let Some(name) = scope.resources.get(&function).map(|p| p.reference.clone()) {
                scope.resources.insert(
                    logical,
                    Physical {
                        reference: mapping_uuid(&name, &event),
                        attributes: BTreeMap::new(),
                    },
                );
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
                // Resumed: the resource exists already (a nested stack is followed again, to
                // resume its own resources).
                if kind != "AWS::Serverless::Application"
                    && let Some(physical) = resumed.and_then(|r| r.resources.get(&logical))
                {
                    scope.resources.insert(logical, physical.clone());
                    continue;
                }
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
                    "AWS::SNS::Topic" => create_topic(clients, &name, &props).await,
                    "AWS::SNS::Subscription" => create_subscription(clients, &props).await,
                    "AWS::CloudWatch::Alarm" => create_alarm(clients, &name, &props).await,
                    "AWS::CloudWatch::Dashboard" => create_dashboard(clients, &name, &props).await,
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
                            previous,
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

/// The UUID of the event source mapping of `function`'s (physical name) event `event`: one
/// value for the template's `Ref` and the gateway's poller.
pub fn mapping_uuid(function: &str, event: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("{function}/{event}").as_bytes(),
    )
    .to_string()
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
