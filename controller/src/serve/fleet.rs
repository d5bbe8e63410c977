//! The Envoys connected over gRPC: what each was sent, what it accepted, what it refused and
//! why; and the controller's counters, for the API and `/metrics`.
//!
//! The fleet is bounded: any client that reaches the gRPC port can name itself, so a node is
//! forgotten once its last stream has been gone for [`Limits::forget_after`], and a stream from
//! a new node is refused while [`Limits::max_nodes`] are tracked.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

/// One Envoy, by its bootstrap `node.id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvoyStatus {
    pub node: String,
    pub cluster: String,
    /// Open ECDS streams from this node (0 once it has gone).
    pub streams: u32,
    /// The version last pushed to it.
    pub sent: Option<String>,
    /// The version it last accepted: the one it serves.
    pub acked: Option<String>,
    /// The last version it refused, with Envoy's reason, until it accepts a newer one.
    pub nack: Option<Nack>,
    /// Seconds since the Unix epoch of its last message.
    pub last_seen: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nack {
    pub version: String,
    pub reason: String,
}

/// What the ECDS server did, since it started; `/metrics` exposes them.
#[derive(Debug, Default)]
pub struct Counters {
    pub pushes: Counter,
    pub acks: Counter,
    pub nacks: Counter,
    /// Streams refused because [`Limits::max_nodes`] nodes were tracked.
    pub refused: Counter,
    /// Streams refused because they carried no valid token.
    pub unauthenticated: Counter,
}

/// How much of the fleet is remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nodes tracked at most, connected or recently gone.
    pub max_nodes: usize,
    /// How long a node is remembered after its last stream has gone.
    pub forget_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_nodes: 10_000,
            forget_after: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug)]
struct Tracked {
    status: EnvoyStatus,
    /// When its last stream went, while it has none.
    gone_since: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Fleet {
    limits: Limits,
    envoys: Mutex<BTreeMap<String, Tracked>>,
    pub counters: Counters,
}

impl Fleet {
    pub fn new(limits: Limits) -> Self {
        Fleet {
            limits,
            ..Fleet::default()
        }
    }

    /// Applies `f` to a tracked node; nothing for a node that is not tracked.
    fn with<R>(&self, node: &str, f: impl FnOnce(&mut EnvoyStatus) -> R) -> Option<R> {
        let mut envoys = self.envoys.lock().ok()?;
        let tracked = envoys.get_mut(node)?;
        tracked.status.last_seen = now();
        Some(f(&mut tracked.status))
    }

    /// Forgets the nodes gone for longer than the limit.
    fn forget_gone(&self, envoys: &mut BTreeMap<String, Tracked>) {
        let forget_after = self.limits.forget_after;
        envoys.retain(|_, t| {
            t.gone_since
                .is_none_or(|since| since.elapsed() < forget_after)
        });
    }

    /// A stream from `node` opened; false (and counted) if the node is new and the fleet is full.
    #[must_use]
    pub fn connected(&self, node: &str, cluster: &str) -> bool {
        let Ok(mut envoys) = self.envoys.lock() else {
            return false;
        };
        if !envoys.contains_key(node) {
            self.forget_gone(&mut envoys);
            if envoys.len() >= self.limits.max_nodes {
                self.counters.refused.inc();
                return false;
            }
        }
        let tracked = envoys.entry(node.to_owned()).or_insert_with(|| Tracked {
            status: EnvoyStatus {
                node: node.to_owned(),
                ..EnvoyStatus::default()
            },
            gone_since: None,
        });
        tracked.status.streams += 1;
        tracked.status.cluster = cluster.to_owned();
        tracked.status.last_seen = now();
        tracked.gone_since = None;
        true
    }

    pub fn disconnected(&self, node: &str) {
        if let Ok(mut envoys) = self.envoys.lock() {
            if let Some(tracked) = envoys.get_mut(node) {
                tracked.status.streams = tracked.status.streams.saturating_sub(1);
                tracked.status.last_seen = now();
                if tracked.status.streams == 0 {
                    tracked.gone_since = Some(Instant::now());
                }
            }
        }
    }

    pub fn sent(&self, node: &str, version: &str) {
        self.counters.pushes.inc();
        self.with(node, |s| s.sent = Some(version.to_owned()));
    }

    pub fn acked(&self, node: &str, version: &str) {
        self.counters.acks.inc();
        self.with(node, |s| {
            s.acked = Some(version.to_owned());
            s.nack = None;
        });
    }

    /// `accepted` is the version Envoy says it still serves.
    pub fn nacked(&self, node: &str, version: &str, accepted: &str, reason: &str) {
        self.counters.nacks.inc();
        self.with(node, |s| {
            if !accepted.is_empty() {
                s.acked = Some(accepted.to_owned());
            }
            s.nack = Some(Nack {
                version: version.to_owned(),
                reason: reason.to_owned(),
            });
        });
    }

    /// The tracked nodes, connected or gone for less than the limit.
    pub fn envoys(&self) -> Vec<EnvoyStatus> {
        let Ok(mut envoys) = self.envoys.lock() else {
            return Vec::new();
        };
        self.forget_gone(&mut envoys);
        envoys.values().map(|t| t.status.clone()).collect()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nack_is_kept_until_a_newer_version_is_accepted() {
        let fleet = Fleet::default();
        assert!(fleet.connected("a", "edge"));
        fleet.sent("a", "v1");
        fleet.acked("a", "v1");
        fleet.sent("a", "v2");
        fleet.nacked("a", "v2", "v1", "bad module");
        let a = &fleet.envoys()[0];
        assert_eq!(a.acked.as_deref(), Some("v1"), "still serves v1");
        assert_eq!(
            a.nack.as_ref().map(|n| n.reason.as_str()),
            Some("bad module")
        );
        fleet.sent("a", "v3");
        fleet.acked("a", "v3");
        assert_eq!(fleet.envoys()[0].nack, None);
        assert_eq!(fleet.counters.nacks.get(), 1);
        assert_eq!(fleet.counters.acks.get(), 2);
        assert_eq!(fleet.envoys()[0].streams, 1);
        fleet.disconnected("a");
        assert_eq!(fleet.envoys()[0].streams, 0, "gone, still remembered");
    }

    #[test]
    fn a_new_node_is_refused_and_counted_while_the_fleet_is_full() {
        let fleet = Fleet::new(Limits {
            max_nodes: 2,
            forget_after: Duration::from_secs(3600),
        });
        assert!(fleet.connected("a", "edge"));
        assert!(fleet.connected("b", "edge"));
        assert!(!fleet.connected("c", "edge"), "a third node");
        assert!(
            fleet.connected("a", "edge"),
            "a second stream of a tracked node"
        );
        fleet.disconnected("b");
        assert!(
            !fleet.connected("c", "edge"),
            "b is gone but still remembered"
        );
        let nodes: Vec<String> = fleet.envoys().into_iter().map(|e| e.node).collect();
        assert_eq!(nodes, ["a", "b"]);
        assert_eq!(fleet.counters.refused.get(), 2);
        fleet.sent("c", "v1");
        assert_eq!(
            fleet.envoys().len(),
            2,
            "a message for a refused node tracks nothing"
        );
    }

    #[test]
    fn a_gone_node_is_forgotten_after_the_limit_and_frees_its_place() {
        let fleet = Fleet::new(Limits {
            max_nodes: 1,
            forget_after: Duration::from_millis(50),
        });
        assert!(fleet.connected("a", "edge"));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            fleet.envoys().len(),
            1,
            "connected nodes are never forgotten"
        );
        fleet.disconnected("a");
        assert_eq!(fleet.envoys().len(), 1, "just gone: still remembered");
        std::thread::sleep(Duration::from_millis(80));
        assert!(fleet.envoys().is_empty(), "gone for longer than the limit");
        assert!(fleet.connected("b", "edge"), "its place is free");
        assert_eq!(fleet.counters.refused.get(), 0);
    }
}
