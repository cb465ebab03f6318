//! Locating the `raftq` binary under test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Serializes the build so that parallel tests build the binary once.
static BUILD: Mutex<()> = Mutex::new(());

/// Returns the `raftq` binary: `RAFTQ_BIN` when set, else
/// `<target>/debug/raftq` of this workspace, built with
/// `cargo build -p raftq-cli` when it is missing. An existing binary is used
/// as it is, so rebuild it after changing the server.
pub fn raftq_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("RAFTQ_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("RAFTQ_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests package has no parent directory")?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| if dir.is_absolute() { dir } else { workspace.join(dir) })
        .unwrap_or_else(|| workspace.join("target"));
    let binary = target.join("debug").join("raftq");

    let _guard = BUILD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !binary.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "raftq-cli"])
            .current_dir(&workspace)
            .status()
            .context("failed to run cargo build -p raftq-cli")?;
        if !status.success() {
            bail!("cargo build -p raftq-cli failed with {status}");
        }
        if !binary.is_file() {
            bail!("cargo build -p raftq-cli did not produce {}", binary.display());
        }
    }
    Ok(binary)
}
