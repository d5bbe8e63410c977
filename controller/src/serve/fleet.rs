//! The Envoys connected over gRPC: what each was sent, what it accepted, what it refused and
//! why; and the controller's counters, for the API and `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

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

#[derive(Debug, Default)]
pub struct Counters {
    pub pushes: AtomicU64,
    pub acks: AtomicU64,
    pub nacks: AtomicU64,
}

#[derive(Debug, Default)]
pub struct Fleet {
    envoys: Mutex<BTreeMap<String, EnvoyStatus>>,
    pub counters: Counters,
}

impl Fleet {
    fn with<R>(&self, node: &str, f: impl FnOnce(&mut EnvoyStatus) -> R) -> Option<R> {
        let mut envoys = self.envoys.lock().ok()?;
        let status = envoys
            .entry(node.to_owned())
            .or_insert_with(|| EnvoyStatus {
                node: node.to_owned(),
                ..EnvoyStatus::default()
            });
        status.last_seen = now();
        Some(f(status))
    }

    pub fn connected(&self, node: &str, cluster: &str) {
        self.with(node, |s| {
            s.streams += 1;
            s.cluster = cluster.to_owned();
        });
    }

    pub fn disconnected(&self, node: &str) {
        self.with(node, |s| s.streams = s.streams.saturating_sub(1));
    }

    pub fn sent(&self, node: &str, version: &str) {
        self.counters.pushes.fetch_add(1, Ordering::Relaxed);
        self.with(node, |s| s.sent = Some(version.to_owned()));
    }

    pub fn acked(&self, node: &str, version: &str) {
        self.counters.acks.fetch_add(1, Ordering::Relaxed);
        self.with(node, |s| {
            s.acked = Some(version.to_owned());
            s.nack = None;
        });
    }

    /// `accepted` is the version Envoy says it still serves.
    pub fn nacked(&self, node: &str, version: &str, accepted: &str, reason: &str) {
        self.counters.nacks.fetch_add(1, Ordering::Relaxed);
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

    pub fn envoys(&self) -> Vec<EnvoyStatus> {
        self.envoys
            .lock()
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn connected_count(&self) -> usize {
        self.envoys().iter().filter(|e| e.streams > 0).count()
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
        fleet.connected("a", "edge");
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
        assert_eq!(fleet.counters.nacks.load(Ordering::Relaxed), 1);
        assert_eq!(fleet.counters.acks.load(Ordering::Relaxed), 2);
        assert_eq!(fleet.connected_count(), 1);
        fleet.disconnected("a");
        assert_eq!(fleet.connected_count(), 0);
    }
}
