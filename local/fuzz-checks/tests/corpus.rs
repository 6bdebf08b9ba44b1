//! Every committed input of the fuzz targets, through the check its target runs: the seeds and
//! the minimized corpus (`fuzz/corpus/<target>/`) and the crashes found and fixed
//! (`fuzz/regressions/<target>/`). `make fuzz` grows the corpus; this keeps it passing on stable.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check) = fuzz_checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a target");
    let corpus = inputs("corpus", target);
    assert!(
        corpus.len() >= 3,
        "fuzz/corpus/{target} holds its seeds ({} files)",
        corpus.len()
    );
    for file in corpus.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(file).expect("readable");
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            panic!("{} fails its check: {why}", file.display());
        }
    }
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (target, _) in fuzz_checks::TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "fuzz/Cargo.toml has a [[bin]] {target}"
        );
        assert!(
            fuzz_dir()
                .join(format!("fuzz_targets/{target}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{target}.rs"
        );
    }
}

#[test]
fn sigv4_corpus_passes() {
    replay("sigv4");
}

#[test]
fn basic_auth_corpus_passes() {
    replay("basic_auth");
}

#[test]
fn cfn_template_corpus_passes() {
    replay("cfn_template");
}

#[test]
fn batch_events_corpus_passes() {
    replay("batch_events");
}
