//! The real `kubectl` (1.32, installed on the machine) against a test cluster's node, as a
//! user runs it (with the admin kubeconfig): arguments, optional stdin, exit code and output.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::cluster::Cluster;

/// What one kubectl run printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == 0
    }
}

/// Run `kubectl ARGS` against node `i` as the administrator, feeding `stdin` if given.
pub fn kubectl(c: &Cluster, i: usize, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Run> {
    kubectl_as(c, &c.kubeconfig(), i, args, stdin)
}

/// Run `kubectl ARGS` against node `i` with the credentials of `kubeconfig`.
pub fn kubectl_as(c: &Cluster, kubeconfig: &Path, i: usize, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Run> {
    let server = format!("https://{}", c.nodes[i].api());
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--server", &server, "--request-timeout", "20s"])
        .args(args)
        // Nothing of the machine's own kubectl configuration may leak into a test.
        .env_remove("KUBECONFIG")
        .env("HOME", c.work_dir())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl is installed")?;
    if let Some(input) = stdin {
        child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
