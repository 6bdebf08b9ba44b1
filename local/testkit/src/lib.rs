//! Test support for tests that talk to the local AWS emulator (moto).
//!
//! `make test` starts one moto server on a free port and exports `MOTO_ENDPOINT`; every test uses
//! it. A test run without that variable (`cargo test` by hand) starts its own moto from the
//! project's virtualenv, watched by a small supervisor that stops it when the test process ends.
//! Tests isolate themselves with [`unique`] resource names, never by ordering.

#![allow(clippy::expect_used)] // test support: a broken environment should stop the test loudly

pub mod faults;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root (the folder holding `Cargo.lock`) of the checkout whose tests run.
///
/// `cargo test` sets `CARGO_MANIFEST_DIR` when it runs a test binary; that one is read first.
/// The value compiled into this crate is only a fallback: checkouts sharing a cargo target
/// directory can reuse each other's build of this crate, and would then test the wrong checkout.
pub fn repo_root() -> PathBuf {
    let mut dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    while !dir.join("Cargo.lock").exists() {
        assert!(
            dir.pop(),
            "no Cargo.lock above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
    dir
}

/// A name no other test (or earlier run) uses: `prefix-` and 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

static MOTO: OnceLock<String> = OnceLock::new();
static SUPERVISOR: Mutex<Option<Child>> = Mutex::new(None);

/// The moto endpoint URL: `MOTO_ENDPOINT`, or a moto server started for this test process.
pub fn moto_endpoint() -> String {
    MOTO.get_or_init(|| match std::env::var("MOTO_ENDPOINT") {
        Ok(url) if !url.is_empty() => url,
        _ => start_moto(),
    })
    .clone()
}

fn start_moto() -> String {
    let root = repo_root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "moto is not installed: run `make venv` (or `make test`, which does it) first"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // The supervisor runs moto (through the project's launcher, which serialises its requests:
    // tools/moto_server.py says why) and stops it when our end of its stdin closes, which happens
    // when this test process exits, however it exits.
    let supervisor = r#"
import subprocess, sys
moto = subprocess.Popen([sys.executable, sys.argv[2], "-H", "127.0.0.1", "-p", sys.argv[1]],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    sys.stdin.read()
finally:
    moto.terminate()
    moto.wait(timeout=10)
"#;
    let child = Command::new(python)
        .args(["-c", supervisor, &port.to_string()])
        .arg(root.join("tools/moto_server.py"))
        .stdin(Stdio::piped())
        .spawn()
        .expect("start moto");
    *SUPERVISOR.lock().expect("supervisor lock") = Some(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    format!("http://127.0.0.1:{port}")
}

/// SDK configuration that sends every client to moto.
pub async fn sdk_config() -> aws_setup::SdkConfig {
    aws_setup::load_with_endpoint(&moto_endpoint(), None).await
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every item of `table` (a scan, all pages).
pub async fn scan_all(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(page.items().iter().cloned());
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return items;
        }
    }
}

/// Creates an on-demand table with a unique name and one string partition key `key`; returns
/// its name.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, prefix: &str, key: &str) -> String {
    let name = unique(prefix);
    create_table_named(client, &name, key).await;
    name
}

/// Creates an on-demand table `name` with one string partition key `key`.
pub async fn create_table_named(client: &aws_sdk_dynamodb::Client, name: &str, key: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .send()
        .await
        .expect("create table");
}
