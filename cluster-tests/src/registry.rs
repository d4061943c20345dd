//! A real OCI registry for the tests: Debian's `docker-registry` (distribution 2.8) on the
//! test network's gateway address, optionally behind htpasswd basic auth, and pushing the
//! tests' own images into it with oci-client (nothing comes from the internet).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use orch::kubelet::image::Archive;

pub struct Registry {
    child: std::process::Child,
    /// `host:port`, as image names and `--insecure-registries` spell it.
    pub host: String,
    auth: RegistryAuth,
}

impl Registry {
    /// Serve on `addr:port` with storage under `dir`; with `user` = (name, password) every
    /// request needs basic auth (the htpasswd file is made with Debian's `htpasswd`).
    pub async fn start(addr: Ipv4Addr, port: u16, dir: &Path, user: Option<(&str, &str)>) -> anyhow::Result<Registry> {
        std::fs::create_dir_all(dir)?;
        let mut auth_conf = String::new();
        let mut auth = RegistryAuth::Anonymous;
        if let Some((name, password)) = user {
            let out = Command::new("htpasswd").args(["-Bbn", name, password]).output().context("htpasswd (Debian package apache2-utils)")?;
            anyhow::ensure!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
            std::fs::write(dir.join("htpasswd"), out.stdout)?;
            auth_conf = format!("auth:\n  htpasswd:\n    realm: orch-test\n    path: {}\n", dir.join("htpasswd").display());
            auth = RegistryAuth::Basic(name.into(), password.into());
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}:{port}\n  secret: orch-test\n{auth_conf}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config)?;
        let log = std::fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("docker-registry (Debian package docker-registry)")?;
        let mut registry = Registry { child, host: format!("{addr}:{port}"), auth };
        // Serving once its port accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect((addr, port)).await.is_ok() {
                return Ok(registry);
            }
            if let Some(status) = registry.child.try_wait()? {
                bail!("docker-registry exited ({status}): {}", std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default());
            }
            anyhow::ensure!(Instant::now() < deadline, "docker-registry not listening on {addr}:{port} after 10 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Push the (single) image of `archive` as `repository:tag`, its manifest byte for
    /// byte (so the registry's digest is the archive's); returns that digest.
    pub async fn push(&self, repository_tag: &str, archive: &Archive) -> anyhow::Result<String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let reference: Reference = format!("{}/{repository_tag}", self.host).parse()?;
        let client = Client::new(ClientConfig { protocol: ClientProtocol::Http, ..Default::default() });
        client.store_auth_if_needed(reference.resolve_registry(), &self.auth).await;
        let image = archive.images.first().context("the archive holds no image")?;
        for d in image.layers.iter().chain([&image.config]) {
            client.push_blob(&reference, archive.blobs[&d.digest].clone(), &d.digest).await.with_context(|| format!("pushing blob {}", d.digest))?;
        }
        let manifest = archive.blobs[&image.target.digest].clone();
        let content_type = http::HeaderValue::from_str(&image.target.media_type)?;
        client.push_manifest_raw(&reference, manifest, content_type).await.context("pushing the manifest")?;
        // What a pull of the tag now gets must be this manifest, byte for byte.
        let (back, _) = client.pull_manifest_raw(&reference, &self.auth, &[&image.target.media_type]).await.context("reading the manifest back")?;
        let digest = orch::kubelet::image::sha256_digest(&back);
        anyhow::ensure!(digest == image.target.digest, "pushed manifest {} but the registry serves {digest}: {}", image.target.digest, String::from_utf8_lossy(&back));
        Ok(digest)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
