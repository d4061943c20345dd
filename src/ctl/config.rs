//! orchctl's client configuration: named contexts (server + default namespace) in
//! `$ORCHCONFIG` or `~/.orch/config.yaml`, and how the server is chosen.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ClientConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_context: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, ContextEntry>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContextEntry {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("ORCHCONFIG") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".orch").join("config.yaml")
}

impl ClientConfig {
    pub fn load() -> anyhow::Result<ClientConfig> {
        let p = path();
        match std::fs::read_to_string(&p) {
            Ok(text) => serde_norway::from_str(&text).with_context(|| format!("parsing {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientConfig::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let p = path();
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&p, serde_norway::to_string(self)?).with_context(|| format!("writing {}", p.display()))
    }

    /// The context to use: the one named, else the current one.
    pub fn context(&self, name: Option<&str>) -> anyhow::Result<Option<&ContextEntry>> {
        match name.or(self.current_context.as_deref()) {
            None => Ok(None),
            Some(n) => self.contexts.get(n).map(Some).with_context(|| format!("no context named {n:?} in {}", path().display())),
        }
    }
}

/// `--server` wins, then `ORCH_SERVER`, then the context, then the local default.
pub fn resolve_server(flag: Option<&str>, ctx: Option<&ContextEntry>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("ORCH_SERVER").ok())
        .or_else(|| ctx.map(|c| c.server.clone()))
        .unwrap_or_else(|| "127.0.0.1:6443".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_context() {
        let ctx = ContextEntry { server: "10.0.0.1:6443".into(), namespace: None };
        assert_eq!(resolve_server(Some("h:1"), Some(&ctx)), "h:1");
        let cfg: ClientConfig =
            serde_norway::from_str("current-context: a\ncontexts:\n  a: {server: 'x:1', namespace: dev}\n").unwrap();
        assert_eq!(cfg.context(None).unwrap().unwrap().namespace.as_deref(), Some("dev"));
        assert!(cfg.context(Some("missing")).is_err());
    }
}
