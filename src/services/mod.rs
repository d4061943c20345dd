//! The Service roles every pod-running node has: the proxy (Service VIPs and NodePorts
//! steered to ready endpoints by a `Dataplane`) and cluster DNS, both fed by watch caches
//! of Services and Endpoints through the node's own API. `model` and `dns::answer` are
//! pure; `proxy` and `dns_server` are the loops around them.

pub mod dns;
pub mod dns_server;
pub mod ipvs;
pub mod model;
pub mod nft_affinity;
pub mod nft_netlink;
pub mod nftables;
pub mod proxy;

use std::str::FromStr;

use model::{Change, Table};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataplaneError(pub String);

/// Something that can steer Service traffic: nftables, IPVS, or a fake in tests.
#[allow(async_fn_in_trait)]
pub trait Dataplane: Send {
    /// "nftables" or "ipvs", as reported on the Node.
    fn mode(&self) -> &'static str;
    /// Replace everything with `table`.
    async fn sync(&mut self, table: &Table) -> Result<(), DataplaneError>;
    /// Apply `changes` to what the last `sync`/`apply` left; `all` is the whole table
    /// with the changes applied (for a dataplane that must rewrite everything now and then).
    async fn apply(&mut self, changes: &[Change], all: &Table) -> Result<(), DataplaneError>;
}

/// Which dataplane a node asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    /// IPVS where the kernel offers its generic-netlink family, nftables otherwise.
    Auto,
    Ipvs,
    Nftables,
}

impl FromStr for ProxyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ProxyMode::Auto),
            "ipvs" => Ok(ProxyMode::Ipvs),
            "nftables" => Ok(ProxyMode::Nftables),
            other => Err(format!("unknown mode {other:?} (auto, ipvs or nftables)")),
        }
    }
}

/// A dataplane double: records what it was asked to do and can be told to fail.
#[derive(Default)]
pub struct FakeDataplane {
    pub calls: Vec<FakeCall>,
    pub fail_next: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    Sync(Table),
    Apply(Vec<Change>),
}

impl Dataplane for FakeDataplane {
    fn mode(&self) -> &'static str {
        "fake"
    }

    async fn sync(&mut self, table: &Table) -> Result<(), DataplaneError> {
        self.calls.push(FakeCall::Sync(table.clone()));
        self.fail()
    }

    async fn apply(&mut self, changes: &[Change], _all: &Table) -> Result<(), DataplaneError> {
        self.calls.push(FakeCall::Apply(changes.to_vec()));
        self.fail()
    }
}

impl FakeDataplane {
    fn fail(&mut self) -> Result<(), DataplaneError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(DataplaneError("injected failure".into()));
        }
        Ok(())
    }
}
