//! A local stack per test: the real `local-gateway` binary on the test run's moto, with a unique
//! stack name, free ports and its own state file. Each test starts only the pattern it tests,
//! from the pattern's own template (as `sam deploy -t patterns/<name>/template.yaml` would), so a
//! test provisions and polls one pattern's resources, not four.
//!
//! Waiting: tests wait for conditions ([`testkit::eventually`]), never for a fixed time, with the
//! bounds below. A bound only decides how long a broken run takes to fail; a passing test waits
//! as long as the work takes and no longer.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

pub mod alarms;
pub mod logs;
pub mod signing;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

/// Bound on work the stack does after accepting a request: a poll, an invocation, a write, a
/// queue drained. Each takes well under a second alone; on a 2-core CI machine the test binaries
/// of the workspace run at the same time as each other's gateways, consumers and one shared moto,
/// so a step can stall for seconds. Two minutes is far beyond any stall seen, and only a lost or
/// stuck record ever reaches it.
pub const SETTLE: Duration = Duration::from_secs(120);

/// Bound on a gateway's start: provisioning takes seconds, and building the functions' binaries
/// with cargo is a no-op once `make functions` (which `make test` runs first) has built them. A
/// bare `cargo test` on a cold cache compiles them in the first test that starts a stack, which
/// takes minutes on a 2-core machine; ten minutes covers that and only a hang reaches it.
pub const START: Duration = Duration::from_secs(600);

/// Bound for work that includes retries the template schedules: [`SETTLE`] plus `waits` (what
/// the template's settings make the retries wait, for example visibility timeout × receives).
pub fn settle_after(waits: Duration) -> Duration {
    SETTLE + waits
}

/// The folder of a pattern under `patterns/`, from its logical id in the root template
/// (`SqsBuffer` → `sqs-buffer`).
fn pattern_dir(pattern: &str) -> String {
    let mut dir = String::new();
    for (i, c) in pattern.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            dir.push('-');
        }
        dir.push(c.to_ascii_lowercase());
    }
    dir
}

/// `overrides` for a pattern started on its own: names qualified with the pattern's logical id
/// (`AsyncInvoke.MaximumRetryAttempts=1`, as the root template takes them) lose the prefix.
fn own_overrides(pattern: &str, overrides: &str) -> String {
    let prefix = format!("{pattern}.");
    overrides
        .split_whitespace()
        .map(|pair| pair.strip_prefix(&prefix).unwrap_or(pair))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How a gateway was started, to start it again the same way.
struct Launch {
    template: String,
    overrides: String,
    stack_name: String,
}

/// A running `local-gateway`, stopped on drop.
pub struct LocalStack {
    child: Child,
    dir: PathBuf,
    launch: Launch,
    /// The pattern this stack serves.
    name: String,
    /// The stack description the gateway wrote (`.local/stack.json` shape).
    pub state: Value,
    /// SDK configuration for the same moto.
    pub sdk: aws_setup::SdkConfig,
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the gateway on `pattern` and runs it to completion, for start-up failures: returns
/// its exit success and everything it printed.
pub fn run_to_exit(pattern: &str, overrides: &str) -> (bool, String) {
    let (mut command, dir, _) = command(pattern, overrides);
    let output = command.output().expect("run local-gateway");
    let _ = std::fs::remove_dir_all(dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn command(pattern: &str, overrides: &str) -> (Command, PathBuf, Launch) {
    command_for(
        &format!("patterns/{}/template.yaml", pattern_dir(pattern)),
        &own_overrides(pattern, overrides),
    )
}

fn command_for(template: &str, overrides: &str) -> (Command, PathBuf, Launch) {
    let dir = std::env::temp_dir().join(testkit::unique("local-stack"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let launch = Launch {
        template: template.to_owned(),
        overrides: overrides.to_owned(),
        stack_name: testkit::unique("t"),
    };
    (launch_command(&launch, &dir), dir, launch)
}

fn launch_command(launch: &Launch, dir: &std::path::Path) -> Command {
    let (template, overrides) = (&launch.template, &launch.overrides);
    let root = testkit::repo_root();
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-gateway"));
    command
        .current_dir(&root)
        .args(["--endpoint", &testkit::moto_endpoint()])
        .arg("--template")
        .arg(template)
        .args(["--port", "0", "--lambda-port", "0"])
        .args(["--stack-name", &launch.stack_name])
        .arg("--state-file")
        .arg(dir.join("stack.json"))
        .args(["--parameter-overrides", overrides])
        .arg("--python")
        .arg(root.join(".venv/bin/python"))
        // The Kinesis pollers' debug lines name each batch handed to a function.
        .env(
            "RUST_LOG",
            "info,aws_config=warn,aws_smithy_runtime=warn,local_gateway::kinesis_esm=debug",
        );
    command
}

impl LocalStack {
    /// Starts `pattern` (its logical id in the root template, `"SqsBuffer"`) from its own
    /// template with `overrides` (`"Name=Value ..."`), waiting until it is up.
    pub async fn start(pattern: &str, overrides: &str) -> Self {
        let (command, dir, launch) = command(pattern, overrides);
        Self::spawn(pattern, command, dir, launch).await
    }

    /// Starts the stack of `template` (a path from the repository root) as the stack `name`.
    pub async fn start_template(name: &str, template: &str, overrides: &str) -> Self {
        let (command, dir, launch) = command_for(template, overrides);
        Self::spawn(name, command, dir, launch).await
    }

    fn launch(command: &mut Command, dir: &std::path::Path) -> Child {
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
        command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start local-gateway")
    }

    async fn spawn(pattern: &str, mut command: Command, dir: PathBuf, launch: Launch) -> Self {
        let child = Self::launch(&mut command, &dir);
        let mut stack = LocalStack {
            child,
            dir: dir.clone(),
            launch,
            name: pattern.to_owned(),
            state: Value::Null,
            sdk: testkit::sdk_config().await,
        };
        stack.wait_for_state().await;
        stack
    }

    /// Waits until the gateway has written its state file, and reads it.
    async fn wait_for_state(&mut self) {
        let state_file = self.state_file();
        let deadline = Instant::now() + START;
        while !state_file.exists() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("local-gateway exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "local-gateway did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.state = serde_json::from_slice(&std::fs::read(&state_file).expect("state"))
            .expect("state JSON");
    }

    /// Kills the gateway (SIGKILL) and starts it again with the same command line: same
    /// template, stack name, overrides and state file. Waits for the new state file; the
    /// previous run's log moves to [`LocalStack::log_before_restart`].
    pub async fn restart(&mut self) {
        self.kill();
        // The state file is written anew: its presence then says the new gateway is up.
        std::fs::remove_file(self.state_file()).expect("remove the state file");
        std::fs::rename(
            self.dir.join("gateway.log"),
            self.dir.join("gateway.before-restart.log"),
        )
        .expect("keep the log");
        let mut command = launch_command(&self.launch, &self.dir);
        self.child = Self::launch(&mut command, &self.dir);
        self.wait_for_state().await;
    }

    /// What the gateway logged before its last [`LocalStack::restart`].
    pub fn log_before_restart(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.before-restart.log")).unwrap_or_default()
    }

    /// The stack description the gateway wrote.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("stack.json")
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the gateway as Ctrl-C does (SIGINT) and waits for it; its exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait for local-gateway")
    }

    /// Kills the gateway (SIGKILL: no clean-up of its own can run) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The Lambda Invoke API's base URL.
    pub fn lambda_endpoint(&self) -> String {
        self.state["lambdaEndpoint"]
            .as_str()
            .expect("lambdaEndpoint")
            .to_owned()
    }

    /// What the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// The description of one pattern (`"SqsBuffer"`): the one this stack serves, whose
    /// template is the gateway's root.
    pub fn pattern(&self, name: &str) -> &Value {
        assert_eq!(name, self.name, "this stack serves {} only", self.name);
        let pattern = &self.state["patterns"]["Root"];
        assert!(pattern.is_object(), "no pattern {name} in {}", self.state);
        pattern
    }

    /// The id the gateway (and its Lambda Invoke API) knows a function by.
    pub fn function_id(&self, logical: &str) -> String {
        let id = logical.to_owned();
        assert!(
            self.pattern(&self.name)["functions"].get(&id).is_some(),
            "no function {logical} in {}",
            self.state
        );
        id
    }

    /// Physical name of a table of a pattern.
    pub fn table(&self, pattern: &str, logical: &str) -> String {
        self.pattern(pattern)["tables"][logical]
            .as_str()
            .expect("table")
            .to_owned()
    }

    /// URL of a queue of a pattern.
    pub fn queue_url(&self, pattern: &str, logical: &str) -> String {
        self.pattern(pattern)["queues"][logical]["url"]
            .as_str()
            .expect("queue")
            .to_owned()
    }

    /// The Basic-auth credentials of a pattern.
    pub fn credentials(&self, pattern: &str) -> (String, String) {
        let c = &self.pattern(pattern)["credentials"];
        (
            c["username"].as_str().expect("username").to_owned(),
            c["password"].as_str().expect("password").to_owned(),
        )
    }

    /// Items in a table (full scan, all pages).
    pub async fn items(
        &self,
        table: &str,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        testkit::scan_all(&aws_sdk_dynamodb::Client::new(&self.sdk), table).await
    }

    /// Visible plus in-flight messages on a queue.
    pub async fn queue_depth(&self, url: &str) -> u64 {
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        let out = client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().expect("attributes");
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| {
            attrs
                .get(k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }
}
