//! Container logs as `GET /api/v1/namespaces/{ns}/pods/{name}/log` serves them on the
//! node that runs the pod: from the per-attempt files the kubelet points containerd at,
//! with `container`, `previous`, `tailLines` and `follow`. Choosing the file and the tail
//! is pure (`pick_attempt`, `tail`); following polls the file and ends when the attempt
//! is over (its container exited or was removed, or a newer attempt began).

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::api::status::ApiError;
use crate::kubelet::containerd::ContainerdRuntime;
use crate::kubelet::runtime::{ContainerRuntime, ContainerState};
use crate::kubelet::sync::container_id;

/// The attempts that have a log file, oldest first.
pub fn attempts(dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

/// The attempt to show: the latest, or the one before it for `previous`.
pub fn pick_attempt(attempts: &[u32], previous: bool) -> Option<u32> {
    let skip = usize::from(previous);
    attempts.iter().rev().nth(skip).copied()
}

/// The last `n` lines of `text` (all of it for None).
pub fn tail(text: &[u8], n: Option<usize>) -> &[u8] {
    let Some(n) = n else { return text };
    if n == 0 {
        return &[];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

pub struct LogRequest {
    pub uid: String,
    pub pod: String,
    pub container: String,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    pub follow: bool,
}

/// The log file to serve, or the error Kubernetes gives when there is none.
pub fn log_file(kubelet_dir: &Path, r: &LogRequest) -> Result<(PathBuf, u32), ApiError> {
    let dir = kubelet_dir.join("pods").join(&r.uid).join("logs").join(&r.container);
    let all = attempts(&dir);
    match pick_attempt(&all, r.previous) {
        Some(a) => Ok((dir.join(format!("{a}.log")), a)),
        None if r.previous => Err(ApiError::bad_request(format!("previous terminated container {:?} in pod {:?} not found", r.container, r.pod))),
        None => Err(ApiError::bad_request(format!("container {:?} in pod {:?} is waiting to start", r.container, r.pod))),
    }
}

/// Stream the log: what is there (tailed), then, when following, what gets appended.
pub fn stream(kubelet_dir: PathBuf, socket: PathBuf, r: LogRequest) -> Result<tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>, ApiError> {
    let (path, attempt) = log_file(&kubelet_dir, &r)?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let Ok(mut file) = tokio::fs::File::open(&path).await else { return };
        let mut start = Vec::new();
        if file.read_to_end(&mut start).await.is_err() {
            return;
        }
        let first = Bytes::copy_from_slice(tail(&start, r.tail_lines));
        if !first.is_empty() && tx.send(Ok(first)).await.is_err() {
            return;
        }
        if !r.follow || r.previous {
            return;
        }
        let runtime = ContainerdRuntime::connect(&socket).await.ok();
        let id = container_id(&r.uid, &r.container, attempt);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut offset = start.len() as u64;
        loop {
            // Decide whether this is the last read before reading, so nothing written
            // just before the end is missed.
            let over = match &runtime {
                Some(rt) => !matches!(rt.info(&id).await.map(|i| i.state), Ok(ContainerState::Running { .. } | ContainerState::Created)),
                None => true,
            } || attempts(&dir).last().is_some_and(|a| *a > attempt);
            let mut chunk = Vec::new();
            if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() || file.read_to_end(&mut chunk).await.is_err() {
                return;
            }
            offset += chunk.len() as u64;
            if !chunk.is_empty() && tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return;
            }
            if over || tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts_lines_from_the_end() {
        assert_eq!(tail(b"a\nb\nc\n", Some(2)), b"b\nc\n");
        assert_eq!(tail(b"a\nb\nc", Some(1)), b"c");
        assert_eq!(tail(b"a\nb\n", Some(5)), b"a\nb\n");
        assert_eq!(tail(b"a\nb\n", Some(0)), b"");
        assert_eq!(tail(b"a\nb\n", None), b"a\nb\n");
    }

    #[test]
    fn previous_is_the_attempt_before_the_latest() {
        assert_eq!(pick_attempt(&[0, 1, 2], false), Some(2));
        assert_eq!(pick_attempt(&[0, 1, 2], true), Some(1));
        assert_eq!(pick_attempt(&[3], true), None);
        let dir = tempfile::tempdir().unwrap();
        for n in [2, 10, 1] {
            std::fs::write(dir.path().join(format!("{n}.log")), "x").unwrap();
        }
        std::fs::write(dir.path().join("junk"), "x").unwrap();
        assert_eq!(attempts(dir.path()), vec![1, 2, 10]);
    }
}
