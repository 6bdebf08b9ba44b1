//! The gateway knows no pattern: it links no crate under `patterns/`, and no pattern's name is
//! written in its code. Everything it runs comes from a template (house-style.md, "Dependencies
//! point one way"); `functions_runtime.rs` shows a function only the fixtures hold running.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn root() -> PathBuf {
    testkit::repo_root()
}

/// The workspace's packages whose manifests are under `patterns/`.
fn pattern_packages() -> Vec<String> {
    let output = cargo()
        .current_dir(root())
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "cargo metadata failed");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let patterns = root().join("patterns");
    let names: Vec<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| {
            Path::new(p["manifest_path"].as_str().unwrap_or_default()).starts_with(&patterns)
        })
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    assert!(names.len() >= 6, "the patterns' crates: {names:?}");
    names
}

#[test]
fn the_gateway_depends_on_no_pattern_crate_not_even_in_its_tests() {
    let patterns = pattern_packages();
    let output = cargo()
        .current_dir(root())
        .args([
            "tree",
            "--offline",
            "-p",
            "local-gateway",
            "-e",
            "normal,build,dev",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo tree");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let linked: Vec<&String> = patterns
        .iter()
        .filter(|name| {
            tree.lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str()))
        })
        .collect();
    assert!(linked.is_empty(), "local-gateway links {linked:?}");
    assert!(
        tree.lines().count() > 50,
        "cargo tree printed the dependencies:\n{tree}"
    );
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "rs" || e == "py" || e == "toml")
        {
            out.push(path);
        }
    }
}

#[test]
fn no_pattern_is_named_in_the_gateways_code() {
    // Each pattern's folder, its nested-stack logical id in the root template, and its crates.
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(root().join("patterns")).expect("patterns/") {
        let dir = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let camel: String = dir
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        names.push(dir.replace('-', "_"));
        names.push(camel);
        names.push(dir);
    }
    assert!(names.len() >= 12, "{names:?}");
    let gateway = root().join("local/gateway");
    let mut files = Vec::new();
    sources(&gateway.join("src"), &mut files);
    files.push(gateway.join("apigw_helper.py"));
    files.push(gateway.join("Cargo.toml"));
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source");
        for name in &names {
            assert!(
                !text.contains(name.as_str()),
                "{} names the pattern {name:?}",
                file.display()
            );
        }
    }
}
