//! The progress of a rollout, recorded with the target (an annotation on the WasmPlugin, a file
//! next to the ECDS file: see [`crate::targets::record`]) so that a restarted `rollout` resumes
//! at its step, `resume` lifts a pause and `abort` stops it:
//!
//! `{"id":"…","route":"web","variant":"canary","step":2,"steps":["10","50","100"],"state":"running"}`
//!
//! A step of a `--ramp` rollout also says so:
//! `"ramp":{"from":"10","to":"50","start":"2026-12-07T12:00:30.125Z","duration":"30s"}`.

use serde::{Deserialize, Serialize};

use crate::targets::{self, Clients, Target};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Running,
    /// At a manual gate, until `canaryctl resume`.
    Paused,
    Promoted,
    RolledBack,
    /// Stopped by `canaryctl abort`.
    Aborted,
}

impl State {
    /// Whether a rollout in this state is under way (and so can be resumed or aborted).
    pub fn active(self) -> bool {
        matches!(self, State::Running | State::Paused)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Promoted => "promoted",
            State::RolledBack => "rolled back",
            State::Aborted => "aborted",
        })
    }
}

/// A route's rollout record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Which `rollout` run this is: kept by a run that resumes it.
    pub id: String,
    pub route: String,
    pub variant: String,
    /// The step under way, from 1; `steps.len() + 1` once every step has passed.
    pub step: usize,
    /// The canary weight of each step, as given.
    pub steps: Vec<String>,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `rollout` process driving it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// With `--ramp`, the ramp written for the step under way; none for a step whose weight
    /// jumped or was held, and once the rollout has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<StepRamp>,
}

/// A step's ramp as the record keeps it: the variant's weight moves from `from` to `to` (the
/// step's weight) between `start` and `start + duration`, as in the route's `ramp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRamp {
    pub from: String,
    pub to: String,
    /// An RFC 3339 time, UTC.
    pub start: String,
    pub duration: String,
}

/// A process, by host name and process id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
}

impl Owner {
    /// This process, where the host has a name.
    pub fn this_process() -> Option<Owner> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())?;
        Some(Owner {
            host: host.trim().to_owned(),
            pid: std::process::id(),
        })
    }

    /// Whether this is another process on this host that is still running. Only Linux (`/proc`)
    /// can tell; elsewhere, and for other hosts, the answer is no.
    pub fn alive_elsewhere(&self) -> bool {
        Owner::this_process().is_some_and(|me| {
            me.host == self.host
                && me.pid != self.pid
                && std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
        })
    }
}

/// The route's rollout record; a record that does not parse counts as none.
pub async fn load(
    target: &Target,
    clients: &Clients,
    route: &str,
) -> targets::Result<Option<Record>> {
    Ok(target
        .read_record(clients, route)
        .await?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

/// Replaces the record with `change(current)`, or leaves it when that is None; redone if someone
/// else writes the record meanwhile. Returns the record now kept.
pub async fn transition(
    target: &Target,
    clients: &Clients,
    route: &str,
    change: &(dyn Fn(Option<Record>) -> Option<Record> + Send + Sync),
) -> targets::Result<Option<Record>> {
    let edit = |current: Option<&str>| {
        let current = current.and_then(|text| serde_json::from_str(text).ok());
        change(current).and_then(|record| serde_json::to_string(&record).ok())
    };
    let kept = target.update_record(clients, route, &edit).await?;
    Ok(kept.and_then(|text| serde_json::from_str(&text).ok()))
}

/// Records `record` as this run's progress, unless the run was aborted meanwhile. Returns the
/// record now kept: `record`, or the aborted one.
pub async fn save(
    target: &Target,
    clients: &Clients,
    record: &Record,
) -> targets::Result<Option<Record>> {
    transition(target, clients, &record.route, &|current| match current {
        Some(current) if current.id == record.id && current.state == State::Aborted => None,
        _ => Some(record.clone()),
    })
    .await
}

/// Marks an active rollout of `route` aborted. The aborted record, or None when no rollout was
/// under way.
pub async fn abort(
    target: &Target,
    clients: &Clients,
    route: &str,
) -> targets::Result<Option<Record>> {
    changed(target, clients, route, &|mut record| {
        record.state.active().then(|| {
            record.state = State::Aborted;
            record.message = Some("aborted by canaryctl abort".to_owned());
            record
        })
    })
    .await
}

/// Lifts the pause of a paused rollout of `route`. The resumed record, or None when no rollout
/// was paused.
pub async fn resume(
    target: &Target,
    clients: &Clients,
    route: &str,
) -> targets::Result<Option<Record>> {
    changed(target, clients, route, &|mut record| {
        (record.state == State::Paused).then(|| {
            record.state = State::Running;
            record.message = Some("resumed by canaryctl resume".to_owned());
            record
        })
    })
    .await
}

/// Applies `change` to the record, if there is one; the changed record, or None when `change`
/// left it alone.
async fn changed(
    target: &Target,
    clients: &Clients,
    route: &str,
    change: &(dyn Fn(Record) -> Option<Record> + Send + Sync),
) -> targets::Result<Option<Record>> {
    let made = std::sync::Mutex::new(None);
    transition(target, clients, route, &|current| {
        let new = current.and_then(change);
        *made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = new.clone();
        new
    })
    .await?;
    Ok(made
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, state: State) -> Record {
        Record {
            id: id.into(),
            route: "web".into(),
            variant: "canary".into(),
            step: 2,
            steps: vec!["10".into(), "50".into(), "100".into()],
            state,
            message: None,
            owner: None,
            ramp: None,
        }
    }

    #[test]
    fn the_record_as_json() {
        let text = serde_json::to_string(&record("a", State::RolledBack)).unwrap();
        assert_eq!(
            text,
            r#"{"id":"a","route":"web","variant":"canary","step":2,"steps":["10","50","100"],"state":"rolled-back"}"#
        );
        let ramped = Record {
            ramp: Some(StepRamp {
                from: "10".into(),
                to: "50".into(),
                start: "2026-12-07T12:00:30.125Z".into(),
                duration: "30s".into(),
            }),
            ..record("a", State::Running)
        };
        let text = serde_json::to_string(&ramped).unwrap();
        assert!(
            text.ends_with(
                r#""state":"running","ramp":{"from":"10","to":"50","start":"2026-12-07T12:00:30.125Z","duration":"30s"}}"#
            ),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), ramped);
    }

    #[test]
    fn a_live_owner_is_told_from_a_dead_one() {
        let me = Owner::this_process().expect("Linux has a host name");
        assert!(!me.alive_elsewhere(), "this process is not elsewhere");
        let parent = Owner {
            pid: std::os::unix::process::parent_id(),
            ..me.clone()
        };
        assert!(parent.alive_elsewhere(), "the test runner's parent runs");
        let gone = Owner {
            pid: u32::MAX - 1,
            ..me.clone()
        };
        assert!(!gone.alive_elsewhere());
        let other_host = Owner {
            host: format!("not-{}", me.host),
            ..parent
        };
        assert!(!other_host.alive_elsewhere());
    }

    #[tokio::test]
    async fn transitions_on_a_file_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::File(dir.path().join("filter.json"));
        let clients = &Clients::default();
        assert_eq!(load(&target, clients, "web").await.unwrap(), None);
        assert_eq!(
            abort(&target, clients, "web").await.unwrap(),
            None,
            "nothing to abort"
        );

        save(&target, clients, &record("a", State::Running))
            .await
            .unwrap();
        assert_eq!(
            resume(&target, clients, "web").await.unwrap(),
            None,
            "not paused"
        );
        save(&target, clients, &record("a", State::Paused))
            .await
            .unwrap();
        assert_eq!(
            resume(&target, clients, "web")
                .await
                .unwrap()
                .unwrap()
                .state,
            State::Running
        );

        let aborted = abort(&target, clients, "web").await.unwrap().unwrap();
        assert_eq!(aborted.state, State::Aborted);
        assert_eq!(
            abort(&target, clients, "web").await.unwrap(),
            None,
            "already aborted"
        );
        let kept = save(&target, clients, &record("a", State::Running))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.state, State::Aborted, "the aborted run cannot go on");
        let fresh = save(&target, clients, &record("b", State::Running))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(fresh.state, State::Running, "a new run starts over it");

        save(&target, clients, &record("b", State::Promoted))
            .await
            .unwrap();
        assert_eq!(
            abort(&target, clients, "web").await.unwrap(),
            None,
            "a finished rollout"
        );
        assert_eq!(
            load(&target, clients, "web").await.unwrap().unwrap().state,
            State::Promoted
        );
    }
}
