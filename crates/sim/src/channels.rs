//! What happened in the channels at runtime: the message history of each channel and
//! the webhooks created on it.
//!
//! A channel keeps the messages created on request: bot messages
//! (`POST /channels/{id}/messages`), webhook executions and user posts through the
//! control API, each as the JSON its `MESSAGE_CREATE` carried. Generated traffic is
//! not kept: it runs at 100k+ dispatches a second and would fill memory in minutes,
//! and its messages are noise no test reads back. History is bounded: a channel keeps
//! its newest [`HISTORY_PER_CHANNEL`] messages and forgets older ones, so an endless
//! load test through REST stays within a known footprint (about 10 MB per busy
//! channel).
//!
//! Plain data: the caller holds it behind one lock (see `state.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Messages a channel keeps; the oldest is forgotten when a new one arrives.
pub(crate) const HISTORY_PER_CHANNEL: usize = 10_000;

/// Webhooks a channel may have, Discord's limit (error 30007 past it).
pub(crate) const WEBHOOKS_PER_CHANNEL: usize = 15;

/// A webhook created at runtime (`POST /channels/{id}/webhooks`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Webhook {
    pub id: u64,
    pub guild_id: u64,
    pub channel_id: u64,
    /// Its default name, shown as the author of its messages without `username`.
    pub name: String,
    /// Its default avatar hash, if one was given.
    pub avatar: Option<String>,
    /// The secret that authorizes executing it.
    pub token: String,
}

/// Where a history read starts, as Discord's `before` / `after` say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// The newest ones.
    Latest,
    /// The newest ones older than this id.
    Before(u64),
    /// The ones right after this id (the oldest newer than it).
    After(u64),
}

/// One stored message: its id (for ordering and paging) and its JSON.
#[derive(Debug)]
struct Stored {
    id: u64,
    json: Arc<str>,
}

/// Every channel's history and runtime webhooks.
#[derive(Debug)]
pub(crate) struct Channels {
    history: HashMap<u64, VecDeque<Stored>>,
    /// Messages kept per channel ([`HISTORY_PER_CHANNEL`] outside unit tests).
    capacity: usize,
    webhooks: HashMap<u64, Webhook>,
    /// Webhook ids per channel, in creation order (what listing returns).
    by_channel: HashMap<u64, Vec<u64>>,
}

/// Why a webhook could not be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WebhooksFull;

impl Default for Channels {
    fn default() -> Self {
        Self::with_capacity(HISTORY_PER_CHANNEL)
    }
}

impl Channels {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            history: HashMap::new(),
            capacity,
            webhooks: HashMap::new(),
            by_channel: HashMap::new(),
        }
    }

    /// Stores message `id` in `channel`, in id order, forgetting the oldest past the
    /// capacity.
    pub(crate) fn push(&mut self, channel: u64, id: u64, json: Arc<str>) {
        let history = self.history.entry(channel).or_default();
        // Ids come from one increasing counter, but two requests may store out of
        // order; history stays sorted so paging by id is a binary search.
        let at = history.partition_point(|m| m.id < id);
        history.insert(at, Stored { id, json });
        if history.len() > self.capacity {
            history.pop_front();
        }
    }

    /// At most `limit` messages of `channel` from `anchor`, newest first (Discord's
    /// order for every anchor).
    pub(crate) fn page(&self, channel: u64, anchor: Anchor, limit: usize) -> Vec<Arc<str>> {
        let Some(history) = self.history.get(&channel) else {
            return Vec::new();
        };
        let (start, end) = match anchor {
            Anchor::Latest => (history.len().saturating_sub(limit), history.len()),
            Anchor::Before(id) => {
                let end = history.partition_point(|m| m.id < id);
                (end.saturating_sub(limit), end)
            }
            Anchor::After(id) => {
                let start = history.partition_point(|m| m.id <= id);
                (start, (start + limit).min(history.len()))
            }
        };
        history
            .range(start..end)
            .rev()
            .map(|m| Arc::clone(&m.json))
            .collect()
    }

    /// Every message `channel` keeps, oldest first.
    pub(crate) fn all(&self, channel: u64) -> Vec<Arc<str>> {
        self.history.get(&channel).map_or_else(Vec::new, |history| {
            history.iter().map(|m| Arc::clone(&m.json)).collect()
        })
    }

    /// Adds a webhook to its channel, unless the channel has Discord's maximum.
    pub(crate) fn add_webhook(&mut self, webhook: Webhook) -> Result<(), WebhooksFull> {
        let ids = self.by_channel.entry(webhook.channel_id).or_default();
        if ids.len() >= WEBHOOKS_PER_CHANNEL {
            return Err(WebhooksFull);
        }
        ids.push(webhook.id);
        self.webhooks.insert(webhook.id, webhook);
        Ok(())
    }

    /// The runtime webhook with this id.
    pub(crate) fn webhook(&self, id: u64) -> Option<&Webhook> {
        self.webhooks.get(&id)
    }

    /// The runtime webhooks of `channel`, in creation order.
    pub(crate) fn webhooks_of(&self, channel: u64) -> Vec<Webhook> {
        self.by_channel.get(&channel).map_or_else(Vec::new, |ids| {
            ids.iter()
                .filter_map(|id| self.webhooks.get(id).cloned())
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(capacity: usize, ids: impl IntoIterator<Item = u64>) -> Channels {
        let mut channels = Channels::with_capacity(capacity);
        for id in ids {
            channels.push(7, id, id.to_string().into());
        }
        channels
    }

    fn ids(page: &[Arc<str>]) -> Vec<u64> {
        page.iter().map(|json| json.parse().unwrap()).collect()
    }

    #[test]
    fn pages_are_newest_first_from_every_anchor() {
        let channels = filled(100, 1..=10);
        assert_eq!(ids(&channels.page(7, Anchor::Latest, 3)), [10, 9, 8]);
        assert_eq!(ids(&channels.page(7, Anchor::Before(5), 3)), [4, 3, 2]);
        assert_eq!(ids(&channels.page(7, Anchor::Before(2), 3)), [1]);
        assert_eq!(ids(&channels.page(7, Anchor::After(5), 3)), [8, 7, 6]);
        assert_eq!(ids(&channels.page(7, Anchor::After(9), 3)), [10]);
        assert!(channels.page(7, Anchor::After(10), 3).is_empty());
        assert!(channels.page(8, Anchor::Latest, 3).is_empty());
    }

    #[test]
    fn ids_between_stored_ones_page_like_discord() {
        let channels = filled(100, [10, 20, 30]);
        assert_eq!(ids(&channels.page(7, Anchor::Before(25), 50)), [20, 10]);
        assert_eq!(ids(&channels.page(7, Anchor::After(15), 50)), [30, 20]);
    }

    #[test]
    fn history_stays_sorted_and_bounded() {
        let channels = filled(4, [1, 3, 2, 5, 4, 6]);
        assert_eq!(ids(&channels.all(7)), [3, 4, 5, 6]);
        assert!(channels.all(8).is_empty());
    }

    #[test]
    fn a_channel_holds_at_most_fifteen_webhooks() {
        let mut channels = Channels::default();
        let webhook = |id| Webhook {
            id,
            guild_id: 1,
            channel_id: 2,
            name: format!("hook {id}"),
            avatar: None,
            token: "t".into(),
        };
        for id in 1..=15 {
            assert_eq!(channels.add_webhook(webhook(id)), Ok(()));
        }
        assert_eq!(channels.add_webhook(webhook(16)), Err(WebhooksFull));
        let listed: Vec<u64> = channels.webhooks_of(2).iter().map(|w| w.id).collect();
        assert_eq!(listed, (1..=15).collect::<Vec<_>>());
        assert_eq!(channels.webhook(3).unwrap().name, "hook 3");
        assert!(channels.webhook(16).is_none());
        assert!(channels.webhooks_of(3).is_empty());
    }
}
