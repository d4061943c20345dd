//! Score: prefer a node that already has the pod's images, as kube-scheduler's
//! ImageLocality does: the sizes of the images present, each weighted by the share of
//! nodes holding it (so one node with a common image is not crowded), scaled between 23 MB
//! (less is no help) and 1000 MB per container.

use super::{NodeInfo, PodInfo, Snapshot};

const MIN: f64 = 23.0 * 1024.0 * 1024.0;
const MAX_PER_CONTAINER: f64 = 1000.0 * 1024.0 * 1024.0;

pub fn score(node: &NodeInfo, pod: &PodInfo, snap: &Snapshot) -> i64 {
    if pod.images.is_empty() || node.images.is_empty() {
        return 0;
    }
    let total_nodes = snap.nodes.len().max(1) as f64;
    let sum: f64 = pod
        .images
        .iter()
        .filter_map(|i| node.images.get(i).map(|size| (i, *size as f64)))
        .map(|(i, size)| size * snap.image_nodes.get(i).copied().unwrap_or(1) as f64 / total_nodes)
        .sum();
    let max = MAX_PER_CONTAINER * pod.images.len() as f64;
    ((sum.clamp(MIN, max) - MIN) / (max - MIN) * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1024 * 1024;

    fn node(images: &[(&str, i64)]) -> NodeInfo {
        NodeInfo { images: images.iter().map(|(n, s)| (n.to_string(), *s)).collect(), ..Default::default() }
    }

    #[test]
    fn big_images_present_on_many_nodes_count_most() {
        let pod = PodInfo { images: vec!["r/app:1".into()], ..Default::default() };
        let has = node(&[("r/app:1", 500 * MB)]);
        let lacks = node(&[("r/other:1", 500 * MB)]);
        let snap = |holders: usize, nodes: usize| Snapshot { nodes: vec![NodeInfo::default(); nodes], image_nodes: [("r/app:1".to_string(), holders)].into(), ..Default::default() };
        // On every node: 500 MB counts whole; on one of four, a quarter of it.
        assert_eq!(score(&has, &pod, &snap(4, 4)), 49);
        assert_eq!(score(&has, &pod, &snap(1, 4)), 10);
        assert_eq!(score(&lacks, &pod, &snap(1, 4)), 0);
        // Below 23 MB an image is no reason to prefer a node.
        assert_eq!(score(&node(&[("r/app:1", 20 * MB)]), &pod, &snap(4, 4)), 0);
        // Capped at 1000 MB per container.
        assert_eq!(score(&node(&[("r/app:1", 5000 * MB)]), &pod, &snap(4, 4)), 100);
    }

    #[test]
    fn names_are_compared_as_full_references() {
        use crate::sched::snapshot::image_key;
        assert_eq!(image_key("busybox:1"), image_key("docker.io/library/busybox:1"));
        assert_ne!(image_key("busybox:1"), image_key("busybox:2"));
    }
}
