//! Starting the whole local stack: provision, build functions, serve APIs, start pollers, and
//! publish what a user or a test needs (`.local/stack.json`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::apigw::helper::Helper;
use crate::apigw::{http as http_api, rest as rest_api};
use crate::event_queue::EventQueue;
use crate::sigv4::SigningKey;
use crate::stack::{Clients, Stack};
use crate::{functions, kinesis_esm, sqs_esm, stack};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The root template.
    pub template: PathBuf,
    /// moto's endpoint URL.
    pub endpoint: String,
    /// Region to report and sign for.
    pub region: String,
    /// Stack name: prefix of every physical name.
    pub stack_name: String,
    /// First port for the APIs (each API takes the next); 0 picks free ports.
    pub port: u16,
    /// Where to write the stack description.
    pub state_file: PathBuf,
    /// `Name=Value` parameter overrides.
    pub overrides: BTreeMap<String, String>,
    /// Python with airspeed-ext, for REST API mapping templates.
    pub python: String,
    /// Wait before the first retry of a failed asynchronous invoke (doubled for the second).
    pub async_retry_unit: std::time::Duration,
    /// Port of the Lambda Invoke API (0: a free one).
    pub lambda_port: u16,
    /// Build the functions with cargo's release profile.
    pub release: bool,
    /// Execution environments per function without reserved concurrency.
    pub concurrency: usize,
    /// The executable that launches execution environments (the gateway's own).
    pub launcher: PathBuf,
    /// How long one CloudWatch minute lasts locally: alarm periods and metric sampling.
    pub metric_minute: std::time::Duration,
    /// The endpoint the functions' SDK clients use (`AWS_ENDPOINT_URL`), when not moto's own:
    /// a proxy in front of moto, say, that injects faults into what the functions see only.
    pub function_endpoint: Option<String>,
    /// Executables that replace the build of a function (by id, `Stack.LogicalId`), as
    /// `sam local invoke` runs whatever `sam build` left: a test runs a changed build this way.
    pub function_binaries: BTreeMap<String, PathBuf>,
}

/// A running local stack.
#[derive(Debug)]
pub struct Running {
    /// The description written to the state file.
    pub description: Value,
}

/// Provisions and starts everything; returns once the APIs listen and the pollers run.
pub async fn start(options: &Options) -> Result<Running> {
    // Before any function runs: every EMF line the functions write feeds the metrics.
    crate::cloudwatch::feed::start_emf(crate::logs::subscribe());
    let sdk = aws_setup::load_with_endpoint(&options.endpoint, Some(&options.region)).await;
    let clients = Clients::new(&sdk);
    // Function output and access logs go to moto's CloudWatch Logs from here on (crate::logs).
    crate::logs::global().ship_to(clients.logs.clone(), crate::logs::Shipping::default());
    // A start with the options of the previous one resumes its stack (crate::durable).
    let state_dir = state_dir(options);
    let key = stack::record::RecordKey::new(
        &options.template,
        &options.stack_name,
        &options.endpoint,
        &options.region,
        &options.overrides,
    )?;
    let previous = stack::record::resume_or_wipe(&state_dir, &key, &clients).await?;
    let stacks = stack::provision_resuming(
        &options.template,
        &options.stack_name,
        &options.overrides,
        &options.region,
        &clients,
        previous.as_ref(),
    )
    .await?;
    let mut record = stack::record::StackRecord::of(key, &stacks);
    let resumed_port = |server: &str, given: u16| match given {
        0 => previous.as_ref().and_then(|r| r.port(server)).unwrap_or(0),
        given => given,
    };
    let mut next_port = options.port;
    let mut described = serde_json::Map::new();
    // Functions first: asynchronous invokes and destinations may cross from one to another.
    let mut binaries = functions::build::build_all(&stacks, options.release).await?;
    for (id, binary) in &options.function_binaries {
        anyhow::ensure!(
            binaries.contains_key(id),
            "--function-binary {id}: the template has no function {id} (functions: {})",
            binaries.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        anyhow::ensure!(
            binary.is_file(),
            "--function-binary {id}: {} is not a file",
            binary.display()
        );
        tracing::warn!(function = %id, binary = %binary.display(), "running a replacement binary instead of the function's build");
        binaries.insert(id.clone(), binary.clone());
    }
    let run_options = functions::RunOptions {
        launcher: options.launcher.clone(),
        endpoint: options
            .function_endpoint
            .clone()
            .unwrap_or_else(|| options.endpoint.clone()),
        region: options.region.clone(),
        default_concurrency: options.concurrency,
    };
    let mut per_stack = Vec::new();
    for stack in &stacks {
        per_stack.push(functions::load(stack, &binaries, &run_options)?);
    }
    let all_functions: Vec<_> = per_stack.iter().flatten().cloned().collect();
    let all_queues: HashMap<String, String> = stacks
        .iter()
        .flat_map(|stack| {
            stack
                .template
                .resources_of("AWS::SQS::Queue")
                .filter_map(|(logical, _)| stack.scope.resources.get(logical))
                .filter_map(|p| Some((p.attributes.get("Arn")?.clone(), p.reference.clone())))
                .collect::<Vec<_>>()
        })
        .collect();
    let invoker = Arc::new(
        EventQueue::new(
            &all_functions,
            all_queues,
            clients.sqs.clone(),
            clients.events.clone(),
            options.async_retry_unit,
        )
        .with_journal(state_dir.join("async-events")),
    );
    let resumed = invoker.resume();
    if resumed > 0 {
        tracing::info!(events = resumed, "resumed the queued asynchronous invokes");
    }
    let signing = previous
        .as_ref()
        .and_then(|r| r.signing.clone())
        .unwrap_or_else(|| SigningKey {
            access_key_id: format!("AKIALOCAL{}", crate::random_alnum(11).to_ascii_uppercase()),
            secret_access_key: crate::random_alnum(40),
        });
    record.signing = Some(signing.clone());
    let lambda_listener = bind(resumed_port("lambda", options.lambda_port)).await?;
    let lambda_address = lambda_listener.local_addr()?;
    record.ports.insert("lambda".into(), lambda_address.port());
    let lambda_endpoint = format!("http://{lambda_address}");
    let checkpoints = Arc::new(kinesis_esm::Checkpoints::load(
        state_dir.join("checkpoints.json"),
    )?);
    let lambda_api = Arc::new(crate::lambda_api::LambdaApi::new(
        all_functions.clone(),
        invoker.clone(),
    ));
    let served = lambda_api.clone();
    serve_once("Lambda Invoke API".into(), async move {
        served.serve(lambda_listener).await
    });
    let mut views = Vec::new();
    let mut helper: Option<Arc<Helper>> = None;
    for (stack, functions) in stacks.iter().zip(per_stack) {
        let mut stream_consumers = Vec::new();
        for delivery in &stack.deliveries {
            start_delivery(delivery.clone(), clients.sqs.clone(), invoker.clone());
        }
        let queues_by_arn: HashMap<String, String> = stack
            .template
            .resources_of("AWS::SQS::Queue")
            .filter_map(|(logical, _)| stack.scope.resources.get(logical))
            .filter_map(|p| Some((p.attributes.get("Arn")?.clone(), p.reference.clone())))
            .collect();
        let streams_by_arn: HashMap<String, String> = stack
            .template
            .resources_of("AWS::Kinesis::Stream")
            .filter_map(|(logical, _)| stack.scope.resources.get(logical))
            .filter_map(|p| Some((p.attributes.get("Arn")?.clone(), p.reference.clone())))
            .collect();
        for function in &functions {
            for mapping in kinesis_esm::mappings_for(function, &streams_by_arn, &queues_by_arn)? {
                stream_consumers.push(mapping.function.name.clone());
                let id = mapping.function.id.clone();
                let (batch, bisect, retries) =
                    (mapping.batch_size, mapping.bisect, mapping.max_retries);
                let shards = Arc::new(mapping)
                    .start(
                        clients.kinesis.clone(),
                        clients.sqs.clone(),
                        clients.s3.clone(),
                        options.region.clone(),
                        checkpoints.clone(),
                    )
                    .await?;
                tracing::info!(function = %id, shards, batch_size = batch, bisect, max_retries = ?retries, "Kinesis event source mapping started");
            }
            for mapping in sqs_esm::mappings_for(function, &queues_by_arn, &clients.sqs).await? {
                tracing::info!(
                    function = %mapping.function.id,
                    batch_size = mapping.batch_size,
                    window_s = mapping.batching_window.as_secs(),
                    report_failures = mapping.report_batch_item_failures,
                    "SQS event source mapping started"
                );
                Arc::new(mapping).start(clients.sqs.clone(), options.region.clone());
            }
        }
        let mut apis = BTreeMap::new();
        let mut api_views = Vec::new();
        for api in http_api::load(stack, &functions, &clients)? {
            let listener = bind(resumed_port(&api.id, next_port)).await?;
            if next_port != 0 {
                next_port += 1;
            }
            let address = listener.local_addr()?;
            record.ports.insert(api.id.clone(), address.port());
            let base_url = format!("http://{address}{}", api.stage_prefix);
            let name = api.id.rsplit('.').next().unwrap_or_default().to_owned();
            apis.insert(
                name,
                json!({ "baseUrl": base_url, "routes": api.route_keys() }),
            );
            let api = Arc::new(api);
            api_views.push(crate::status::ApiView {
                logical: api.id.rsplit('.').next().unwrap_or_default().to_owned(),
                rest: false,
                api: api.api_id.clone(),
                stage: api.stage_name.clone(),
            });
            let router = crate::cloudwatch::feed::count_requests(
                api.clone().router(),
                false,
                api.api_id.clone(),
                api.stage_name.clone(),
            );
            serve_once(api.id.clone(), async move {
                crate::apigw::serve(router, listener).await
            });
        }
        let has_rest = ["AWS::Serverless::Api", "AWS::ApiGateway::RestApi"]
            .iter()
            .any(|kind| stack.template.resources_of(kind).next().is_some());
        if has_rest {
            let helper = match &helper {
                Some(h) => h.clone(),
                None => {
                    let h = Arc::new(Helper::start(&options.python).await?);
                    helper = Some(h.clone());
                    h
                }
            };
            let shared = rest_api::Shared {
                invoker: invoker.clone(),
                helper,
                signing: signing.clone(),
                endpoint: options.endpoint.clone(),
            };
            for api in rest_api::load(stack, &functions, &shared)? {
                let listener = bind(resumed_port(&api.id, next_port)).await?;
                if next_port != 0 {
                    next_port += 1;
                }
                let address = listener.local_addr()?;
                record.ports.insert(api.id.clone(), address.port());
                let base_url = format!("http://{address}/{}", api.stage);
                let name = api.id.rsplit('.').next().unwrap_or_default().to_owned();
                apis.insert(
                    name,
                    json!({ "baseUrl": base_url, "routes": api.route_keys(), "auth": api.auth_kind(), "examples": api.examples() }),
                );
                let api = Arc::new(api);
                let api_name = rest_api_name(stack, &api.id);
                api_views.push(crate::status::ApiView {
                    logical: api.id.rsplit('.').next().unwrap_or_default().to_owned(),
                    rest: true,
                    api: api_name.clone(),
                    stage: api.stage.clone(),
                });
                let router = crate::cloudwatch::feed::count_requests(
                    api.clone().router(),
                    true,
                    api_name,
                    api.stage.clone(),
                );
                serve_once(api.id.clone(), async move {
                    crate::apigw::serve(router, listener).await
                });
            }
        }
        views.push(crate::status::PatternView {
            key: stack.path.clone(),
            apis: api_views,
            queues: queue_views(stack),
            functions: functions.clone(),
            stream_consumers,
        });
        let function_names: BTreeMap<String, String> = functions
            .iter()
            .map(|f| (f.id.clone(), f.name.clone()))
            .collect();
        if let Some(mut description) = describe(stack, &apis) {
            description["functions"] = json!(function_names);
            let key = if stack.path.is_empty() {
                "Root".to_owned()
            } else {
                stack.path.clone()
            };
            described.insert(key, description);
        }
    }
    let alarms = Arc::new(crate::cloudwatch::engine::Alarms::new(
        crate::cloudwatch::engine::load(&stacks),
        options.metric_minute,
        &clients,
        &options.region,
    ));
    alarms.clone().start();
    let _ = lambda_api.status.set(Arc::new(crate::status::Status {
        patterns: views,
        alarms: alarms.clone(),
    }));
    crate::cloudwatch::sampler::start(
        sampled_queues(&stacks),
        clients.sqs.clone(),
        options.endpoint.clone(),
        options.region.clone(),
        options.metric_minute,
    );
    let description = json!({
        "stackName": options.stack_name,
        "region": options.region,
        "motoEndpoint": options.endpoint,
        // `aws lambda invoke --endpoint-url <this>` runs any function of the stack.
        "lambdaEndpoint": lambda_endpoint,
        "accessKeyId": "testing",
        "secretAccessKey": "testing",
        // Credentials to sign requests to AWS_IAM APIs with (service execute-api).
        "signing": {
            "accessKeyId": signing.access_key_id,
            "secretAccessKey": signing.secret_access_key,
            "region": options.region,
            "service": "execute-api",
        },
        "patterns": described,
    });
    // The record first: a stack described is a stack a restart resumes.
    stack::record::save(&state_dir, &record)?;
    if let Some(parent) = options.state_file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Write then rename, so a reader never sees half a file. It holds the local passwords and
    // the signing secret: readable and writable by its owner only, from its first byte.
    let partial = options.state_file.with_extension("json.partial");
    let _ = std::fs::remove_file(&partial);
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        file.write_all(&serde_json::to_vec_pretty(&description)?)?;
    }
    std::fs::rename(&partial, &options.state_file)
        .with_context(|| format!("cannot write {}", options.state_file.display()))?;
    Ok(Running { description })
}

/// The folder of what outlives the gateway ([`crate::durable`]), beside its state file.
pub fn state_dir(options: &Options) -> PathBuf {
    crate::durable::state_dir(&options.state_file)
}

/// The `ApiName` dimension of a REST API's metrics: its `Name`, else the OpenAPI title, else
/// the stack's name (as API Gateway names an API imported without a name).
fn rest_api_name(stack: &Stack, id: &str) -> String {
    let logical = id.rsplit('.').next().unwrap_or_default();
    let props = stack
        .template
        .resources()
        .find(|(l, _)| l.as_str() == logical)
        .and_then(|(_, r)| r.get("Properties"))
        .and_then(|p| stack.scope.resolve(p).ok());
    props
        .as_ref()
        .and_then(|p| p.get("Name"))
        .map(crate::cfn::scalar_to_string)
        .or_else(|| {
            props
                .as_ref()
                .and_then(|p| p.pointer("/DefinitionBody/info/title"))
                .map(crate::cfn::scalar_to_string)
        })
        .unwrap_or_else(|| stack.scope.stack_name.clone())
}

/// The queues of `stack`, dead-letter queues told apart (another queue redrives to them).
fn queue_views(stack: &Stack) -> Vec<crate::status::QueueView> {
    let queues: Vec<_> = stack.template.resources_of("AWS::SQS::Queue").collect();
    let targets: Vec<String> = queues
        .iter()
        .filter_map(|(_, r)| r.pointer("/Properties/RedrivePolicy/deadLetterTargetArn"))
        .filter_map(|v| stack.scope.resolve_str(v).ok())
        .collect();
    queues
        .iter()
        .filter_map(|(logical, _)| {
            let p = stack.scope.resources.get(*logical)?;
            Some(crate::status::QueueView {
                logical: (*logical).clone(),
                name: p.attributes.get("QueueName")?.clone(),
                dead_letter: p.attributes.get("Arn").is_some_and(|a| targets.contains(a)),
            })
        })
        .collect()
}

/// Every queue of the stacks, for the `AWS/SQS` metrics.
fn sampled_queues(stacks: &[Stack]) -> Vec<crate::cloudwatch::sampler::Queue> {
    stacks
        .iter()
        .flat_map(|stack| {
            stack
                .template
                .resources_of("AWS::SQS::Queue")
                .filter_map(|(logical, _)| stack.scope.resources.get(logical))
                .filter_map(|p| {
                    Some(crate::cloudwatch::sampler::Queue {
                        url: p.reference.clone(),
                        name: p.attributes.get("QueueName")?.clone(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Delivers a rule's events from the gateway's queue to the target function, asynchronously, as
/// EventBridge invokes Lambda targets.
fn start_delivery(delivery: stack::Delivery, sqs: aws_sdk_sqs::Client, invoker: Arc<EventQueue>) {
    let name = format!("rule delivery to {}", delivery.function_arn);
    crate::tasks::supervise(name, move || {
        let (delivery, sqs, invoker) = (delivery.clone(), sqs.clone(), invoker.clone());
        async move { deliver(delivery, sqs, invoker).await }
    });
}

/// A server's task: an error that stops it is logged with its cause. It binds its listener
/// once, so it is not restarted.
fn serve_once<F>(name: String, server: F)
where
    F: std::future::Future<Output = Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = server.await {
            tracing::error!(server = %name, error = %format!("{error:#}"), "server stopped");
        }
    });
}

async fn deliver(delivery: stack::Delivery, sqs: aws_sdk_sqs::Client, invoker: Arc<EventQueue>) {
    {
        loop {
            let received = sqs
                .receive_message()
                .queue_url(&delivery.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await;
            let Ok(out) = received else {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            };
            for message in out.messages() {
                let event: Value =
                    serde_json::from_str(message.body().unwrap_or_default()).unwrap_or(Value::Null);
                match invoker.invoke(&delivery.function_arn, event) {
                    Ok(_) => {}
                    Err(crate::event_queue::QueueError::UnknownFunction(_)) => {
                        tracing::error!(target = %delivery.function_arn, "rule target is not a function of the stack");
                    }
                    Err(error) => {
                        // Not queued: the message comes back after its visibility timeout.
                        let error = anyhow::Error::from(error);
                        tracing::error!(target = %delivery.function_arn, error = %format!("{error:#}"), "rule delivery not queued; retried later");
                        continue;
                    }
                }
                let _ = sqs
                    .delete_message()
                    .queue_url(&delivery.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await;
            }
        }
    }
}

async fn bind(port: u16) -> Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => Ok(l),
        Err(error) if port != 0 => {
            tracing::warn!(port, error = %error, "port busy; taking a free one");
            Ok(tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?)
        }
        Err(error) => Err(error.into()),
    }
}

/// What scripts and tests need to know of one stack; `None` for a stack with nothing to show.
fn describe(stack: &Stack, apis: &BTreeMap<String, Value>) -> Option<Value> {
    let names = |kind: &str| -> serde_json::Map<String, Value> {
        stack
            .template
            .resources_of(kind)
            .filter_map(|(logical, resource)| {
                let p = stack.scope.resources.get(logical)?;
                let value = match kind {
                    "AWS::SQS::Queue" => json!({
                        "name": p.attributes.get("QueueName"),
                        "url": p.reference,
                        "arn": p.attributes.get("Arn"),
                        // Where the queue redrives to, so tools can tell source from DLQ.
                        "deadLetterTargetArn": resource
                            .pointer("/Properties/RedrivePolicy/deadLetterTargetArn")
                            .and_then(|v| stack.scope.resolve_str(v).ok()),
                    }),
                    _ => Value::String(p.reference.clone()),
                };
                Some((logical.clone(), value))
            })
            .collect()
    };
    let queues = names("AWS::SQS::Queue");
    let tables = names("AWS::DynamoDB::Table");
    let secrets = names("AWS::SecretsManager::Secret");
    let streams = names("AWS::Kinesis::Stream");
    let buckets = names("AWS::S3::Bucket");
    // Alarm names and topic ARNs, for `aws cloudwatch describe-alarms` and `aws sns subscribe`.
    let alarms = names("AWS::CloudWatch::Alarm");
    let topics = names("AWS::SNS::Topic");
    if apis.is_empty()
        && queues.is_empty()
        && tables.is_empty()
        && secrets.is_empty()
        && streams.is_empty()
        && buckets.is_empty()
    {
        return None;
    }
    // The Basic-auth credentials, when a secret holds them.
    let credentials = stack
        .secret_values
        .values()
        .filter_map(|v| serde_json::from_str::<Value>(v).ok())
        .find(|v| v.get("username").is_some() && v.get("password").is_some());
    Some(json!({
        "template": stack.template.path,
        "baseUrl": apis.values().next().map(|api| &api["baseUrl"]),
        "apis": apis,
        "credentials": credentials,
        "queues": queues,
        "tables": tables,
        "secrets": secrets,
        "streams": streams,
        "buckets": buckets,
        "alarms": alarms,
        "topics": topics,
        "parameters": stack.scope.parameters,
        "outputs": stack.outputs,
    }))
}
