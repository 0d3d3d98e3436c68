//! Cron schedules per backup kind, where they run (placement), and when they are due.
//!
//! Everything here but [`ScheduleRunner`] is pure: time and the cluster view come in as
//! parameters. Every node evaluates the same schedules against the same cluster view, and
//! [`chosen_node`] picks one node deterministically, so after a failover exactly one
//! node runs each scheduled backup.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use rale::{NodeId, Role};
use serde::{Deserialize, Serialize};

use crate::jobs::{JobId, JobManager, JobSpec};
use crate::types::BackupKind;
use crate::{Error, Result};

/// Where scheduled backups run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// On the healthy primary.
    Primary,
    /// On a healthy replica (lowest name), on the primary when there is none.
    #[default]
    PreferReplica,
    /// On a healthy replica (lowest name), nowhere when there is none.
    AnyReplica,
}

/// What the scheduler needs to know about one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member.
    pub node: NodeId,
    /// Its observed role.
    pub role: Role,
    /// Whether it is healthy enough to take a backup (PostgreSQL up, agent reachable,
    /// replica not lagging beyond limits — the caller decides).
    pub healthy: bool,
}

/// The member that runs backups under `policy`, if any. Deterministic: the lowest node
/// name among eligible members wins, whatever the order of `members`.
pub fn chosen_node(policy: Placement, members: &[MemberView]) -> Option<NodeId> {
    let lowest = |role: Role| {
        members
            .iter()
            .filter(|m| m.healthy && m.role == role)
            .map(|m| &m.node)
            .min()
            .cloned()
    };
    match policy {
        Placement::Primary => lowest(Role::Primary),
        Placement::AnyReplica => lowest(Role::Replica),
        Placement::PreferReplica => lowest(Role::Replica).or_else(|| lowest(Role::Primary)),
    }
}

/// Whether `me` runs backups under `policy`.
pub fn runs_here(policy: Placement, me: &NodeId, members: &[MemberView]) -> bool {
    chosen_node(policy, members).as_ref() == Some(me)
}

/// A scheduled backup as configured (and as the API carries it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Unique name (`nightly-full`).
    pub name: String,
    /// Backup kind.
    pub kind: BackupKind,
    /// Cron expression, 5 fields or 6 with seconds first (`0 30 2 * * *`), UTC.
    pub cron: String,
    /// Where it runs.
    #[serde(default)]
    pub placement: Placement,
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    spec: ScheduleSpec,
    cron: Cron,
}

impl Schedule {
    /// Parses the cron expression.
    pub fn parse(spec: ScheduleSpec) -> Result<Self> {
        let cron = Cron::new(&spec.cron)
            .with_seconds_optional()
            .parse()
            .map_err(|e| Error::Cron {
                expr: spec.cron.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self { spec, cron })
    }

    /// The configuration.
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// Whether an occurrence falls in `(last, now]`.
    pub fn is_due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.next_after(last).is_some_and(|n| n <= now)
    }
}

/// A due schedule and whether this node runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Firing {
    /// Schedule name.
    pub schedule: String,
    /// Backup kind.
    pub kind: BackupKind,
    /// The occurrence that fell due.
    pub occurrence: DateTime<Utc>,
    /// Whether this node is the chosen one.
    pub run_here: bool,
    /// The node chosen by placement.
    pub chosen: Option<NodeId>,
}

/// Schedules with their last-evaluated times. Missed occurrences are not caught up: at
/// most one firing per schedule per evaluation, and a new scheduler starts counting from
/// the time it is created.
#[derive(Clone, Debug)]
pub struct Scheduler {
    schedules: Vec<Schedule>,
    last: BTreeMap<String, DateTime<Utc>>,
}

impl Scheduler {
    /// Parses `specs`; occurrences after `now` count.
    pub fn new(specs: Vec<ScheduleSpec>, now: DateTime<Utc>) -> Result<Self> {
        let mut schedules = Vec::with_capacity(specs.len());
        let mut last = BTreeMap::new();
        for spec in specs {
            if last.insert(spec.name.clone(), now).is_some() {
                return Err(Error::Config(format!(
                    "duplicate schedule name {:?}",
                    spec.name
                )));
            }
            schedules.push(Schedule::parse(spec)?);
        }
        Ok(Self { schedules, last })
    }

    /// The last-run record (schedule name → last evaluation time), for persisting.
    pub fn last_runs(&self) -> &BTreeMap<String, DateTime<Utc>> {
        &self.last
    }

    /// Restores a persisted last-run record; names of unknown schedules are ignored.
    pub fn restore_last_runs(&mut self, record: &BTreeMap<String, DateTime<Utc>>) {
        for (name, t) in record {
            if let Some(slot) = self.last.get_mut(name) {
                *slot = *t;
            }
        }
    }

    /// The schedules.
    pub fn specs(&self) -> Vec<ScheduleSpec> {
        self.schedules.iter().map(|s| s.spec.clone()).collect()
    }

    /// The next occurrence of each schedule after its last evaluation.
    pub fn next_runs(&self) -> Vec<(String, Option<DateTime<Utc>>)> {
        self.schedules
            .iter()
            .map(|s| {
                let last = self
                    .last
                    .get(&s.spec.name)
                    .copied()
                    .unwrap_or(DateTime::UNIX_EPOCH);
                (s.spec.name.clone(), s.next_after(last))
            })
            .collect()
    }

    /// Pure query: the schedules due at `now`, without recording anything.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<&ScheduleSpec> {
        self.schedules
            .iter()
            .filter(|s| {
                let last = self.last.get(&s.spec.name).copied().unwrap_or(now);
                s.is_due(last, now)
            })
            .map(|s| &s.spec)
            .collect()
    }

    /// Evaluates at `now` for node `me` in the cluster `members`: returns every due
    /// schedule (with whether it runs here) and records `now` as evaluated for them, on
    /// every node, chosen or not, so a later failover does not replay old occurrences.
    pub fn tick(&mut self, now: DateTime<Utc>, me: &NodeId, members: &[MemberView]) -> Vec<Firing> {
        let mut out = Vec::new();
        for s in &self.schedules {
            let last = self.last.get(&s.spec.name).copied().unwrap_or(now);
            let Some(occurrence) = s.next_after(last).filter(|n| *n <= now) else {
                continue;
            };
            let chosen = chosen_node(s.spec.placement, members);
            out.push(Firing {
                schedule: s.spec.name.clone(),
                kind: s.spec.kind,
                occurrence,
                run_here: chosen.as_ref() == Some(me),
                chosen,
            });
        }
        for f in &out {
            self.last.insert(f.schedule.clone(), now);
        }
        out
    }
}

/// Supplies the current cluster view to the scheduler task.
pub trait ClusterView: Send + Sync {
    /// The members as this node sees them now.
    fn members(&self) -> Vec<MemberView>;
}

impl<F> ClusterView for F
where
    F: Fn() -> Vec<MemberView> + Send + Sync,
{
    fn members(&self) -> Vec<MemberView> {
        self()
    }
}

/// A tokio task that ticks a [`Scheduler`] and submits the backups that run here.
#[derive(Debug)]
pub struct ScheduleRunner {
    scheduler: Arc<Mutex<Scheduler>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScheduleRunner {
    /// Starts the task, evaluating every `tick` (one second is a good value).
    pub fn spawn(
        scheduler: Scheduler,
        jobs: JobManager,
        me: NodeId,
        view: Arc<dyn ClusterView>,
        tick: Duration,
    ) -> Self {
        let scheduler = Arc::new(Mutex::new(scheduler));
        let shared = scheduler.clone();
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick.max(Duration::from_millis(10)));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                let members = view.members();
                let firings =
                    shared
                        .lock()
                        .expect("scheduler lock poisoned")
                        .tick(Utc::now(), &me, &members);
                for f in firings {
                    tracing::info!(
                        node = %me,
                        schedule = %f.schedule,
                        chosen = ?f.chosen,
                        run_here = f.run_here,
                        reason = "schedule due",
                        "backup schedule fired"
                    );
                    if !f.run_here {
                        continue;
                    }
                    match jobs.submit_from_schedule(
                        JobSpec::Backup { kind: f.kind },
                        Some(f.schedule.clone()),
                    ) {
                        Ok(id) => {
                            tracing::info!(node = %me, schedule = %f.schedule, job = %id, "scheduled backup queued")
                        }
                        Err(e) => {
                            tracing::warn!(node = %me, schedule = %f.schedule, error = %e, "scheduled backup not queued")
                        }
                    }
                }
            }
        });
        Self { scheduler, task }
    }

    /// Replaces the schedules (counting from now).
    pub fn replace(&self, specs: Vec<ScheduleSpec>) -> Result<()> {
        let fresh = Scheduler::new(specs, Utc::now())?;
        *self.scheduler.lock().expect("scheduler lock poisoned") = fresh;
        Ok(())
    }

    /// The current schedules and their next runs.
    pub fn next_runs(&self) -> Vec<(String, Option<DateTime<Utc>>)> {
        self.scheduler
            .lock()
            .expect("scheduler lock poisoned")
            .next_runs()
    }

    /// Stops the task.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Convenience for tests and callers holding job ids from schedules.
pub fn scheduled_jobs(jobs: &JobManager, schedule: &str) -> Vec<JobId> {
    jobs.list()
        .into_iter()
        .filter(|j| j.schedule.as_deref() == Some(schedule))
        .map(|j| j.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(n: &str) -> NodeId {
        NodeId::new(n).expect("valid name")
    }

    fn m(n: &str, role: Role, healthy: bool) -> MemberView {
        MemberView {
            node: node(n),
            role,
            healthy,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    #[test]
    fn placement() {
        let c = vec![
            m("n3", Role::Replica, true),
            m("n1", Role::Primary, true),
            m("n2", Role::Replica, false),
        ];
        assert_eq!(chosen_node(Placement::Primary, &c), Some(node("n1")));
        assert_eq!(chosen_node(Placement::AnyReplica, &c), Some(node("n3")));
        assert_eq!(chosen_node(Placement::PreferReplica, &c), Some(node("n3")));
        let only_primary = vec![m("n1", Role::Primary, true), m("n2", Role::Replica, false)];
        assert_eq!(
            chosen_node(Placement::PreferReplica, &only_primary),
            Some(node("n1"))
        );
        assert_eq!(chosen_node(Placement::AnyReplica, &only_primary), None);
        assert_eq!(
            chosen_node(Placement::Primary, &[m("n1", Role::Primary, false)]),
            None
        );
    }

    #[test]
    fn after_failover_exactly_one_node_runs() {
        // n1 was primary and failed; n2 promoted; n3 follows n2.
        let before = vec![
            m("n1", Role::Primary, true),
            m("n2", Role::Replica, true),
            m("n3", Role::Replica, true),
        ];
        let after = vec![
            m("n1", Role::Unknown, false),
            m("n2", Role::Primary, true),
            m("n3", Role::Replica, true),
        ];
        for (view, p, expected) in [
            (&before, Placement::Primary, "n1"),
            (&after, Placement::Primary, "n2"),
            (&before, Placement::AnyReplica, "n2"),
            (&after, Placement::AnyReplica, "n3"),
        ] {
            let runners: Vec<&str> = ["n1", "n2", "n3"]
                .into_iter()
                .filter(|me| runs_here(p, &node(me), view))
                .collect();
            assert_eq!(runners, [expected]);
        }
    }

    #[test]
    fn due_with_injected_time() {
        let spec = ScheduleSpec {
            name: "hourly".into(),
            kind: BackupKind::Incremental,
            cron: "0 * * * *".into(),
            placement: Placement::Primary,
        };
        let start = DateTime::parse_from_rfc3339("2026-11-22T02:10:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        let mut s = Scheduler::new(vec![spec], start).expect("parses");
        let me = node("n1");
        let c = vec![m("n1", Role::Primary, true)];
        assert!(
            s.tick(start + chrono::Duration::minutes(49), &me, &c)
                .is_empty()
        );
        let three = start + chrono::Duration::minutes(50);
        assert_eq!(s.due(three).len(), 1);
        let f = s.tick(three, &me, &c);
        assert_eq!(f.len(), 1);
        assert!(f[0].run_here);
        assert_eq!(f[0].occurrence.to_rfc3339(), "2026-11-22T03:00:00+00:00");
        // A restarted scheduler given the record does not fire 03:00 again.
        let mut restarted = Scheduler::new(s.specs(), start).expect("parses");
        restarted.restore_last_runs(s.last_runs());
        assert!(
            restarted
                .due(three + chrono::Duration::minutes(1))
                .is_empty()
        );
        // Not again until 04:00, and missed hours fire once.
        assert!(
            s.tick(three + chrono::Duration::minutes(30), &me, &c)
                .is_empty()
        );
        assert_eq!(s.tick(three + chrono::Duration::hours(5), &me, &c).len(), 1);
    }

    #[test]
    fn bad_cron_and_duplicates_rejected() {
        let spec = |name: &str, cron: &str| ScheduleSpec {
            name: name.into(),
            kind: BackupKind::Full,
            cron: cron.into(),
            placement: Placement::Primary,
        };
        assert!(matches!(
            Scheduler::new(vec![spec("a", "not cron")], at(0)),
            Err(Error::Cron { .. })
        ));
        assert!(
            Scheduler::new(
                vec![spec("a", "* * * * * *"), spec("a", "* * * * *")],
                at(0)
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn choice_ignores_member_order(seed in proptest::collection::vec((0u8..6, 0u8..3, any::<bool>()), 0..6), rot in 0usize..6) {
            let members: Vec<MemberView> = seed
                .iter()
                .map(|(n, r, h)| m(&format!("n{n}"), [Role::Primary, Role::Replica, Role::Unknown][*r as usize], *h))
                .collect();
            let mut rotated = members.clone();
            if !rotated.is_empty() {
                let k = rot % rotated.len();
                rotated.rotate_left(k);
            }
            for p in [Placement::Primary, Placement::PreferReplica, Placement::AnyReplica] {
                prop_assert_eq!(chosen_node(p, &members), chosen_node(p, &rotated));
                // At most one member runs it.
                let names: std::collections::BTreeSet<_> = members.iter().map(|m| m.node.clone()).collect();
                let runners = names.iter().filter(|me| runs_here(p, me, &members)).count();
                prop_assert!(runners <= 1);
            }
        }
    }
}
