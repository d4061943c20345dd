//! A containerd of a test's own (root, state and socket under a given directory; the CRI
//! plugin off), and the cleanup that leaves nothing behind when it goes: its tasks
//! killed and deleted, the daemon stopped, mounts under its directory unmounted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub struct Containerd {
    dir: PathBuf,
    process: Option<Child>,
    /// The CPU accounting group containerd runs in, and with it its shims and runc.
    cpu: Option<CpuGroup>,
}

impl Containerd {
    /// Start containerd under `dir` (created) and wait until its socket answers.
    pub fn start(dir: &Path) -> anyhow::Result<Containerd> {
        std::fs::create_dir_all(dir)?;
        let d = dir.display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        std::fs::write(dir.join("config.toml"), config)?;
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let process = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("containerd must be installed (scripts/install-deps)")?;
        let cpu = CpuGroup::create().and_then(|g| g.adopt(process.id()).map(|()| g));
        let cpu = match cpu {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("containerd's CPU time will not be measured: {e}");
                None
            }
        };
        let c = Containerd { dir: dir.to_path_buf(), process: Some(process), cpu };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.ctr(&["version"]).is_ok_and(|o| o.status.success()) {
            if Instant::now() > deadline {
                bail!("containerd did not come up: {}", c.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(c)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    /// CPU time used so far by containerd, its shims and the runc processes they ran (not
    /// the containers: runc moves them into their own cgroups); None where not measured.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.cpu.as_ref().and_then(CpuGroup::usage)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("ctr").arg("--address").arg(self.socket()).args(["--namespace", "orch"]).args(args).output()
    }

    /// Ids of the containers in orch's namespace.
    pub fn containers(&self) -> Vec<String> {
        self.list(&["containers", "ls", "-q"])
    }

    /// Ids of the tasks that are running.
    pub fn running_tasks(&self) -> Vec<String> {
        self.list(&["tasks", "ls"]).into_iter().filter(|l| l.contains("RUNNING")).filter_map(|l| l.split_whitespace().next().map(String::from)).collect()
    }

    /// Names of the active and committed snapshots of orch's namespace that are not image layers.
    pub fn snapshots(&self) -> Vec<String> {
        self.list(&["snapshots", "ls"]).into_iter().skip(1).filter_map(|l| l.split_whitespace().next().map(String::from)).filter(|k| !k.starts_with("sha256:")).collect()
    }

    fn list(&self, args: &[&str]) -> Vec<String> {
        self.ctr(args).map(|o| String::from_utf8_lossy(&o.stdout).lines().map(String::from).filter(|l| !l.is_empty()).collect()).unwrap_or_default()
    }

    /// Kill and delete every task and container, then stop containerd.
    pub fn shutdown(&mut self) {
        let Some(mut process) = self.process.take() else { return };
        for id in self.list(&["tasks", "ls", "-q"]) {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", &id]);
        }
        // Killed tasks stop within moments; wait (briefly) until none runs, then delete
        // tasks and containers once each. Stragglers' shims are killed below.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.running_tasks().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for id in self.containers() {
            let _ = self.ctr(&["tasks", "rm", "-f", &id]);
            let _ = self.ctr(&["containers", "rm", &id]);
        }
        let _ = Command::new("kill").arg(process.id().to_string()).status();
        let _ = process.wait();
        // Shims outlive containerd; any still serving a task of ours (one that would not
        // die in time above) goes now, with its container's processes.
        for shim in shims_of(&self.socket()) {
            let _ = Command::new("pkill").args(["-9", "-P", &shim.to_string()]).status();
            let _ = Command::new("kill").args(["-9", &shim.to_string()]).status();
        }
        unmount_under(&self.dir);
        if let Some(g) = self.cpu.take() {
            g.remove();
        }
    }
}

/// A cgroup for CPU accounting only (cgroup v1 `cpuacct`, or v2's `cpu.stat`); its
/// members' children start in it.
struct CpuGroup {
    dir: PathBuf,
    v2: bool,
}

impl CpuGroup {
    fn create() -> anyhow::Result<CpuGroup> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("orch-test-containerd-{}-{n}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/cpuacct");
        let (dir, v2) = if v1.join("cpuacct.usage").exists() {
            (v1.join(name), false)
        } else if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            (Path::new("/sys/fs/cgroup").join(name), true)
        } else {
            bail!("no cgroup v1 cpuacct or cgroup v2 hierarchy at /sys/fs/cgroup");
        };
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(CpuGroup { dir, v2 })
    }

    fn adopt(&self, pid: u32) -> anyhow::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).with_context(|| format!("moving {pid} into {}", self.dir.display()))
    }

    fn usage(&self) -> Option<Duration> {
        if self.v2 {
            let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
            let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec ")).and_then(|v| v.trim().parse().ok())?;
            Some(Duration::from_micros(usec))
        } else {
            let ns = std::fs::read_to_string(self.dir.join("cpuacct.usage")).ok()?.trim().parse().ok()?;
            Some(Duration::from_nanos(ns))
        }
    }

    /// Remove the group once its processes are gone (they were just killed: give them a
    /// moment to be reaped).
    fn remove(self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// PIDs of the containerd shims started for the containerd listening at `socket`.
fn shims_of(socket: &Path) -> Vec<u32> {
    let needle = format!("-address\0{}", socket.display());
    let Ok(procs) = std::fs::read_dir("/proc") else { return vec![] };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("containerd-shim") && cmd.contains(&needle)
        })
        .collect()
}

/// Lazily unmount everything mounted at or below `dir` (deepest first).
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return };
    let root = dir.display().to_string();
    let mut points: Vec<&str> = mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&root)).collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for m in points {
        let _ = Command::new("umount").arg("-l").arg(m).status();
    }
}

/// cgroup directories left at or below `/<parent>` in any controller.
pub fn cgroups_under(parent: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else { return out };
    for c in controllers.flatten() {
        let top = c.path().join(parent.trim_matches('/'));
        collect_dirs(&top, &mut out);
    }
    out
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten().filter(|e| e.path().is_dir()) {
            collect_dirs(&e.path(), out);
        }
    }
    out.push(dir.to_path_buf());
}

/// Remove the cgroup tree `/<parent>` in every controller (children first).
pub fn remove_cgroups(parent: &str) {
    for dir in cgroups_under(parent) {
        let _ = std::fs::remove_dir(dir);
    }
}
