//! The containerd runtime against a real containerd (its own root, state and socket in a
//! temp dir) and runc: image import from an OCI archive built from Debian's static busybox,
//! containers that run, write logs, exit with a code, are killed and removed.

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_tests::containerd::{remove_cgroups, Containerd};

use orch::kubelet::containerd::ContainerdRuntime;
use orch::kubelet::image::busybox_archive;
use orch::kubelet::runtime::{ContainerConfig, ContainerRuntime, ContainerState, RuntimeError};

const IMAGE: &str = "orch.local/busybox:test";

async fn connect(c: &Containerd) -> ContainerdRuntime {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if c.socket().exists() {
            if let Ok(rt) = ContainerdRuntime::connect(&c.socket()).await {
                return rt;
            }
        }
        assert!(Instant::now() < deadline, "containerd did not come up: {}", c.log());
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
    let dir = tempfile::Builder::new().prefix("orch-ctrd-").tempdir_in("/tmp").unwrap();
    let ctrd = Containerd::start(dir.path()).unwrap();
    let rt = connect(&ctrd).await;
    let archive = busybox_archive(IMAGE, Path::new("/bin/busybox")).expect("busybox-static provides /bin/busybox");
    assert!(!rt.has_image(IMAGE).await.unwrap());
    assert_eq!(rt.import_image(&archive).await.unwrap(), vec![IMAGE.to_string()]);
    assert!(rt.has_image(IMAGE).await.unwrap());
    // Importing again changes nothing and still succeeds.
    assert_eq!(rt.import_image(&archive).await.unwrap(), vec![IMAGE.to_string()]);

    let logs = ctrd.dir().join("logs");
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

    // A process exec'd into the running container: its output, its exit code, its env.
    let args: Vec<String> = ["sh", "-c", "echo $GREETING; echo oops >&2; exit 4"].iter().map(|s| s.to_string()).collect();
    let (code, out) = orch::kubelet::runtime::exec_capture(&rt, "long", &args, Duration::from_secs(10), 1024).await.unwrap();
    assert_eq!((code, String::from_utf8_lossy(&out).into_owned()), (4, "hello from orch\noops\n".to_string()));
    let slow: Vec<String> = ["sleep", "30"].iter().map(|s| s.to_string()).collect();
    let timed_out = orch::kubelet::runtime::exec_capture(&rt, "long", &slow, Duration::from_millis(300), 1024).await;
    assert!(timed_out.unwrap_err().to_string().contains("timed out"));

    rt.signal("long", 9).await.unwrap();
    assert_eq!(wait_state(&rt, "long", |s| matches!(s, ContainerState::Exited { .. })).await, ContainerState::Exited { code: 137 });

    let missing = ContainerConfig { image: "orch.local/absent:1".into(), ..config("nope", "true", &logs) };
    assert!(matches!(rt.run(&missing).await, Err(RuntimeError::ImageNotFound(_))));

    for id in ["long", "exits"] {
        rt.remove(id).await.unwrap();
        assert!(matches!(rt.info(id).await, Err(RuntimeError::NotFound(_))));
    }
    assert!(rt.list().await.unwrap().is_empty());
    drop(ctrd);
    remove_cgroups("orch-test");
}
