//! Namespaces pinned to files, as `ip netns add` does: a pod's network and IPC namespaces
//! are created once, bind-mounted onto files under the node's run dir, and joined by path
//! (by runc for each container, by netlink sockets for configuration). They outlive every
//! process, so a container restart keeps the pod's IP. Does I/O (syscalls); no decisions.
//!
//! Each operation runs on a short-lived thread of its own: `unshare` and `setns` change
//! only the calling thread's namespaces, so no other thread of orchd is ever moved.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Which namespace to pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsKind {
    Net,
    Ipc,
}

impl NsKind {
    fn flag(self) -> CloneFlags {
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
        }
    }

    fn proc_name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
        }
    }
}

/// `statfs` magic of nsfs, the file system namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

fn io_err(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// True when `path` is a pinned namespace (an nsfs bind mount).
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type().0 as i64 == NSFS_MAGIC).unwrap_or(false)
}

fn on_thread<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    std::thread::spawn(f).join().map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Create a new namespace of `kind` and pin it at `path` (idempotent).
pub fn pin(kind: NsKind, path: &Path) -> io::Result<()> {
    if is_pinned(path) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path)?;
    let target = path.to_path_buf();
    let pinned = on_thread(move || {
        unshare(kind.flag()).map_err(io_err)?;
        let own = format!("/proc/thread-self/ns/{}", kind.proc_name());
        mount(Some(own.as_str()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(io_err)
    });
    if pinned.is_err() {
        let _ = std::fs::remove_file(path);
    }
    pinned
}

/// Unmount and remove a pinned namespace; the namespace ends when its last user goes.
pub fn unpin(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(io_err(e)),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Run `f` on a thread inside the network namespace pinned at `path` (e.g. to open a
/// netlink socket there: a socket stays in the namespace it was created in).
pub fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    let path: PathBuf = path.to_path_buf();
    on_thread(move || {
        let ns = File::open(&path)?;
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io_err)?;
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_is_idempotent_and_unpin_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        pin(NsKind::Net, &path).unwrap();
        assert!(is_pinned(&path));
        pin(NsKind::Net, &path).unwrap();
        // Inside, only the new namespace's own link, `lo`, is seen (needs root, as CI runs).
        let own = in_netns(&path, || std::fs::read_to_string("/proc/thread-self/net/dev")).unwrap();
        assert_eq!(own.lines().filter(|l| l.contains(':')).count(), 1, "a new netns has only lo: {own}");
        unpin(&path).unwrap();
        assert!(!path.exists());
        unpin(&path).unwrap();
    }
}
