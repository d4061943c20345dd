//! The official Kubernetes Python client (PyPI `kubernetes`, pinned), in a virtualenv under
//! the workspace's target directory, made on first use (pip reaches PyPI; nothing else is
//! downloaded). Tests run it as a user's program would.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};

/// The pinned client version.
pub const VERSION: &str = "31.0.0";

/// The Python interpreter of a virtualenv that has the client.
pub fn kubernetes_client() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target").join(format!("python-kubernetes-{VERSION}"));
    let python = dir.join("bin").join("python");
    let done = dir.join(".installed");
    if done.exists() {
        return Ok(python);
    }
    let run = |cmd: &mut Command, what: &str| -> anyhow::Result<()> {
        let out = cmd.output().with_context(|| what.to_string())?;
        if !out.status.success() {
            bail!("{what}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&dir), "making a virtualenv")?;
    run(Command::new(dir.join("bin").join("pip")).args(["install", "-q", &format!("kubernetes=={VERSION}")]), "installing the Kubernetes Python client")?;
    std::fs::write(&done, VERSION)?;
    Ok(python)
}
