//! OCI image-layout archives (`orchctl image load`, test images): parsing and verifying
//! them, layer chain ids, and building the small busybox image the tests use. Pure: bytes
//! in, descriptors out. Importing into containerd is in `containerd.rs`.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::runtime::RuntimeError;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
}

impl Descriptor {
    pub fn from_json(v: &Value) -> Result<Self, RuntimeError> {
        let bad = |what: &str| RuntimeError::BadArchive(format!("descriptor without {what}: {v}"));
        Ok(Descriptor {
            media_type: v["mediaType"].as_str().ok_or_else(|| bad("mediaType"))?.to_string(),
            digest: v["digest"].as_str().ok_or_else(|| bad("digest"))?.to_string(),
            size: v["size"].as_i64().ok_or_else(|| bad("size"))?,
        })
    }
}

/// One image in an archive: its name, manifest, config and layers (with their diff ids).
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    pub name: String,
    /// What the image record points at (the manifest).
    pub target: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    /// Digests of the uncompressed layers, from the config.
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Archive {
    /// Every blob, keyed by digest (verified).
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub images: Vec<ArchiveImage>,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    format!("sha256:{}", d.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The snapshot chain ids of a stack of layers (OCI image spec: ChainID).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => sha256_digest(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Read and verify an OCI image-layout tar.
pub fn parse_archive(bytes: &[u8]) -> Result<Archive, RuntimeError> {
    let bad = |e: &dyn std::fmt::Display| RuntimeError::BadArchive(e.to_string());
    let mut archive = tar::Archive::new(bytes);
    let mut blobs = BTreeMap::new();
    let mut index: Option<Value> = None;
    for entry in archive.entries().map_err(|e| bad(&e))? {
        let mut entry = entry.map_err(|e| bad(&e))?;
        let path = entry.path().map_err(|e| bad(&e))?.to_string_lossy().trim_start_matches("./").to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(|e| bad(&e))?;
        if path == "index.json" {
            index = Some(serde_json::from_slice(&data).map_err(|e| bad(&e))?);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let digest = format!("sha256:{hex}");
            if sha256_digest(&data) != digest {
                return Err(RuntimeError::BadArchive(format!("blob {path} does not match its digest")));
            }
            blobs.insert(digest, data);
        }
    }
    let index = index.ok_or_else(|| RuntimeError::BadArchive("no index.json: not an OCI image layout".into()))?;
    let blob_json = |d: &Descriptor| -> Result<Value, RuntimeError> {
        let b = blobs.get(&d.digest).ok_or_else(|| RuntimeError::BadArchive(format!("missing blob {}", d.digest)))?;
        serde_json::from_slice(b).map_err(|e| bad(&e))
    };
    let mut images = Vec::new();
    for m in index["manifests"].as_array().cloned().unwrap_or_default() {
        let annotations = &m["annotations"];
        let name = annotations["io.containerd.image.name"]
            .as_str()
            .or_else(|| annotations["org.opencontainers.image.ref.name"].as_str())
            .ok_or_else(|| RuntimeError::BadArchive("an index entry has no image name annotation".into()))?
            .to_string();
        let mut target = Descriptor::from_json(&m)?;
        if is_index(&target.media_type) {
            target = pick_platform(&name, &blob_json(&target)?)?;
        }
        let (config, layers) = manifest_parts(&name, &target, &blob_json(&target)?)?;
        let ids = diff_ids(&name, &blob_json(&config)?, layers.len())?;
        for d in layers.iter().chain([&config]) {
            if !blobs.contains_key(&d.digest) {
                return Err(RuntimeError::BadArchive(format!("{name}: missing blob {}", d.digest)));
            }
        }
        images.push(ArchiveImage { name, target, config, layers, diff_ids: ids });
    }
    if images.is_empty() {
        return Err(RuntimeError::BadArchive("the archive holds no image".into()));
    }
    Ok(Archive { blobs, images })
}

/// Whether a manifest media type is a multi-platform index (OCI or Docker).
pub fn is_index(media_type: &str) -> bool {
    media_type == INDEX || media_type == DOCKER_LIST
}

/// The manifest media types orch reads (an index's entries resolve to one of these).
pub const MANIFEST_TYPES: [&str; 4] = [MANIFEST, DOCKER_MANIFEST, INDEX, DOCKER_LIST];

/// From a multi-platform index: the linux/amd64 manifest, else the first.
pub fn pick_platform(name: &str, index: &Value) -> Result<Descriptor, RuntimeError> {
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let pick = entries
        .iter()
        .find(|e| e["platform"]["os"] == "linux" && e["platform"]["architecture"] == "amd64")
        .or(entries.first())
        .ok_or_else(|| RuntimeError::BadArchive(format!("{name}: empty index")))?;
    Descriptor::from_json(pick)
}

/// A single-platform manifest's config and layers.
pub fn manifest_parts(name: &str, target: &Descriptor, manifest: &Value) -> Result<(Descriptor, Vec<Descriptor>), RuntimeError> {
    if target.media_type != MANIFEST && target.media_type != DOCKER_MANIFEST {
        return Err(RuntimeError::BadArchive(format!("{name}: unsupported manifest type {}", target.media_type)));
    }
    let config = Descriptor::from_json(&manifest["config"])?;
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default().iter().map(Descriptor::from_json).collect::<Result<Vec<_>, _>>()?;
    Ok((config, layers))
}

/// The uncompressed layer digests an image config lists, one per layer.
pub fn diff_ids(name: &str, config: &Value, layers: usize) -> Result<Vec<String>, RuntimeError> {
    let ids: Vec<String> = config["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default().iter().filter_map(|d| d.as_str().map(String::from)).collect();
    if ids.len() != layers {
        return Err(RuntimeError::BadArchive(format!("{name}: {layers} layers but {} diff ids", ids.len())));
    }
    Ok(ids)
}

fn tar_append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    b.append_data(&mut h, path, data)
}

/// An OCI archive of one image named `name`: a single layer holding `busybox` (read from
/// `busybox_path`, e.g. Debian's static /bin/busybox) and links for its common applets.
pub fn busybox_archive(name: &str, busybox_path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let busybox = std::fs::read(busybox_path)?;
    let mut layer = tar::Builder::new(Vec::new());
    for dir in ["bin", "tmp", "etc", "proc", "sys", "dev", "www"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if dir == "tmp" { 0o1777 } else { 0o755 });
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        layer.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    tar_append(&mut layer, "bin/busybox", &busybox, 0o755)?;
    // A link for every applet this busybox offers (so `exec uname` works as it would in
    // a busybox image), or a basic set if it cannot say.
    let listed = std::process::Command::new(busybox_path).arg("--list").output().ok().filter(|o| o.status.success());
    let mut applets: Vec<String> = listed.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::trim).filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/')).map(String::from).collect()).unwrap_or_default();
    if applets.is_empty() {
        applets = ["sh", "sleep", "echo", "cat", "ls", "httpd", "wget", "env", "true", "false", "kill", "hostname", "id", "head", "dd", "nc"].map(String::from).to_vec();
    }
    applets.sort();
    applets.dedup();
    for applet in applets {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_mtime(0);
        h.set_size(0);
        h.set_cksum();
        layer.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    let layer = layer.into_inner()?;
    let layer_digest = sha256_digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": LAYER_TAR, "digest": layer_digest, "size": layer.len()}],
    }))?;
    let manifest_digest = sha256_digest(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": MANIFEST, "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}}],
    }))?;
    let mut out = tar::Builder::new(Vec::new());
    tar_append(&mut out, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    tar_append(&mut out, "index.json", &index, 0o644)?;
    for blob in [&layer, &config, &manifest] {
        let hex = sha256_digest(blob).trim_start_matches("sha256:").to_string();
        tar_append(&mut out, &format!("blobs/sha256/{hex}"), blob, 0o644)?;
    }
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_busybox() -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"\x7fELF not really").unwrap();
        f
    }

    #[test]
    fn built_archive_parses_back() {
        let bin = fake_busybox();
        let bytes = busybox_archive("orch.local/busybox:test", bin.path()).unwrap();
        let a = parse_archive(&bytes).unwrap();
        assert_eq!(a.images.len(), 1);
        let img = &a.images[0];
        assert_eq!(img.name, "orch.local/busybox:test");
        assert_eq!((img.layers.len(), img.diff_ids.len()), (1, 1));
        // Uncompressed layer: its digest is its diff id.
        assert_eq!(img.layers[0].digest, img.diff_ids[0]);
        assert_eq!(a.blobs.len(), 3);
    }

    #[test]
    fn corrupt_archives_are_refused() {
        assert!(matches!(parse_archive(b"not a tar"), Err(RuntimeError::BadArchive(_))));
        let bin = fake_busybox();
        let mut bytes = busybox_archive("x", bin.path()).unwrap();
        // Flip a byte inside the first blob's data: its digest no longer matches.
        let pos = bytes.windows(15).position(|w| w == b"\x7fELF not really").unwrap();
        bytes[pos + 1] ^= 0xff;
        let err = parse_archive(&bytes).unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let d = vec!["sha256:a".to_string(), "sha256:b".to_string()];
        let c = chain_ids(&d);
        assert_eq!(c[0], "sha256:a");
        assert_eq!(c[1], sha256_digest(b"sha256:a sha256:b"));
    }
}
