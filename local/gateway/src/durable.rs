//! What the gateway keeps on disk so that a restarted gateway (killed, then started again with
//! the same command line) carries on where the previous one stopped, as AWS's services keep
//! their state through a control-plane hiccup: the provisioned stack ([`crate::stack::record`]),
//! the Kinesis mappings' checkpoints ([`crate::kinesis_esm::Checkpoints`]) and the queued
//! asynchronous invokes ([`crate::event_queue`]).
//!
//! Everything lives in one folder beside the state file (`.local/stack.json` ->
//! `.local/stack.d/`). Every file is written to a temporary file first and then renamed over the
//! old one, so a kill at any moment leaves either the old file or the new one, never half of
//! one; and every file is readable by its owner only (the record holds secret values, the
//! journal the events' payloads).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The folder of the gateway's durable state, derived from its state file: the file's name
/// with the extension `d` (`.local/stack.json` -> `.local/stack.d`).
pub fn state_dir(state_file: &Path) -> PathBuf {
    state_file.with_extension("d")
}

/// Writes `bytes` to `path` whole or not at all: to `<path>.partial` (mode 0600 from its first
/// byte), then renamed over `path`. Creates the parent folder if needed.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        file.write_all(bytes)
            .with_context(|| format!("cannot write {}", partial.display()))?;
    }
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))
}

/// Serialises `value` as JSON into `path` with [`write_private`].
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value)
        .with_context(|| format!("cannot serialise {}", path.display()))?;
    write_private(path, &bytes)
}

/// Reads the JSON file at `path`: `None` when there is none.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not what the gateway wrote", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_state_dir_sits_beside_the_state_file() {
        assert_eq!(
            state_dir(Path::new(".local/stack.json")),
            PathBuf::from(".local/stack.d")
        );
    }

    #[test]
    fn a_written_file_is_private_and_reads_back() {
        let dir = std::env::temp_dir().join(format!("durable-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nested/value.json");
        write_json(&path, &serde_json::json!({"a": 1})).expect("write");
        write_json(&path, &serde_json::json!({"a": 2})).expect("rewrite");
        let back: Option<serde_json::Value> = read_json(&path).expect("read");
        assert_eq!(back, Some(serde_json::json!({"a": 2})));
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let missing: Option<serde_json::Value> = read_json(&dir.join("none.json")).expect("read");
        assert!(missing.is_none());
        let _ = std::fs::remove_dir_all(dir);
    }
}
