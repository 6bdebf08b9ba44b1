//! The project's own cfn-lint rules (`tools/cfn-lint-rules`), each proven on a fixture that makes
//! the mistake (the rule reports it, and nothing else is reported) and on fixtures that fix it
//! (nothing is reported at all), under `tests/fixtures/cfn-lint/`. The rules run through the
//! project's pinned cfn-lint, exactly as a user runs them:
//! `cfn-lint --append-rules tools/cfn-lint-rules -- template.yaml`.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a missing tool or broken fixture should fail the test loudly

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The ids of the project's rules, each with what it catches.
const RULES: [(&str, &str); 7] = [
    (
        "E9101",
        "REST API logging without the account's API Gateway CloudWatch role",
    ),
    (
        "E9102",
        "unconditional reserved concurrency beyond the account quota",
    ),
    (
        "E9103",
        "SQS source on a reserved-concurrency function without MaximumConcurrency",
    ),
    ("E9104", "SQS BatchSize above 10 without a batching window"),
    ("E9105", "OpenAPI operation relying on root-level security"),
    ("E9106", "AWS service integration without 4xx/5xx responses"),
    ("E9107", "function dead-letter queue on a stream consumer"),
];

/// One problem cfn-lint reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule id, e.g. `E9101`.
    pub rule: String,
    /// The template the problem is in.
    pub template: PathBuf,
    /// The logical id of the resource it is about (empty for problems outside `Resources`).
    pub resource: String,
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}:{} {}: {}",
            self.rule,
            self.template.display(),
            self.line,
            self.resource,
            self.message
        )
    }
}

/// The repository root of this checkout. `cargo test` runs the test with `CARGO_MANIFEST_DIR`
/// set to this crate's folder, which is always the checkout being tested; `testkit::repo_root()`
/// bakes the folder in when testkit is compiled, and with a target directory shared between
/// checkouts (as the Makefile sets up) that can be another checkout, whose cfn-lint rules and
/// templates are not the ones under test.
fn repo_root() -> PathBuf {
    let Some(crate_dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return testkit::repo_root();
    };
    let mut dir = PathBuf::from(crate_dir);
    while !dir.join("Cargo.lock").exists() {
        if !dir.pop() {
            return testkit::repo_root();
        }
    }
    dir
}

fn is_custom(rule: &str) -> bool {
    RULES.iter().any(|(id, _)| *id == rule)
}

fn fixture(name: &str) -> PathBuf {
    let path = repo_root()
        .join("local/gateway/tests/fixtures/cfn-lint")
        .join(name);
    assert!(path.exists(), "no fixture {}", path.display());
    path
}

fn cfn_lint_command() -> Command {
    let root = repo_root();
    let cfn_lint = root.join(".venv/bin/cfn-lint");
    assert!(
        cfn_lint.exists(),
        "cfn-lint is not installed: run `make venv` first"
    );
    let mut command = Command::new(cfn_lint);
    command
        .current_dir(&root)
        // Keep __pycache__ out of tools/cfn-lint-rules.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("--append-rules")
        .arg(root.join("tools/cfn-lint-rules"));
    command
}

/// Everything cfn-lint (with the project's rules) reports on `template`; `configure` are
/// `--configure-rule` values such as `E9102:quota=10`. Panics unless cfn-lint ran to the end:
/// its exit code is a bit set of levels found (2 errors, 4 warnings, 8 informational), so any
/// odd or larger code is a crash or a usage error; and a rule that raised (E0002) is a crash too.
pub fn cfn_lint(template: &Path, configure: &[&str]) -> Vec<Finding> {
    let mut command = cfn_lint_command();
    if !configure.is_empty() {
        command.arg("--configure-rule").args(configure);
    }
    let output = command
        .args(["--format", "json", "--"])
        .arg(template)
        .output()
        .expect("run cfn-lint");
    let code = output.status.code().expect("cfn-lint exited, not killed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        code % 2 == 0 && code <= 14,
        "cfn-lint did not finish on {} (exit {code}): {stderr}",
        template.display()
    );
    let reported: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "cfn-lint's JSON on {}: {e}\n{}\n{stderr}",
            template.display(),
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let findings: Vec<Finding> = reported
        .iter()
        .map(|m| {
            let path = m["Location"]["Path"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let resource = match path.as_slice() {
                [section, name, ..] if section == "Resources" => {
                    name.as_str().unwrap_or_default().to_owned()
                }
                _ => String::new(),
            };
            Finding {
                rule: m["Rule"]["Id"].as_str().unwrap_or_default().to_owned(),
                template: template.to_owned(),
                resource,
                line: m["Location"]["Start"]["LineNumber"].as_u64().unwrap_or(0),
                message: m["Message"].as_str().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    let crashed: Vec<&Finding> = findings.iter().filter(|f| f.rule == "E0002").collect();
    assert!(crashed.is_empty(), "a rule raised: {crashed:#?}");
    findings
}

fn rules_of(findings: &[Finding]) -> BTreeSet<&str> {
    findings.iter().map(|f| f.rule.as_str()).collect()
}

/// `name-bad.yaml` makes exactly `expected` mistakes, all reported by `rule` and nothing else;
/// every `name-good*.yaml` is clean (no finding of any rule).
fn assert_rule_proven(rule: &str, name: &str, expected: usize, configure: &[&str]) {
    let bad = cfn_lint(&fixture(&format!("{name}-bad.yaml")), configure);
    assert_eq!(
        rules_of(&bad),
        BTreeSet::from([rule]),
        "{name}-bad.yaml: {bad:#?}"
    );
    assert_eq!(bad.len(), expected, "{name}-bad.yaml: {bad:#?}");
    let dir = fixture(&format!("{name}-bad.yaml"))
        .parent()
        .unwrap()
        .to_owned();
    let mut goods: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_string_lossy();
            file.starts_with(&format!("{name}-good"))
                && file.ends_with(".yaml")
                && !file.ends_with(".openapi.yaml")
        })
        .collect();
    goods.sort();
    assert!(!goods.is_empty(), "no {name}-good*.yaml");
    for good in goods {
        let findings = cfn_lint(&good, configure);
        assert!(findings.is_empty(), "{}: {findings:#?}", good.display());
    }
}

#[test]
fn the_project_rules_load_under_their_own_ids_beside_cfn_lint_rules() {
    let output = cfn_lint_command()
        .arg("--list-rules")
        .output()
        .expect("run cfn-lint");
    assert!(output.status.success(), "{output:?}");
    let listing = String::from_utf8_lossy(&output.stdout);
    for (id, what) in RULES {
        let lines = listing.lines().filter(|l| l.starts_with(id)).count();
        assert_eq!(lines, 1, "{id} ({what}) listed {lines} times:\n{listing}");
    }
}

#[test]
fn rest_api_logging_is_reported_unless_the_template_sets_the_account_role_or_makes_it_optional() {
    // Bad: a SAM API's access log and a stage's execution logs (the HTTP API's access log is
    // fine). Good: a conditional AWS::ApiGateway::Account; or logging behind Fn::If.
    assert_rule_proven("E9101", "rest-api-logging-role", 2, &[]);
}

#[test]
fn reserved_concurrency_beyond_the_default_quota_is_reported_and_opt_in_reservations_are_not() {
    // Bad: 500 + 450 (a parameter's Default) > 900. Good: every reservation behind Fn::If with
    // AWS::NoValue, clean even for an account whose quota is 10.
    assert_rule_proven("E9102", "reserved-concurrency-quota", 1, &[]);
    assert_rule_proven(
        "E9102",
        "reserved-concurrency-quota",
        1,
        &["E9102:quota=10"],
    );
}

#[test]
fn any_unconditional_reservation_is_reported_for_an_account_whose_quota_is_ten() {
    let template = fixture("reserved-concurrency-quota-small-account.yaml");
    assert!(cfn_lint(&template, &[]).is_empty());
    let small = cfn_lint(&template, &["E9102:quota=10"]);
    assert_eq!(rules_of(&small), BTreeSet::from(["E9102"]), "{small:#?}");
    assert!(small[0].message.contains("reserve 30 "), "{small:#?}");
}

#[test]
fn reserved_concurrency_of_nested_stacks_counts_with_the_parameters_the_parent_passes() {
    let child = cfn_lint(
        &fixture("reserved-concurrency-quota-nested-child.yaml"),
        &[],
    );
    assert!(child.is_empty(), "{child:#?}");
    let parent = cfn_lint(&fixture("reserved-concurrency-quota-nested-bad.yaml"), &[]);
    assert_eq!(rules_of(&parent), BTreeSet::from(["E9102"]), "{parent:#?}");
    assert!(
        parent[0].message.contains("reserve 950 ")
            && parent[0].message.contains("Workers/Worker 850"),
        "{parent:#?}"
    );
}

#[test]
fn an_sqs_source_of_a_function_with_reserved_concurrency_needs_maximum_concurrency() {
    // Bad: a SAM SQS event and an AWS::Lambda::EventSourceMapping (an unreserved consumer is
    // fine). Good: ScalingConfig.MaximumConcurrency on both.
    assert_rule_proven("E9103", "sqs-maximum-concurrency", 2, &[]);
}

#[test]
fn an_sqs_batch_above_ten_without_a_batching_window_is_reported_unless_rules_refuse_it() {
    // Bad: literals (100, no window) and parameters that allow 10000 with a window of 0.
    // Good: a window of 5 s; and a template Rules entry refusing the parameter combination.
    assert_rule_proven("E9104", "sqs-batch-window", 2, &[]);
}

#[test]
fn openapi_operations_relying_on_root_security_are_reported_in_inline_and_included_documents() {
    // Bad: one inline operation and two in a document included with AWS::Include.
    let included = fixture("openapi-root-security-bad.openapi.yaml");
    assert!(included.exists());
    assert_rule_proven("E9105", "openapi-root-security", 3, &[]);
}

#[test]
fn aws_service_integrations_must_map_4xx_and_5xx_service_answers() {
    // Bad: SQS with only `default`, DynamoDB with 4xx only, an AWS::ApiGateway::Method with only
    // a default response (Lambda and proxy integrations are not flagged).
    assert_rule_proven("E9106", "service-integration-errors", 3, &[]);
}

#[test]
fn a_function_dead_letter_queue_on_a_stream_consumer_is_reported() {
    // Bad: a SAM Kinesis consumer with DeadLetterQueue and a DynamoDB-streams consumer with
    // DeadLetterConfig (an SQS consumer's DLQ is fine). Good: OnFailure destinations instead.
    // (This replaces the DeadLetterQueue check that tests/templates.rs had.)
    assert_rule_proven("E9107", "stream-function-dlq", 2, &[]);
}

/// The repository's templates: the root one and every `patterns/*/template.yaml`.
fn repository_templates() -> Vec<PathBuf> {
    let root = repo_root();
    let mut out = vec![root.join("template.yaml")];
    let mut patterns: Vec<PathBuf> = std::fs::read_dir(root.join("patterns"))
        .expect("patterns/")
        .map(|e| e.expect("entry").path().join("template.yaml"))
        .filter(|p| p.exists())
        .collect();
    patterns.sort();
    out.extend(patterns);
    out
}

/// What the project's rules report on the repository's own templates, with their default
/// options (quota 1000). Panics only if cfn-lint or a rule crashed.
#[test]
fn every_template_of_the_repository_passes_the_project_rules_even_on_a_small_account() {
    // The strictest account: a concurrency quota of 10 (new accounts can have 10 or 50), so any
    // unconditional reservation fails E9102.
    let findings: Vec<Finding> = repository_templates()
        .iter()
        .flat_map(|t| cfn_lint(t, &["E9102:quota=10"]))
        .filter(|f| is_custom(&f.rule))
        .collect();
    assert!(findings.is_empty(), "{findings:#?}");
}
