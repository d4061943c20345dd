//! The containerd runtime against a real containerd (its own root, state and socket in a
//! temp dir) and runc: image import from an OCI archive built from Debian's static busybox,
//! containers that run, write logs, exit with a code, are killed and removed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orch::kubelet::containerd::ContainerdRuntime;
use orch::kubelet::image::busybox_archive;
use orch::kubelet::runtime::{ContainerConfig, ContainerRuntime, ContainerState, RuntimeError};

const IMAGE: &str = "orch.local/busybox:test";

/// A containerd of the test's own; killed (with its leftovers unmounted) on drop.
struct Containerd {
    dir: tempfile::TempDir,
    process: Child,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new().prefix("orch-ctrd-").tempdir_in("/tmp").unwrap();
        let d = dir.path().display();
        let config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n"
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let process = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd must be installed (scripts/install-deps)");
        Containerd { dir, process }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.process.id().to_string()).status();
        let _ = self.process.wait();
        // runc removes each container's cgroup, not their shared parent.
        if let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") {
            for c in controllers.flatten() {
                let _ = std::fs::remove_dir(c.path().join("orch-test"));
            }
        }
        // Anything a failed test left mounted under our root.
        if let Ok(mounts) = std::fs::read_to_string("/proc/mounts") {
            let root = self.dir.path().display().to_string();
            for m in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|m| m.starts_with(&root)) {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
    }
}

async fn connect(c: &Containerd) -> ContainerdRuntime {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.socket().exists() {
            if let Ok(rt) = ContainerdRuntime::connect(&c.socket()).await {
                return rt;
            }
        }
        assert!(Instant::now() < deadline, "containerd did not come up: {}", std::fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_state(rt: &ContainerdRuntime, id: &str, want: impl Fn(ContainerState) -> bool) -> ContainerState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = rt.info(id).await.unwrap().state;
        if want(state) {
            return state;
        }
        assert!(Instant::now() < deadline, "{id} stuck in {state:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config(id: &str, script: &str, logs: &Path) -> ContainerConfig {
    ContainerConfig {
        id: id.into(),
        image: IMAGE.into(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("GREETING".into(), "hello from orch".into())],
        hostname: id.into(),
        cgroup: format!("/orch-test/{id}"),
        log_path: logs.join(format!("{id}.log")),
        memory_limit: Some(64 << 20),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn images_import_and_containers_run_exit_and_go_away() {
    let ctrd = Containerd::start();
    let rt = connect(&ctrd).await;
    let archive = busybox_archive(IMAGE, Path::new("/bin/busybox")).expect("busybox-static provides /bin/busybox");
    assert!(!rt.has_image(IMAGE).await.unwrap());
    assert_eq!(rt.import_image(&archive).await.unwrap(), vec![IMAGE.to_string()]);
    assert!(rt.has_image(IMAGE).await.unwrap());
    // Importing again changes nothing and still succeeds.
    assert_eq!(rt.import_image(&archive).await.unwrap(), vec![IMAGE.to_string()]);

    let logs = ctrd.dir.path().join("logs");
    let long = config("long", "echo $GREETING; echo to-stderr >&2; exec sleep 60", &logs);
    rt.run(&long).await.unwrap();
    wait_state(&rt, "long", |s| matches!(s, ContainerState::Running { .. })).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&long.log_path).unwrap_or_default().contains("to-stderr") {
        assert!(Instant::now() < deadline, "no logs: {:?}", std::fs::read_to_string(&long.log_path));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(std::fs::read_to_string(&long.log_path).unwrap().contains("hello from orch"));

    rt.run(&config("exits", "exit 3", &logs)).await.unwrap();
    assert_eq!(wait_state(&rt, "exits", |s| matches!(s, ContainerState::Exited { .. })).await, ContainerState::Exited { code: 3 });

    rt.signal("long", 9).await.unwrap();
    assert_eq!(wait_state(&rt, "long", |s| matches!(s, ContainerState::Exited { .. })).await, ContainerState::Exited { code: 137 });

    let missing = ContainerConfig { image: "orch.local/absent:1".into(), ..config("nope", "true", &logs) };
    assert!(matches!(rt.run(&missing).await, Err(RuntimeError::ImageNotFound(_))));

    for id in ["long", "exits"] {
        rt.remove(id).await.unwrap();
        assert!(matches!(rt.info(id).await, Err(RuntimeError::NotFound(_))));
    }
    assert!(rt.list().await.unwrap().is_empty());
}
