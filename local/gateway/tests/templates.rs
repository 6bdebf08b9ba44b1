//! Promises every template in the repository keeps, checked on the templates themselves with the
//! gateway's own template reader (with parameter defaults): the house rules that cfn-lint and
//! checkov do not know about.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::path::PathBuf;

use local_gateway::cfn::{Scope, Template, scalar_to_string};
use serde_json::Value;

fn templates() -> Vec<PathBuf> {
    let root = testkit::repo_root();
    let mut out = vec![root.join("template.yaml")];
    for entry in std::fs::read_dir(root.join("patterns")).expect("patterns/") {
        let candidate = entry.expect("entry").path().join("template.yaml");
        if candidate.exists() {
            out.push(candidate);
        }
    }
    assert!(
        out.len() >= 2,
        "expected the root and at least one pattern template"
    );
    out
}

fn number(scope: &Scope, value: Option<&Value>, default: u64) -> u64 {
    value
        .map(|v| {
            scope
                .resolve_str(v)
                .expect("resolvable")
                .parse()
                .expect("a number")
        })
        .unwrap_or(default)
}

#[test]
fn queue_visibility_is_at_least_six_times_the_consumer_timeout() {
    for path in templates() {
        let template = Template::load(&path).expect("template");
        let scope = Scope::for_checks(&template).expect("checkable template");
        for (logical, function) in template.resources_of("AWS::Serverless::Function") {
            let props = &function["Properties"];
            let timeout = number(&scope, props.get("Timeout"), 3);
            for event in props
                .get("Events")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(_, e)| e)
            {
                if event["Type"] != "SQS" {
                    continue;
                }
                let queue_arn = scope
                    .resolve_str(&event["Properties"]["Queue"])
                    .expect("queue");
                let queue = queue_arn.rsplit(':').next().unwrap_or_default();
                let visibility = number(
                    &scope,
                    template.doc["Resources"][queue]["Properties"].get("VisibilityTimeout"),
                    30,
                );
                assert!(
                    visibility >= 6 * timeout,
                    "{}: {logical} times out after {timeout} s but {queue} hides messages for only {visibility} s (needs 6x)",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_queue_is_encrypted_and_every_consumed_queue_has_a_dead_letter_path() {
    for path in templates() {
        let template = Template::load(&path).expect("template");
        let consumed: Vec<String> = template
            .resources_of("AWS::Serverless::Function")
            .flat_map(|(_, f)| {
                f["Properties"]
                    .get("Events")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|(_, e)| e["Type"] == "SQS")
            .map(|(_, e)| {
                e["Properties"]["Queue"]["Fn::GetAtt"][0]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        for (logical, queue) in template.resources_of("AWS::SQS::Queue") {
            let props = &queue["Properties"];
            assert!(
                props.get("KmsMasterKeyId").is_some()
                    || props
                        .get("SqsManagedSseEnabled")
                        .map(scalar_to_string)
                        .as_deref()
                        == Some("true"),
                "{}: queue {logical} is not encrypted",
                path.display()
            );
            if consumed.contains(logical) {
                assert!(
                    props.get("RedrivePolicy").is_some(),
                    "{}: consumed queue {logical} has no RedrivePolicy",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn every_function_is_an_arm64_rust_function_whose_crate_has_the_named_binary() {
    for path in templates() {
        let template = Template::load(&path).expect("template");
        let scope = Scope::for_checks(&template).expect("scope");
        for (logical, function) in template.resources_of("AWS::Serverless::Function") {
            let props = &function["Properties"];
            let at = format!("{}: {logical}", path.display());
            assert_eq!(props["Runtime"], "provided.al2023", "{at}");
            assert_eq!(props["Architectures"], serde_json::json!(["arm64"]), "{at}");
            assert_eq!(props["Handler"], "bootstrap", "{at}");
            assert_eq!(props["Tracing"], "Active", "{at}");
            assert_eq!(
                function["Metadata"]["BuildMethod"], "rust-cargolambda",
                "{at}"
            );
            // What sam build and the local gateway both build: CodeUri's crate, that binary.
            let source =
                local_gateway::functions::build::source(&template, &scope, logical, function)
                    .unwrap_or_else(|e| panic!("{at}: {e:#}"));
            let local_gateway::functions::build::Source::Cargo { dir, binary } = source else {
                panic!("{at}: CodeUri is not a Rust crate");
            };
            let metadata =
                std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
                    .args([
                        "metadata",
                        "--no-deps",
                        "--format-version",
                        "1",
                        "--manifest-path",
                    ])
                    .arg(dir.join("Cargo.toml"))
                    .output()
                    .expect("cargo metadata");
            assert!(metadata.status.success(), "{at}: cargo metadata failed");
            let metadata: serde_json::Value =
                serde_json::from_slice(&metadata.stdout).expect("metadata JSON");
            let manifest = dir.join("Cargo.toml");
            let package = metadata["packages"]
                .as_array()
                .expect("packages")
                .iter()
                .find(|p| {
                    std::path::Path::new(p["manifest_path"].as_str().unwrap_or_default())
                        == manifest
                })
                .unwrap_or_else(|| {
                    panic!("{at}: {} is not a package of the workspace", dir.display())
                });
            assert!(
                package["targets"]
                    .as_array()
                    .expect("targets")
                    .iter()
                    .any(|t| {
                        t["name"] == binary.as_str()
                            && t["kind"]
                                .as_array()
                                .is_some_and(|k| k.iter().any(|k| k == "bin"))
                    }),
                "{at}: crate {} has no binary {binary:?}",
                dir.display()
            );
        }
    }
}

#[test]
fn every_log_group_has_retention_and_encryption() {
    for path in templates() {
        let template = Template::load(&path).expect("template");
        for (logical, group) in template.resources_of("AWS::Logs::LogGroup") {
            let props = &group["Properties"];
            assert!(
                props.get("RetentionInDays").is_some(),
                "{}: {logical} keeps logs forever",
                path.display()
            );
            assert!(
                props.get("KmsKeyId").is_some(),
                "{}: {logical} is not encrypted with a KMS key",
                path.display()
            );
        }
    }
}

/// Problems with the failure path of stream consumers in `template`: a stream event source needs
/// `DestinationConfig.OnFailure` and a finite retry or age limit, or one bad record blocks its
/// shard for the whole retention. (A function-level `DeadLetterQueue` on a stream consumer, which
/// never receives failed batches, is cfn-lint rule E9107: see tests/cfn_lint_rules.rs.)
fn stream_failure_path_problems(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    for (logical, function) in template.resources_of("AWS::Serverless::Function") {
        let props = &function["Properties"];
        for (name, event) in props
            .get("Events")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            if !matches!(event["Type"].as_str(), Some("Kinesis" | "DynamoDB")) {
                continue;
            }
            let event_props = &event["Properties"];
            if event_props
                .pointer("/DestinationConfig/OnFailure/Destination")
                .is_none()
            {
                problems.push(format!(
                    "{logical}: stream event {name} has no DestinationConfig.OnFailure"
                ));
            }
            let unlimited = |key: &str| {
                event_props
                    .get(key)
                    .is_none_or(|v| scalar_to_string(v) == "-1")
            };
            if unlimited("MaximumRetryAttempts") && unlimited("MaximumRecordAgeInSeconds") {
                problems.push(format!("{logical}: stream event {name} retries forever (set MaximumRetryAttempts or MaximumRecordAgeInSeconds)"));
            }
        }
    }
    for (logical, mapping) in template.resources_of("AWS::Lambda::EventSourceMapping") {
        let props = &mapping["Properties"];
        let is_stream = props.get("StartingPosition").is_some();
        if is_stream
            && props
                .pointer("/DestinationConfig/OnFailure/Destination")
                .is_none()
        {
            problems.push(format!(
                "{logical}: stream event source mapping has no DestinationConfig.OnFailure"
            ));
        }
    }
    problems
}

#[test]
fn the_stream_failure_path_check_catches_a_stream_without_on_failure_destination_or_retry_limit() {
    // The seed's mistake: a DLQ on the function (cfn-lint rule E9107 reports that part), no
    // destination on the mapping, no retry or age limit.
    let yaml = r#"
Resources:
  Consumer:
    Type: AWS::Serverless::Function
    Properties:
      DeadLetterQueue: {Type: SQS, TargetArn: !GetAtt Dlq.Arn}
      Events:
        Stream:
          Type: Kinesis
          Properties: {Stream: !GetAtt S.Arn, StartingPosition: LATEST}
"#;
    let doc =
        local_gateway::cfn::yaml_to_json(serde_yaml::from_str(yaml).expect("yaml")).expect("json");
    let template = Template {
        path: "seed.yaml".into(),
        doc,
    };
    let problems = stream_failure_path_problems(&template);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("has no DestinationConfig.OnFailure"));
    assert!(problems[1].contains("retries forever"));
}

#[test]
fn every_stream_consumer_has_an_on_failure_destination_and_finite_retries() {
    for path in templates() {
        let template = Template::load(&path).expect("template");
        let problems = stream_failure_path_problems(&template);
        assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
    }
}

#[test]
fn every_function_runs_under_its_own_role_with_no_wildcard_resources_but_unscoped_actions() {
    for path in templates() {
        let template = Template::load(&path).expect("template");
        for (logical, function) in template.resources_of("AWS::Serverless::Function") {
            let props = &function["Properties"];
            assert!(
                props.get("Role").is_some(),
                "{}: {logical} has no explicit Role",
                path.display()
            );
            assert!(
                props.get("Policies").is_none(),
                "{}: {logical} lets SAM build its role",
                path.display()
            );
        }
        for (logical, role) in template.resources_of("AWS::IAM::Role") {
            let props = &role["Properties"];
            assert!(
                props.get("ManagedPolicyArns").is_none(),
                "{}: {logical} attaches managed policies",
                path.display()
            );
            for policy in props["Policies"].as_array().into_iter().flatten() {
                for statement in policy["PolicyDocument"]["Statement"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if statement["Resource"] != "*" {
                        continue;
                    }
                    let actions: Vec<String> = match &statement["Action"] {
                        Value::Array(a) => a.iter().map(scalar_to_string).collect(),
                        other => vec![scalar_to_string(other)],
                    };
                    // Only actions that take no resource-level permissions (service
                    // authorization reference): X-Ray's, and DynamoDB's DescribeEndpoints, the
                    // connection a function opens during init (PRECONNECT).
                    assert!(
                        actions
                            .iter()
                            .all(|a| a.starts_with("xray:") || a == "dynamodb:DescribeEndpoints"),
                        "{}: {logical} allows {actions:?} on every resource",
                        path.display()
                    );
                }
            }
        }
    }
}
