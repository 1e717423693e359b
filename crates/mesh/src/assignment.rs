//! Weighted rendezvous hashing with bounded loads.
//!
//! Every node computes the same target assignment from the same inputs, with no
//! coordination: a key goes to its highest-ranked node that still has room, where a
//! node's room is `ceil(keys x weight / total weight)`. Rendezvous ranking means a join or
//! a leave moves only the keys that must move; the bound keeps the split even.

use std::collections::BTreeMap;

/// A node that can be given keys, with its relative weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub node: String,
    /// Relative weight (the node's announced capacity); 0 is treated as 1.
    pub weight: u32,
}

/// Assigns every key to one candidate; the same inputs give the same result on every
/// node, whatever the order of `candidates`. Returns an empty map when there are no
/// candidates.
pub fn assign(keys: &[String], candidates: &[Candidate]) -> BTreeMap<String, String> {
    let mut assignment = BTreeMap::new();
    if candidates.is_empty() {
        return assignment;
    }
    let mut nodes: Vec<&Candidate> = candidates.iter().collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    nodes.dedup_by(|a, b| a.node == b.node);
    let total_weight: u64 = nodes.iter().map(|node| u64::from(node.weight.max(1))).sum();
    let key_count = keys.len() as u64;
    let mut room: Vec<u64> = nodes
        .iter()
        .map(|node| (key_count * u64::from(node.weight.max(1))).div_ceil(total_weight))
        .collect();

    let mut sorted_keys: Vec<&String> = keys.iter().collect();
    sorted_keys.sort();
    sorted_keys.dedup();
    let mut ranking: Vec<(f64, usize)> = Vec::with_capacity(nodes.len());
    for key in sorted_keys {
        ranking.clear();
        ranking.extend(
            nodes
                .iter()
                .enumerate()
                .map(|(index, node)| (score(key, node), index)),
        );
        // Highest score first; ties (practically impossible) broken by node id order.
        ranking.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        // The bound always leaves room somewhere: the rooms add up to at least the key count.
        if let Some(&(_, index)) = ranking.iter().find(|(_, index)| room[*index] > 0) {
            room[index] -= 1;
            assignment.insert(key.clone(), nodes[index].node.clone());
        }
    }
    assignment
}

/// Weighted rendezvous score: `-weight / ln(u)` with `u` uniform in (0, 1) from the hash
/// of (key, node). Higher wins; a node of twice the weight wins twice as many keys.
fn score(key: &str, node: &Candidate) -> f64 {
    let hash = mix(fnv1a(key.as_bytes()) ^ fnv1a(node.node.as_bytes()).rotate_left(32));
    // 53 random bits mapped into (0, 1), never exactly 0 or 1.
    #[allow(clippy::cast_precision_loss)]
    let uniform = ((hash >> 11) as f64 + 0.5) / (1_u64 << 53) as f64;
    -f64::from(node.weight.max(1)) / uniform.ln()
}

/// FNV-1a: stable across processes, platforms and Rust versions, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The `SplitMix64` finalizer: spreads FNV's weak low bits over the whole word.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_keys(count: u32) -> Vec<String> {
        (0..count).map(|shard| format!("shard/{shard}")).collect()
    }

    fn nodes(names: &[&str]) -> Vec<Candidate> {
        names
            .iter()
            .map(|name| Candidate {
                node: (*name).to_owned(),
                weight: 1,
            })
            .collect()
    }

    fn load(assignment: &BTreeMap<String, String>, node: &str) -> usize {
        assignment.values().filter(|owner| *owner == node).count()
    }

    #[test]
    fn every_key_is_assigned_and_no_node_exceeds_its_bound() {
        let keys = shard_keys(32);
        let assignment = assign(&keys, &nodes(&["a", "b", "c"]));
        assert_eq!(assignment.len(), 32);
        for node in ["a", "b", "c"] {
            let load = load(&assignment, node);
            assert!((10..=11).contains(&load), "{node} holds {load}");
        }
    }

    #[test]
    fn candidate_order_does_not_matter() {
        let keys = shard_keys(100);
        let forward = assign(&keys, &nodes(&["a", "b", "c", "d"]));
        let backward = assign(&keys, &nodes(&["d", "c", "b", "a"]));
        assert_eq!(forward, backward);
    }

    #[test]
    fn a_join_moves_only_keys_to_the_new_node_mostly() {
        let keys = shard_keys(300);
        let before = assign(&keys, &nodes(&["a", "b", "c"]));
        let after = assign(&keys, &nodes(&["a", "b", "c", "d"]));
        let moved = keys
            .iter()
            .filter(|key| before[*key] != after[*key])
            .count();
        let to_new = keys.iter().filter(|key| after[*key] == "d").count();
        assert_eq!(to_new, 75);
        // Bounded loads may shuffle a few keys between old nodes; the bulk goes to d.
        assert!(
            moved <= to_new + to_new / 4,
            "moved {moved}, to the new node {to_new}"
        );
    }

    #[test]
    fn a_leave_moves_only_the_leavers_keys_mostly() {
        let keys = shard_keys(300);
        let before = assign(&keys, &nodes(&["a", "b", "c", "d"]));
        let after = assign(&keys, &nodes(&["a", "b", "c"]));
        let orphaned = keys.iter().filter(|key| before[*key] == "d").count();
        let moved = keys
            .iter()
            .filter(|key| before[*key] != after[*key])
            .count();
        assert!(
            moved <= orphaned + orphaned / 4,
            "moved {moved}, orphaned {orphaned}"
        );
    }

    #[test]
    fn weight_scales_the_share() {
        let keys = shard_keys(300);
        let mut candidates = nodes(&["a", "b"]);
        candidates[0].weight = 2;
        let assignment = assign(&keys, &candidates);
        assert_eq!(load(&assignment, "a"), 200);
        assert_eq!(load(&assignment, "b"), 100);
    }

    #[test]
    fn no_candidates_assign_nothing_and_duplicates_count_once() {
        assert!(assign(&shard_keys(4), &[]).is_empty());
        let assignment = assign(&shard_keys(4), &nodes(&["a", "a", "b"]));
        assert_eq!(load(&assignment, "a"), 2);
        assert_eq!(load(&assignment, "b"), 2);
    }

    #[test]
    fn the_ranking_is_pinned_across_builds() {
        // Nodes of different builds must agree: the ranking may never change silently.
        assert_eq!(fnv1a(b"shard/0"), 0x8add_9f73_fa5e_f094);
        let owners: Vec<String> = assign(&shard_keys(6), &nodes(&["a", "b", "c"]))
            .into_values()
            .collect();
        assert_eq!(owners, PINNED_OWNERS);
    }

    const PINNED_OWNERS: [&str; 6] = ["b", "b", "a", "a", "c", "c"];
}
