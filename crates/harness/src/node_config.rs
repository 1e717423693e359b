//! A node's configuration file, written as a user would write it: the shared sections,
//! `[gateway]`, and `[consumer]` when the node is a consumer (each role ignores the
//! other's section, so one file may serve both).

use std::fmt::Write as _;
use std::path::PathBuf;

/// Lease and membership timing, `[lease]` and `[membership]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// `lease.duration_ms`.
    pub lease_ms: u64,
    /// `lease.renew_interval_ms`.
    pub renew_ms: u64,
    /// `lease.fence_margin_ms`.
    pub fence_ms: u64,
    /// `membership.announce_interval_ms`.
    pub announce_ms: u64,
    /// `membership.node_timeout_ms`.
    pub node_timeout_ms: u64,
    /// `membership.settle_delay_ms`.
    pub settle_ms: u64,
    /// `gateway.close_timeout_ms`.
    pub close_timeout_ms: u64,
    /// `gateway.confirm_timeout_ms`.
    pub confirm_timeout_ms: u64,
}

impl Timings {
    /// The shipped defaults (config.example.toml).
    pub const DEFAULT: Self = Self {
        lease_ms: 10_000,
        renew_ms: 3_000,
        fence_ms: 1_000,
        announce_ms: 1_000,
        node_timeout_ms: 5_000,
        settle_ms: 2_000,
        close_timeout_ms: 2_000,
        confirm_timeout_ms: 5_000,
    };

    /// Short enough that a crash or a join plays out in seconds, within the validation
    /// rules (lease at least 3 renewals, fence margin below lease − renewal, node
    /// timeout at least 2 announcements). A hand-over (close echo, then confirms) must
    /// end before the leases renewed just before it reach their fence (lease − margin
    /// = 2.7 s), so its timeouts shrink with the lease: 0.5 + 1.5 s.
    pub const FAST: Self = Self {
        lease_ms: 3_000,
        renew_ms: 900,
        fence_ms: 300,
        announce_ms: 300,
        node_timeout_ms: 1_500,
        settle_ms: 600,
        close_timeout_ms: 500,
        confirm_timeout_ms: 1_500,
    };
}

/// `[consumer]` settings besides the group (which `shardmesh consumer --group` gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerTuning {
    /// `consumer.checkpoint_every_events`.
    pub checkpoint_every_events: u64,
    /// `consumer.checkpoint_every_ms`.
    pub checkpoint_every_ms: u64,
    /// `consumer.handler_attempts`.
    pub handler_attempts: u32,
    /// `consumer.handler_backoff_min_ms`.
    pub handler_backoff_min_ms: u64,
    /// `consumer.handler_backoff_max_ms`.
    pub handler_backoff_max_ms: u64,
}

impl ConsumerTuning {
    /// The shipped defaults (config.example.toml): a checkpoint every 1,000 events or
    /// 1 s, besides every lease renewal; three handler attempts, 100 ms to 5 s apart.
    pub const DEFAULT: Self = Self {
        checkpoint_every_events: 1_000,
        checkpoint_every_ms: 1_000,
        handler_attempts: 3,
        handler_backoff_min_ms: 100,
        handler_backoff_max_ms: 5_000,
    };

    /// A checkpoint per event (a killed consumer repeats at most the event in flight),
    /// three handler attempts with short backoff.
    pub const PER_EVENT: Self = Self {
        checkpoint_every_events: 1,
        checkpoint_every_ms: 100,
        handler_attempts: 3,
        handler_backoff_min_ms: 10,
        handler_backoff_max_ms: 50,
    };
}

/// Everything a test (or the demo) sets in a node's TOML file.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `cluster.name`.
    pub cluster: String,
    /// `cluster.partitions`.
    pub partitions: u32,
    /// `cluster.shard_count`; 0 asks `GET /gateway/bot`.
    pub shard_count: u32,
    /// `cluster.max_concurrency`; 0 asks `GET /gateway/bot`.
    pub max_concurrency: u32,
    /// `node.id`.
    pub node_id: String,
    /// `store.sqlite.path`.
    pub store_path: PathBuf,
    /// `broker.url`.
    pub broker_url: String,
    /// `broker.connect_timeout_ms`.
    pub broker_connect_timeout_ms: u64,
    /// `broker.backoff_max_ms`: short, so a node is back soon after a broker outage.
    pub broker_backoff_max_ms: u64,
    /// Lease and membership timing.
    pub timings: Timings,
    /// `gateway.token`.
    pub token: String,
    /// `gateway.intents`.
    pub intents: u64,
    /// `gateway.gateway_url` (the simulator's `ws://` address).
    pub gateway_url: String,
    /// `gateway.api_url` (the simulator's `http://` address).
    pub api_url: String,
    /// The `[consumer]` section, for a consumer node.
    pub consumer: Option<ConsumerTuning>,
}

impl NodeConfig {
    /// The TOML text of the file.
    pub fn to_toml(&self) -> String {
        let mut text = String::new();
        let timings = &self.timings;
        let _ = writeln!(
            text,
            "[cluster]\nname = {}\npartitions = {}\nshard_count = {}\nmax_concurrency = {}\n",
            quote(&self.cluster),
            self.partitions,
            self.shard_count,
            self.max_concurrency
        );
        let _ = writeln!(
            text,
            "[node]\nid = {}\ncapacity = 1\nhttp_bind = \"127.0.0.1:0\"\n",
            quote(&self.node_id)
        );
        let _ = writeln!(
            text,
            "[store]\nbackend = \"sqlite\"\n\n[store.sqlite]\npath = {}\n",
            quote(&self.store_path.display().to_string())
        );
        let _ = writeln!(
            text,
            "[broker]\nurl = {}\nconnect_timeout_ms = {}\nbackoff_min_ms = 50\nbackoff_max_ms = {}\n",
            quote(&self.broker_url),
            self.broker_connect_timeout_ms,
            self.broker_backoff_max_ms
        );
        let _ = writeln!(
            text,
            "[lease]\nduration_ms = {}\nrenew_interval_ms = {}\nfence_margin_ms = {}\n",
            timings.lease_ms, timings.renew_ms, timings.fence_ms
        );
        let _ = writeln!(
            text,
            "[membership]\nannounce_interval_ms = {}\nnode_timeout_ms = {}\nsettle_delay_ms = {}\n",
            timings.announce_ms, timings.node_timeout_ms, timings.settle_ms
        );
        let _ = writeln!(
            text,
            "[gateway]\ntoken = {}\nintents = {}\ngateway_url = {}\napi_url = {}\n\
             close_timeout_ms = {}\nconfirm_timeout_ms = {}",
            quote(&self.token),
            self.intents,
            quote(&self.gateway_url),
            quote(&self.api_url),
            timings.close_timeout_ms,
            timings.confirm_timeout_ms
        );
        if let Some(consumer) = &self.consumer {
            let _ = writeln!(
                text,
                "\n[consumer]\ncheckpoint_every_events = {}\ncheckpoint_every_ms = {}\n\
                 handler_attempts = {}\nhandler_backoff_min_ms = {}\nhandler_backoff_max_ms = {}",
                consumer.checkpoint_every_events,
                consumer.checkpoint_every_ms,
                consumer.handler_attempts,
                consumer.handler_backoff_min_ms,
                consumer.handler_backoff_max_ms
            );
        }
        text
    }
}

/// A TOML basic string holding `text`.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_parses_as_toml_with_every_section() {
        let config = NodeConfig {
            cluster: "c".into(),
            partitions: 4,
            shard_count: 32,
            max_concurrency: 4,
            node_id: "g1".into(),
            store_path: PathBuf::from("/tmp/a \"b\"/store.sqlite"),
            broker_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            broker_connect_timeout_ms: 2_000,
            broker_backoff_max_ms: 1_000,
            timings: Timings::FAST,
            token: "t".into(),
            intents: 513,
            gateway_url: "ws://127.0.0.1:1".into(),
            api_url: "http://127.0.0.1:1".into(),
            consumer: Some(ConsumerTuning::PER_EVENT),
        };
        let table: toml::Table = config.to_toml().parse().unwrap();
        assert_eq!(
            table["store"]["sqlite"]["path"].as_str(),
            Some("/tmp/a \"b\"/store.sqlite")
        );
        assert_eq!(table["lease"]["duration_ms"].as_integer(), Some(3_000));
        assert_eq!(table["gateway"]["token"].as_str(), Some("t"));
        assert_eq!(
            table["gateway"]["confirm_timeout_ms"].as_integer(),
            Some(1_500)
        );
        assert_eq!(
            table["consumer"]["checkpoint_every_events"].as_integer(),
            Some(1)
        );
    }
}
