//! Container log rotation: containerd's shim appends to one file per container run; when it
//! passes the size limit the kubelet copies it aside (`N.log.1`, older copies shifted up to
//! the number kept) and truncates it in place, so the shim's open file stays valid
//! (copy-truncate: a line written between the copy and the truncation can be lost).

use std::io;
use std::path::{Path, PathBuf};

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Rotate `path` if it is larger than `max_bytes`, keeping `keep` old copies; true if it did.
pub fn rotate_if_needed(path: &Path, max_bytes: u64, keep: usize) -> io::Result<bool> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size <= max_bytes || keep == 0 {
        return Ok(false);
    }
    for n in (1..keep).rev() {
        let from = numbered(path, n);
        if from.exists() {
            std::fs::rename(&from, numbered(path, n + 1))?;
        }
    }
    std::fs::copy(path, numbered(path, 1))?;
    std::fs::OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_the_limit_and_keeps_the_newest_copies() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        std::fs::write(&log, "small").unwrap();
        assert!(!rotate_if_needed(&log, 10, 2).unwrap());
        for round in ["first-round-of-output", "second-round-of-output", "third-round-of-output"] {
            std::fs::write(&log, round).unwrap();
            assert!(rotate_if_needed(&log, 10, 2).unwrap());
            assert_eq!(std::fs::read_to_string(&log).unwrap(), "");
        }
        assert_eq!(std::fs::read_to_string(dir.path().join("0.log.1")).unwrap(), "third-round-of-output");
        assert_eq!(std::fs::read_to_string(dir.path().join("0.log.2")).unwrap(), "second-round-of-output");
        assert!(!dir.path().join("0.log.3").exists());
        assert!(!rotate_if_needed(&dir.path().join("absent.log"), 10, 2).unwrap());
    }
}
