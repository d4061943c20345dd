//! orchctl: the command-line client. Parses commands (clap), talks to any node's API,
//! prints with `print`. Works against heads and workers alike.

pub mod config;
pub mod exec;
pub mod manifest;
pub mod portforward;
pub mod print;
pub mod rollout;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hyper::Method;
use serde_json::{json, Value};

use self::print::Output;
use crate::api::{object, resources};
use crate::client::{base_url, ApiClient, HttpError, Tls};

/// orchctl: manage an orch cluster through any of its nodes.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config), as kubectl reads it.
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// API address of any node (host:port or https://host:port), instead of the context's.
    #[arg(long, short = 's', global = true)]
    pub server: Option<String>,
    /// Context of the kubeconfig to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace (default: the context's, else "default").
    #[arg(long, short = 'n', global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create or update objects from files, directories or stdin (-).
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// List objects of a kind, or show one.
    Get {
        kind: String,
        name: Option<String>,
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete objects by kind and name, or those in files.
    Delete {
        kind: Option<String>,
        names: Vec<String>,
        #[arg(short = 'f', long = "filename")]
        files: Vec<String>,
    },
    /// Show an object in detail, with its recent events.
    Describe { kind: String, name: String },
    /// Cluster-level commands.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Make kubeconfigs for people (like `kubeadm kubeconfig user`).
    Kubeconfig {
        #[command(subcommand)]
        command: KubeconfigCommand,
    },
    /// Print a container's logs (served by the node that runs the pod, through any node).
    Logs {
        pod: String,
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Keep streaming new output until the container stops.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The previous (terminated) run of the container.
        #[arg(short = 'p', long)]
        previous: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<u64>,
    },
    /// Run a command in a container; exits with the command's exit code.
    Exec {
        pod: String,
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// Pass stdin to the command.
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Give the command a terminal (with -i, when stdin is a terminal): raw keys,
        /// window size followed.
        #[arg(short = 't', long)]
        tty: bool,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Forward local ports to a pod's ports ([LOCAL:]REMOTE; `:REMOTE` picks a free
    /// local port), through whichever node orchctl talks to. Runs until interrupted.
    PortForward {
        pod: String,
        #[arg(required = true)]
        ports: Vec<String>,
        /// Local address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        address: String,
    },
    /// Container images on the nodes.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// Set the replicas of a deployment, replicaset or statefulset.
    Scale {
        /// KIND/NAME, or KIND then NAME.
        target: String,
        name: Option<String>,
        #[arg(long)]
        replicas: u32,
    },
    /// Manage a deployment's rollout.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// Edit the client config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Every Raft member (role, voter/learner, leader, term, commit/applied index, reachable) and worker.
    Status {
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Rotate the key that seals Secrets at rest: a new key on every head, every Secret
    /// rewritten with it, the old key removed. Needs every head reachable, and cluster-admin.
    RotateEncryptionKey,
    /// Print a join token as it is now (`--role worker` joins workers only). Needs cluster-admin.
    Token {
        #[arg(long, value_enum, default_value = "head")]
        role: TokenRole,
    },
    /// Replace a join token with a new one and print it: the old one stops joining nodes at
    /// once; nodes that joined with it keep working. Needs cluster-admin.
    RotateToken {
        #[arg(long, value_enum)]
        role: TokenRole,
    },
}

/// Which join token: the head token joins heads and workers, the worker token workers only.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum TokenRole {
    Head,
    Worker,
}

impl TokenRole {
    fn as_str(self) -> &'static str {
        match self {
            TokenRole::Head => "head",
            TokenRole::Worker => "worker",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Write an OCI image archive holding the host's static busybox (/bin/busybox from
    /// Debian's busybox-static): a small image for trying orch without a registry.
    PackBusybox {
        /// The archive to write.
        file: std::path::PathBuf,
        #[arg(long, default_value = "orch.local/busybox:1.35")]
        name: String,
        #[arg(long, default_value = "/bin/busybox")]
        busybox: std::path::PathBuf,
    },
    /// Load an OCI image archive (tar) into every node, or one (for air-gapped clusters).
    Load {
        file: std::path::PathBuf,
        /// Only this node.
        #[arg(long)]
        node: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Follow the rollout until it is done (or fails, or times out).
    Status {
        target: String,
        name: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// The deployment's revisions.
    History { target: String, name: Option<String> },
    /// Go back to the previous revision, or to --to-revision.
    Undo {
        target: String,
        name: Option<String>,
        #[arg(long)]
        to_revision: Option<u64>,
    },
    /// Stop rolling out template changes.
    Pause { target: String, name: Option<String> },
    /// Roll out template changes again.
    Resume { target: String, name: Option<String> },
}

#[derive(Subcommand, Debug)]
pub enum KubeconfigCommand {
    /// A new key and a certificate the cluster signs for USER (in GROUP): printed as a
    /// kubeconfig for the server orchctl talks to. Needs cluster-admin.
    User {
        name: String,
        #[arg(long)]
        group: Option<String>,
        /// How long the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Write the kubeconfig here (mode 0600) instead of printing it.
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Add a context or change one's cluster, user or namespace.
    SetContext {
        name: String,
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Make a context the current one.
    UseContext { name: String },
    /// List the contexts.
    GetContexts,
    /// Show the merged kubeconfig, credentials left out.
    View,
}

struct Ctx {
    client: ApiClient,
    base: String,
    namespace: String,
    explicit_ns: bool,
}

impl Ctx {
    fn url(&self, res: &resources::Resource, ns: Option<&str>, name: Option<&str>) -> String {
        let root = if res.group.is_empty() { format!("{}/api/v1", self.base) } else { format!("{}/apis/{}/v1", self.base, res.group) };
        let mut url = match (res.namespaced, ns) {
            (true, Some(ns)) => format!("{root}/namespaces/{ns}/{}", res.plural),
            _ => format!("{root}/{}", res.plural),
        };
        if let Some(name) = name {
            url.push('/');
            url.push_str(name);
        }
        url
    }
}

fn kind_of(name: &str) -> anyhow::Result<&'static resources::Resource> {
    resources::lookup(name).with_context(|| format!("the server doesn't have a resource type {name:?}"))
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Config { command } = &cli.command {
        return config_command(cli.kubeconfig.as_deref(), command);
    }
    let creds = config::credentials(cli.kubeconfig.as_deref(), cli.context.as_deref(), cli.server.as_deref())?;
    let namespace = cli.namespace.clone().or_else(|| creds.namespace.clone()).unwrap_or_else(|| "default".into());
    let client = ApiClient::new(std::time::Duration::from_secs(30), &Tls::from_credentials(&creds)?);
    let ctx = Ctx { client, base: base_url(&creds.server), namespace, explicit_ns: cli.namespace.is_some() };
    match cli.command {
        Command::Apply { files } => apply(&ctx, &files).await,
        Command::Get { kind, name, all_namespaces, selector, output } => get(&ctx, &kind, name, all_namespaces, selector, output).await,
        Command::Delete { kind, names, files } => delete(&ctx, kind, names, files).await,
        Command::Describe { kind, name } => describe(&ctx, &kind, &name).await,
        Command::Cluster { command: ClusterCommand::Status { output } } => cluster_status(&ctx, output).await,
        Command::Cluster { command: ClusterCommand::RotateEncryptionKey } => {
            let r = ctx.client.json(Method::POST, &format!("{}/orch/v1/encryption/rotate", ctx.base), Some(&json!({}))).await?;
            println!("primary key {}; {} Secrets rewritten; retired {}", r["primary"].as_str().unwrap_or("?"), r["rewritten"], r["retired"]);
            Ok(())
        }
        Command::Cluster { command: ClusterCommand::Token { role } } => {
            let r = ctx.client.json(Method::GET, &format!("{}/orch/v1/cluster/tokens", ctx.base), None).await?;
            println!("{}", r[role.as_str()].as_str().context("the server sent no token")?);
            Ok(())
        }
        Command::Cluster { command: ClusterCommand::RotateToken { role } } => {
            let body = json!({"role": role.as_str()});
            let r = ctx.client.json(Method::POST, &format!("{}/orch/v1/cluster/tokens/rotate", ctx.base), Some(&body)).await?;
            println!("{}", r["token"].as_str().context("the server sent no token")?);
            Ok(())
        }
        Command::Kubeconfig { command: KubeconfigCommand::User { name, group, days, output } } => {
            kubeconfig_user(&ctx, &name, group.as_deref(), days, output.as_deref()).await
        }
        Command::Image { command: ImageCommand::Load { file, node } } => image_load(&ctx, &file, node).await,
        Command::Image { command: ImageCommand::PackBusybox { file, name, busybox } } => {
            let archive = crate::kubelet::image::busybox_archive(&name, &busybox)
                .with_context(|| format!("packing {} (install busybox-static)", busybox.display()))?;
            std::fs::write(&file, archive).with_context(|| format!("writing {}", file.display()))?;
            println!("wrote {} ({name})", file.display());
            Ok(())
        }
        Command::Scale { target, name, replicas } => {
            let (kind, name) = rollout::target(&target, name.as_deref())?;
            rollout::scale(&ctx, &kind, &name, replicas).await
        }
        Command::Rollout { command } => {
            let (t, n) = match &command {
                RolloutCommand::Status { target, name, .. }
                | RolloutCommand::History { target, name }
                | RolloutCommand::Undo { target, name, .. }
                | RolloutCommand::Pause { target, name }
                | RolloutCommand::Resume { target, name } => (target.clone(), name.clone()),
            };
            let (kind, name) = rollout::target(&t, n.as_deref())?;
            match command {
                RolloutCommand::Status { timeout, .. } => rollout::status(&ctx, &kind, &name, std::time::Duration::from_secs(timeout)).await,
                RolloutCommand::History { .. } => rollout::history_cmd(&ctx, &kind, &name).await,
                RolloutCommand::Undo { to_revision, .. } => rollout::undo(&ctx, &kind, &name, to_revision).await,
                RolloutCommand::Pause { .. } => rollout::pause(&ctx, &kind, &name, true).await,
                RolloutCommand::Resume { .. } => rollout::pause(&ctx, &kind, &name, false).await,
            }
        }
        Command::Logs { pod, container, follow, previous, tail } => logs(&ctx, &pod, container, follow, previous, tail).await,
        Command::Exec { pod, container, stdin, tty, command } => {
            // As kubectl: a terminal only for interactive use from a terminal.
            let terminal = tty && stdin && exec::stdin_is_terminal();
            if tty && !terminal {
                eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file (or -i is missing)");
            }
            let params = crate::remotecommand::ExecParams { command, container, stdin, tty: terminal };
            let code = exec::exec(&ctx.client, &ctx.base, &ctx.namespace, &pod, &params).await?;
            std::process::exit(code)
        }
        Command::PortForward { pod, ports, address } => {
            let pod = pod.strip_prefix("pod/").or_else(|| pod.strip_prefix("pods/")).unwrap_or(&pod);
            portforward::port_forward(&ctx.client, &ctx.base, &ctx.namespace, pod, &ports, &address).await
        }
        Command::Config { .. } => unreachable!("handled above"),
    }
}

async fn logs(ctx: &Ctx, pod: &str, container: Option<String>, follow: bool, previous: bool, tail: Option<u64>) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    use std::io::Write;
    let mut url = format!("{}/api/v1/namespaces/{}/pods/{pod}/log?follow={follow}&previous={previous}", ctx.base, ctx.namespace);
    if let Some(c) = container {
        url.push_str(&format!("&container={c}"));
    }
    if let Some(n) = tail {
        url.push_str(&format!("&tailLines={n}"));
    }
    let resp = ctx.client.send(Method::GET, &url, None, bytes::Bytes::new()).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        bail!("{}", v["message"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {status}")));
    }
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            out.write_all(data)?;
            out.flush()?;
        }
    }
    Ok(())
}

async fn image_load(ctx: &Ctx, file: &std::path::Path, node: Option<String>) -> anyhow::Result<()> {
    let archive = bytes::Bytes::from(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
    crate::kubelet::image::parse_archive(&archive).with_context(|| format!("{} is not an OCI image archive", file.display()))?;
    let nodes = match node {
        Some(n) => vec![n],
        None => {
            let list = ctx.client.json(Method::GET, &format!("{}/api/v1/nodes", ctx.base), None).await?;
            list["items"].as_array().into_iter().flatten().filter_map(|n| n["metadata"]["name"].as_str().map(String::from)).collect()
        }
    };
    let mut tally = Tally { failed: 0 };
    for n in nodes {
        let url = format!("{}/orch/v1/nodes/{n}/images", ctx.base);
        let result = async {
            let (status, body) = ctx.client.call(Method::POST, &url, Some("application/x-tar"), archive.clone()).await?;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{}", v["message"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {status}")));
            }
            Ok(v["images"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        }
        .await;
        let word = result.map(|images| format!("loaded {images}"));
        tally.record(&format!("node/{n}"), word.as_deref().map_err(|e| anyhow::anyhow!("{e}")));
    }
    tally.finish("nodes failed to load the image")
}

fn config_command(file: Option<&std::path::Path>, cmd: &ConfigCommand) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::SetContext { name, cluster, user, namespace } => {
            config::set_context(file, name, cluster.as_deref(), user.as_deref(), namespace.as_deref())
        }
        ConfigCommand::UseContext { name } => config::use_context(file, name),
        ConfigCommand::GetContexts => Ok(print!("{}", config::get_contexts(file)?)),
        ConfigCommand::View => Ok(print!("{}", config::view(file)?)),
    }
}

/// Namespace for an object from a manifest: its own, else -n / the context's.
fn object_ns(ctx: &Ctx, res: &resources::Resource, obj: &Value) -> anyhow::Result<Option<String>> {
    if !res.namespaced {
        return Ok(None);
    }
    match object::str_field(obj, "namespace") {
        Some(ns) if ctx.explicit_ns && ns != ctx.namespace => {
            bail!("the namespace from the manifest ({ns}) does not match -n {}", ctx.namespace)
        }
        Some(ns) => Ok(Some(ns.to_string())),
        None => Ok(Some(ctx.namespace.clone())),
    }
}

fn manifest_target(obj: &Value) -> anyhow::Result<(&'static resources::Resource, String)> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().context("a manifest object has no kind")?;
    let res = resources::by_kind(api_version, kind).with_context(|| format!("no kind {kind:?} in version {api_version:?}"))?;
    let name = object::name_of(obj).with_context(|| format!("a {kind} has no metadata.name"))?.to_string();
    Ok((res, name))
}

/// Create-or-update: create if absent; otherwise merge the manifest into the live object
/// (a JSON merge patch, so fields the manifest does not mention, like status, are kept).
async fn apply(ctx: &Ctx, files: &[String]) -> anyhow::Result<()> {
    let mut objects = Vec::new();
    for f in files {
        objects.extend(manifest::load(f)?);
    }
    // Validate every document before changing anything.
    let targets: Vec<_> = objects.iter().map(manifest_target).collect::<anyhow::Result<_>>()?;
    let mut tally = Tally::default();
    for (obj, (res, name)) in objects.iter().zip(targets) {
        let ns = object_ns(ctx, res, obj)?;
        let label = format!("{}/{name}", resource_label(res));
        let url = ctx.url(res, ns.as_deref(), Some(&name));
        let outcome = match ctx.client.json(Method::GET, &url, None).await {
            Err(e) if e.downcast_ref::<HttpError>().is_some_and(|h| h.code == 404) => {
                let mut body = obj.clone();
                if let Some(ns) = &ns {
                    body["metadata"]["namespace"] = ns.clone().into();
                }
                ctx.client.json(Method::POST, &ctx.url(res, ns.as_deref(), None), Some(&body)).await.map(|_| "created")
            }
            Err(e) => Err(e),
            Ok(live) => {
                let mut merged = live.clone();
                object::merge_patch(&mut merged, obj);
                if merged == live {
                    Ok("unchanged")
                } else {
                    ctx.client.json_as(Method::PATCH, &url, Some(obj), "application/merge-patch+json").await.map(|_| "configured")
                }
            }
        };
        tally.record(&label, outcome);
    }
    tally.finish("object(s) failed")
}

/// Per-object results of a multi-object command: print each, fail at the end if any failed.
#[derive(Default)]
struct Tally {
    failed: usize,
}

impl Tally {
    fn record(&mut self, label: &str, outcome: anyhow::Result<&str>) {
        match outcome {
            Ok(word) => println!("{label} {word}"),
            Err(e) => {
                self.failed += 1;
                eprintln!("error: {label}: {e}");
            }
        }
    }

    fn finish(self, what: &str) -> anyhow::Result<()> {
        if self.failed > 0 {
            bail!("{} {what}", self.failed);
        }
        Ok(())
    }
}

fn resource_label(res: &resources::Resource) -> String {
    if res.group.is_empty() {
        res.kind.to_ascii_lowercase()
    } else {
        format!("{}.{}", res.kind.to_ascii_lowercase(), res.group)
    }
}

async fn get(ctx: &Ctx, kind: &str, name: Option<String>, all: bool, selector: Option<String>, output: Output) -> anyhow::Result<()> {
    let res = kind_of(kind)?;
    let ns = if all { None } else { Some(ctx.namespace.as_str()) };
    let now = chrono::Utc::now();
    let (items, single) = match &name {
        Some(n) => (vec![ctx.client.json(Method::GET, &ctx.url(res, ns, Some(n)), None).await?], true),
        None => {
            let mut url = ctx.url(res, ns, None);
            if let Some(sel) = &selector {
                url = format!("{url}?labelSelector={}", urlencode(sel));
            }
            let list = ctx.client.json(Method::GET, &url, None).await?;
            (list["items"].as_array().cloned().unwrap_or_default(), false)
        }
    };
    let doc = if single { items[0].clone() } else { json!({"apiVersion": "v1", "kind": "List", "items": items}) };
    match output {
        Output::Yaml => print!("{}", print::yaml(&doc)),
        Output::Json => print!("{}", print::json(&doc)),
        Output::Table | Output::Wide if items.is_empty() => {
            let scope = if res.namespaced && !all { format!(" in {} namespace", ctx.namespace) } else { String::new() };
            eprintln!("No resources found{scope}.");
        }
        Output::Table | Output::Wide => {
            print!("{}", print::table(res.kind, &items, output == Output::Wide, all && res.namespaced, now))
        }
    }
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn delete(ctx: &Ctx, kind: Option<String>, names: Vec<String>, files: Vec<String>) -> anyhow::Result<()> {
    let mut targets = Vec::new();
    for f in &files {
        for obj in manifest::load(f)? {
            let (res, name) = manifest_target(&obj)?;
            targets.push((res, object_ns(ctx, res, &obj)?, name));
        }
    }
    if let Some(kind) = kind {
        let res = kind_of(&kind)?;
        if names.is_empty() {
            bail!("name the {} to delete", res.plural);
        }
        for n in names {
            targets.push((res, res.namespaced.then(|| ctx.namespace.clone()), n));
        }
    }
    if targets.is_empty() {
        bail!("nothing to delete: give KIND NAME... or -f FILE");
    }
    let mut tally = Tally::default();
    for (res, ns, name) in targets {
        let label = format!("{} \"{name}\"", resource_label(res));
        let result = ctx.client.json(Method::DELETE, &ctx.url(res, ns.as_deref(), Some(&name)), None).await;
        tally.record(&label, result.map(|_| "deleted"));
    }
    tally.finish("deletion(s) failed")
}

async fn describe(ctx: &Ctx, kind: &str, name: &str) -> anyhow::Result<()> {
    let res = kind_of(kind)?;
    let ns = res.namespaced.then_some(ctx.namespace.as_str());
    let obj = ctx.client.json(Method::GET, &ctx.url(res, ns, Some(name)), None).await?;
    print!("{}", print::yaml(&obj));
    let events = resources::lookup("events").expect("events are registered");
    let url = format!(
        "{}?fieldSelector={}",
        ctx.url(events, Some(ns.unwrap_or("default")), None),
        urlencode(&format!("involvedObject.name={name},involvedObject.kind={}", res.kind))
    );
    let list = ctx.client.json(Method::GET, &url, None).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    println!("Events:");
    if items.is_empty() {
        println!("  <none>");
    } else {
        for line in print::table("Event", &items, false, false, chrono::Utc::now()).lines() {
            println!("  {line}");
        }
    }
    Ok(())
}

async fn cluster_status(ctx: &Ctx, output: Output) -> anyhow::Result<()> {
    let status = ctx.client.json(Method::GET, &format!("{}/orch/v1/cluster/status", ctx.base), None).await?;
    match output {
        Output::Yaml => print!("{}", print::yaml(&status)),
        Output::Json => print!("{}", print::json(&status)),
        Output::Table | Output::Wide => print!("{}", status_table(&status)),
    }
    Ok(())
}

/// The `cluster status` table: heads first (by name), then workers.
pub fn status_table(status: &Value) -> String {
    let mut rows = vec![["NAME", "ROLE", "SUFFRAGE", "LEADER", "TERM", "COMMIT", "APPLIED", "REACHABLE", "ADDRESS"].map(String::from).to_vec()];
    let str_of = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut heads = status["members"].as_array().cloned().unwrap_or_default();
    heads.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    for m in heads {
        rows.push(vec![
            str_of(&m["name"]),
            "head".into(),
            str_of(&m["suffrage"]),
            if m["leader"] == true { "*".into() } else { String::new() },
            str_of(&m["term"]),
            str_of(&m["commitIndex"]),
            str_of(&m["appliedIndex"]),
            str_of(&m["reachable"]),
            str_of(&m["apiAddress"]),
        ]);
    }
    for w in status["workers"].as_array().cloned().unwrap_or_default() {
        rows.push(vec![str_of(&w["name"]), "worker".into(), "-".into(), String::new(), "-".into(), "-".into(), "-".into(), str_of(&w["reachable"]), str_of(&w["apiAddress"])]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    rows.iter()
        .map(|r| r.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect::<Vec<_>>().join("   ").trim_end().to_string() + "\n")
        .collect()
}

/// `orchctl kubeconfig user`: the key never leaves this machine; the cluster signs its CSR.
async fn kubeconfig_user(ctx: &Ctx, name: &str, group: Option<&str>, days: i64, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    let (key, csr) = orch_raft::tls::client_csr(name, group)?;
    let url = format!("{}/orch/v1/certificates/users", ctx.base);
    let signed = ctx.client.json(Method::POST, &url, Some(&json!({"csr": csr, "days": days}))).await?;
    let (cert, ca) = (signed["certificate"].as_str().context("no certificate in the answer")?, signed["ca"].as_str().context("no CA in the answer")?);
    let kubeconfig = crate::kubeconfig::Kubeconfig::for_user("orch", &ctx.base, ca, name, cert, &key).to_yaml();
    match output {
        Some(path) => {
            crate::daemon::config::write_private(path, kubeconfig.as_bytes())?;
            eprintln!("wrote {} for user {name:?}; bind it a role, e.g. kubectl create rolebinding {name}-view --clusterrole=view --user={name} -n NAMESPACE", path.display());
        }
        None => print!("{kubeconfig}"),
    }
    Ok(())
}
