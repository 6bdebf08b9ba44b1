//! A local stack per test: the real `local-gateway` binary on the test run's moto, with a unique
//! stack name, free ports and its own state file.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

/// A running `local-gateway`, stopped on drop.
pub struct LocalStack {
    child: Child,
    dir: PathBuf,
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

/// Starts the gateway and runs it to completion, for start-up failures: returns its exit
/// success and everything it printed.
pub fn run_to_exit(overrides: &str) -> (bool, String) {
    let (mut command, dir) = command(overrides);
    let output = command.output().expect("run local-gateway");
    let _ = std::fs::remove_dir_all(dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn command(overrides: &str) -> (Command, PathBuf) {
    let root = testkit::repo_root();
    let dir = std::env::temp_dir().join(testkit::unique("local-stack"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_local-gateway"));
    command
        .current_dir(&root)
        .args(["--endpoint", &testkit::moto_endpoint()])
        .args(["--template", "template.yaml"])
        .args(["--port", "0", "--lambda-port", "0"])
        .args(["--stack-name", &testkit::unique("t")])
        .arg("--state-file")
        .arg(dir.join("stack.json"))
        .args(["--parameter-overrides", overrides])
        .arg("--python")
        .arg(root.join(".venv/bin/python"))
        .env("RUST_LOG", "info,aws_config=warn,aws_smithy_runtime=warn");
    (command, dir)
}

impl LocalStack {
    /// Starts the root template with `overrides` (`"Name=Value ..."`), waiting until it is up.
    pub async fn start(overrides: &str) -> Self {
        let (mut command, dir) = command(overrides);
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start local-gateway");
        let mut stack = LocalStack {
            child,
            dir: dir.clone(),
            state: Value::Null,
            sdk: testkit::sdk_config().await,
        };
        let state_file = dir.join("stack.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !state_file.exists() {
            if let Ok(Some(status)) = stack.child.try_wait() {
                panic!("local-gateway exited with {status}:\n{}", stack.log());
            }
            assert!(
                Instant::now() < deadline,
                "local-gateway did not start:\n{}",
                stack.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stack.state = serde_json::from_slice(&std::fs::read(&state_file).expect("state"))
            .expect("state JSON");
        stack
    }

    /// What the gateway logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// The description of one pattern (`"SqsBuffer"`).
    pub fn pattern(&self, name: &str) -> &Value {
        let pattern = &self.state["patterns"][name];
        assert!(pattern.is_object(), "no pattern {name} in {}", self.state);
        pattern
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
        let client = aws_sdk_dynamodb::Client::new(&self.sdk);
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = client
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items().iter().cloned());
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return items;
            }
        }
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
