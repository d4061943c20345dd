//! The OCI runtime spec (config.json) runc gets for a container: process, mounts,
//! namespaces (joining the pod's network namespace), cgroup limits. Pure.
//!
//! Built as JSON rather than with a spec crate: it is one document, and the fields orch
//! sets are few; the defaults (capabilities, masked paths) follow containerd's own.

use serde_json::{json, Value};

use super::runtime::ContainerConfig;

const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
    "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

const MASKED: &[&str] = &[
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
];

const READONLY: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The annotation containerd's runc v2 shim groups containers by.
pub const SHIM_GROUP: &str = "io.containerd.runc.v2.group";

/// CFS period used for CPU limits (µs), as the kubelet does.
pub const CPU_PERIOD: i64 = 100_000;

/// cpu.shares from a request in millicores (Kubernetes: 1024 per core, at least 2).
pub fn cpu_shares(millis: i64) -> u64 {
    ((millis * 1024) / 1000).max(2) as u64
}

pub fn spec(c: &ContainerConfig) -> Value {
    let mut env: Vec<String> = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
    for (k, v) in &c.env {
        if k == "PATH" {
            env[0] = format!("PATH={v}");
        } else {
            env.push(format!("{k}={v}"));
        }
    }
    env.push(format!("HOSTNAME={}", c.hostname));
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    for (host, dest, ro) in &c.mounts {
        let mut options = vec!["rbind", "rprivate"];
        options.push(if *ro { "ro" } else { "rw" });
        mounts.push(json!({"destination": dest, "type": "bind", "source": host, "options": options}));
    }
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "uts"}), json!({"type": "mount"})];
    namespaces.push(match &c.ipcns {
        Some(path) => json!({"type": "ipc", "path": path}),
        None => json!({"type": "ipc"}),
    });
    namespaces.push(match &c.netns {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    });
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(limit) = c.memory_limit {
        resources["memory"] = json!({"limit": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(req) = c.cpu_request_millis {
        cpu.insert("shares".into(), cpu_shares(req).into());
    }
    if let Some(limit) = c.cpu_limit_millis {
        cpu.insert("quota".into(), (limit * CPU_PERIOD / 1000).max(1000).into());
        cpu.insert("period".into(), CPU_PERIOD.into());
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    let mut annotations = serde_json::Map::new();
    if let Some(group) = &c.shim_group {
        // containerd's runc shim (v2) serves every container of a group from one process.
        annotations.insert(SHIM_GROUP.into(), group.as_str().into());
    }
    json!({
        "ociVersion": "1.0.2",
        "annotations": annotations,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": c.args,
            "env": env,
            "cwd": c.working_dir.clone().unwrap_or_else(|| "/".into()),
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": c.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": resources,
            "cgroupsPath": c.cgroup,
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn limits_netns_and_env_reach_the_spec() {
        let c = ContainerConfig {
            id: "p-c".into(),
            args: vec!["sleep".into(), "10".into()],
            env: vec![("A".into(), "1".into()), ("PATH".into(), "/bin".into())],
            hostname: "web-0".into(),
            netns: Some(PathBuf::from("/var/run/netns/pod")),
            mounts: vec![(PathBuf::from("/data/x"), "/etc/config".into(), true)],
            memory_limit: Some(64 << 20),
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
            cgroup: "/orch/uid/c".into(),
            shim_group: Some("pod-uid".into()),
            ..Default::default()
        };
        let s = spec(&c);
        assert_eq!(s["annotations"][SHIM_GROUP], "pod-uid");
        assert_eq!(s["process"]["env"][0], "PATH=/bin");
        assert!(s["process"]["env"].as_array().unwrap().contains(&json!("A=1")));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 256);
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/var/run/netns/pod"})));
        let bind = s["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!((bind["destination"].as_str(), bind["options"][2].as_str()), (Some("/etc/config"), Some("ro")));
    }

    #[test]
    fn shares_have_a_floor() {
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(1000), 1024);
    }
}
