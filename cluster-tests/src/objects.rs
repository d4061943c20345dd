//! Small object helpers the cluster tests share: ConfigMaps in `default`, created and
//! listed through a chosen node.

use std::collections::BTreeMap;

use anyhow::Context;
use hyper::Method;
use serde_json::json;

use crate::Cluster;

/// The ConfigMaps collection of the `default` namespace.
pub const CM: &str = "/api/v1/namespaces/default/configmaps";

/// Create ConfigMap `name` (data `v: name`) through node `i`; its resourceVersion once acknowledged.
pub async fn create_cm(c: &Cluster, i: usize, name: &str) -> anyhow::Result<u64> {
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": name}});
    let obj = c.client.json(Method::POST, &c.url(i, CM), Some(&body)).await?;
    Ok(obj["metadata"]["resourceVersion"].as_str().context("no rv")?.parse()?)
}

/// name → resourceVersion of every ConfigMap in `default` as node `i` sees it; `local`
/// reads its own replica (`resourceVersion=0`) instead of a linearizable read.
pub async fn list_cms(c: &Cluster, i: usize, local: bool) -> anyhow::Result<BTreeMap<String, u64>> {
    let url = c.url(i, &format!("{CM}{}", if local { "?resourceVersion=0" } else { "" }));
    let list = c.client.json(Method::GET, &url, None).await?;
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().context("no items")? {
        let name = item["metadata"]["name"].as_str().context("no name")?.to_string();
        out.insert(name, item["metadata"]["resourceVersion"].as_str().context("no rv")?.parse()?);
    }
    Ok(out)
}
