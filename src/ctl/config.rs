//! orchctl's client configuration: standard kubeconfig files (see `crate::kubeconfig`),
//! how the server and credentials are chosen, and the `orchctl config` commands that edit
//! contexts as `kubectl config` does.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::kubeconfig::{self, ContextInfo, Credentials, Kubeconfig, Named};

/// `--server` (or `ORCH_SERVER`) overrides the context's server; everything else comes
/// from the kubeconfig's context.
pub fn credentials(kubeconfig: Option<&Path>, context: Option<&str>, server: Option<&str>) -> anyhow::Result<Credentials> {
    let cfg = Kubeconfig::load(kubeconfig)?;
    let mut creds = cfg.credentials(context).with_context(|| {
        format!("reading credentials from {}", kubeconfig::paths(kubeconfig).iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"))
    })?;
    if let Some(s) = server.map(str::to_string).or_else(|| std::env::var("ORCH_SERVER").ok()) {
        creds.server = crate::client::base_url(&s);
    }
    Ok(creds)
}

/// The one file `orchctl config` edits: the explicit one, else the first of `$KUBECONFIG`,
/// else `~/.kube/config`.
fn file(explicit: Option<&Path>) -> PathBuf {
    kubeconfig::paths(explicit).into_iter().next().expect("paths always names a file")
}

fn load_one(path: &Path) -> anyhow::Result<Kubeconfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Kubeconfig::parse(&text).with_context(|| format!("parsing {}", path.display()))
}

fn save(path: &Path, cfg: &Kubeconfig) -> anyhow::Result<()> {
    crate::daemon::config::write_private(path, cfg.to_yaml().as_bytes()).with_context(|| format!("writing {}", path.display()))
}

pub fn use_context(explicit: Option<&Path>, name: &str) -> anyhow::Result<()> {
    let path = file(explicit);
    let mut cfg = load_one(&path)?;
    if !cfg.contexts.iter().any(|c| c.name == name) {
        bail!("no context named {name:?} in {}", path.display());
    }
    cfg.current_context = Some(name.to_string());
    save(&path, &cfg)?;
    println!("Switched to context {name:?}.");
    Ok(())
}

/// Set a context's namespace (and, for a new context, its cluster and user).
pub fn set_context(explicit: Option<&Path>, name: &str, cluster: Option<&str>, user: Option<&str>, namespace: Option<&str>) -> anyhow::Result<()> {
    let path = file(explicit);
    let mut cfg = load_one(&path)?;
    match cfg.contexts.iter_mut().find(|c| c.name == name) {
        Some(c) => {
            if let Some(cl) = cluster {
                c.item.context.cluster = cl.to_string();
            }
            if let Some(u) = user {
                c.item.context.user = u.to_string();
            }
            if let Some(ns) = namespace {
                c.item.context.namespace = Some(ns.to_string());
            }
        }
        None => {
            let cluster = cluster.context("a new context needs --cluster")?;
            cfg.contexts.push(Named {
                name: name.to_string(),
                item: kubeconfig::Context {
                    context: ContextInfo { cluster: cluster.into(), user: user.unwrap_or_default().into(), namespace: namespace.map(str::to_string) },
                },
            });
        }
    }
    save(&path, &cfg)?;
    println!("Context {name:?} modified.");
    Ok(())
}

/// The merged configuration with credentials left out, as `kubectl config view` shows it.
pub fn view(explicit: Option<&Path>) -> anyhow::Result<String> {
    let mut cfg = Kubeconfig::load(explicit)?;
    for c in &mut cfg.clusters {
        if c.item.cluster.certificate_authority_data.is_some() {
            c.item.cluster.certificate_authority_data = Some("DATA+OMITTED".into());
        }
    }
    for u in &mut cfg.users {
        let user = &mut u.item.user;
        for field in [&mut user.client_certificate_data, &mut user.client_key_data] {
            if field.is_some() {
                *field = Some("DATA+OMITTED".into());
            }
        }
        if user.token.is_some() {
            user.token = Some("REDACTED".into());
        }
    }
    Ok(cfg.to_yaml())
}

pub fn get_contexts(explicit: Option<&Path>) -> anyhow::Result<String> {
    let cfg = Kubeconfig::load(explicit)?;
    let mut out = format!("{:<8}{:<30}{:<20}{:<20}{}\n", "CURRENT", "NAME", "CLUSTER", "AUTHINFO", "NAMESPACE");
    for c in &cfg.contexts {
        let current = if cfg.current_context.as_deref() == Some(c.name.as_str()) { "*" } else { "" };
        let ctx = &c.item.context;
        out.push_str(&format!("{current:<8}{:<30}{:<20}{:<20}{}\n", c.name, ctx.cluster, ctx.user, ctx.namespace.as_deref().unwrap_or("")));
    }
    Ok(out)
}
