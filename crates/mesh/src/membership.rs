//! The live view of the mesh, built from announcements.
//!
//! Time comes in as an argument (`now`), so the view is plain data tested without a
//! runtime; callers pass `Instant::now()` at the moment an announcement arrives.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shardmesh_proto::{Announcement, NodeRole, NodeState};

use crate::assignment::Candidate;

/// A node as last announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Gateway or consumer.
    pub role: NodeRole,
    /// Consumer group, for consumer nodes.
    pub group: Option<String>,
    /// Life-cycle state.
    pub state: NodeState,
    /// Weight in the assignment.
    pub capacity: u32,
    /// Lease keys it said it holds.
    pub owns: Vec<String>,
    /// When its last announcement arrived (local monotonic clock).
    pub last_seen: Instant,
}

/// How an announcement or an expiry changed the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing that affects assignment (a heartbeat, or a change of `owns`).
    None,
    /// A node was seen for the first time.
    Joined(String),
    /// A node's state or capacity changed.
    Updated(String),
    /// A node left: it said so, or it missed heartbeats for the timeout.
    Left(String),
}

/// Every node heard from within the timeout, and when the view last changed in a way
/// that affects assignment.
#[derive(Debug, Clone)]
pub struct MembershipView {
    members: BTreeMap<String, Member>,
    timeout: Duration,
    last_change: Instant,
}

impl MembershipView {
    /// An empty view; nodes unheard of for `timeout` are dropped by [`Self::expire`].
    pub fn new(timeout: Duration, now: Instant) -> Self {
        Self {
            members: BTreeMap::new(),
            timeout,
            last_change: now,
        }
    }

    /// Records an announcement that arrived at `now`.
    pub fn observe(&mut self, announcement: &Announcement, now: Instant) -> Change {
        let node = announcement.node.clone();
        if announcement.state == NodeState::Leaving {
            return if self.members.remove(&node).is_some() {
                self.last_change = now;
                Change::Left(node)
            } else {
                Change::None
            };
        }
        let member = Member {
            role: announcement.role,
            group: announcement.group.clone(),
            state: announcement.state,
            capacity: announcement.capacity,
            owns: announcement.owns.clone(),
            last_seen: now,
        };
        let change = match self.members.get(&node) {
            None => Change::Joined(node.clone()),
            Some(known)
                if known.state != member.state
                    || known.capacity != member.capacity
                    || known.role != member.role
                    || known.group != member.group =>
            {
                Change::Updated(node.clone())
            }
            Some(_) => Change::None,
        };
        if change != Change::None {
            self.last_change = now;
        }
        self.members.insert(node, member);
        change
    }

    /// Drops nodes unheard of for the timeout; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let timeout = self.timeout;
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, member)| now.saturating_duration_since(member.last_seen) >= timeout)
            .map(|(node, _)| node.clone())
            .collect();
        for node in &gone {
            self.members.remove(node);
        }
        if !gone.is_empty() {
            self.last_change = now;
        }
        gone
    }

    /// Whether the view has not changed for `settle`: assignment waits for this so a
    /// rolling deploy moves keys once, not at every step.
    pub fn settled(&self, now: Instant, settle: Duration) -> bool {
        now.saturating_duration_since(self.last_change) >= settle
    }

    /// The nodes that may be given keys: ready nodes of `role` (and `group`).
    pub fn candidates(&self, role: NodeRole, group: Option<&str>) -> Vec<Candidate> {
        self.members
            .iter()
            .filter(|(_, member)| {
                member.role == role
                    && member.group.as_deref() == group
                    && member.state == NodeState::Ready
            })
            .map(|(node, member)| Candidate {
                node: node.clone(),
                weight: member.capacity,
            })
            .collect()
    }

    /// A node as last announced.
    pub fn member(&self, node: &str) -> Option<&Member> {
        self.members.get(node)
    }

    /// Every known node, by id.
    pub fn members(&self) -> impl Iterator<Item = (&str, &Member)> {
        self.members
            .iter()
            .map(|(node, member)| (node.as_str(), member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(node: &str, state: NodeState) -> Announcement {
        Announcement::new(node, NodeRole::Gateway, None, state, 1, vec![], 0)
    }

    #[test]
    fn heartbeats_do_not_unsettle_the_view() {
        let start = Instant::now();
        let mut view = MembershipView::new(Duration::from_secs(5), start);
        assert_eq!(
            view.observe(&announce("a", NodeState::Ready), start),
            Change::Joined("a".into())
        );
        let later = start + Duration::from_secs(1);
        assert_eq!(
            view.observe(&announce("a", NodeState::Ready), later),
            Change::None
        );
        assert!(view.settled(start + Duration::from_secs(2), Duration::from_secs(2)));
    }

    #[test]
    fn a_node_missing_heartbeats_is_gone() {
        let start = Instant::now();
        let mut view = MembershipView::new(Duration::from_secs(5), start);
        view.observe(&announce("a", NodeState::Ready), start);
        view.observe(
            &announce("b", NodeState::Ready),
            start + Duration::from_secs(3),
        );
        let gone = view.expire(start + Duration::from_secs(5));
        assert_eq!(gone, ["a"]);
        assert!(view.member("a").is_none());
        assert!(view.member("b").is_some());
        assert!(!view.settled(start + Duration::from_secs(6), Duration::from_secs(2)));
    }

    #[test]
    fn only_ready_nodes_of_the_role_and_group_are_candidates() {
        let now = Instant::now();
        let mut view = MembershipView::new(Duration::from_secs(5), now);
        view.observe(&announce("ready", NodeState::Ready), now);
        view.observe(&announce("starting", NodeState::Starting), now);
        view.observe(&announce("draining", NodeState::Draining), now);
        let consumer = Announcement::new(
            "consumer",
            NodeRole::Consumer,
            Some("bots".into()),
            NodeState::Ready,
            3,
            vec![],
            0,
        );
        view.observe(&consumer, now);
        let gateways = view.candidates(NodeRole::Gateway, None);
        assert_eq!(gateways.len(), 1);
        assert_eq!(gateways[0].node, "ready");
        let bots = view.candidates(NodeRole::Consumer, Some("bots"));
        assert_eq!(
            bots,
            [Candidate {
                node: "consumer".into(),
                weight: 3
            }]
        );
        assert!(
            view.candidates(NodeRole::Consumer, Some("other"))
                .is_empty()
        );
    }

    #[test]
    fn leaving_removes_at_once_and_draining_is_a_change() {
        let now = Instant::now();
        let mut view = MembershipView::new(Duration::from_secs(5), now);
        view.observe(&announce("a", NodeState::Ready), now);
        assert_eq!(
            view.observe(&announce("a", NodeState::Draining), now),
            Change::Updated("a".into())
        );
        assert_eq!(
            view.observe(&announce("a", NodeState::Leaving), now),
            Change::Left("a".into())
        );
        assert_eq!(view.members().count(), 0);
        assert_eq!(
            view.observe(&announce("a", NodeState::Leaving), now),
            Change::None
        );
    }
}
