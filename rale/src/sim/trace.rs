//! The run's trace: every fault, every decision that changed something (kind, reason,
//! actions, with the node's PostgreSQL state), every completed action, every applied
//! consensus command and every acknowledged write, in virtual-time order.

use std::fmt::Write as _;

use crate::decide::{Action, Decision, DecisionKind, PgAction};
use crate::state::Operation;

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// A fault struck or ended.
    Fault(String),
    /// A policy step (recorded when it had actions or its kind/reason changed).
    Decision {
        /// The node's clock.
        clock_ms: u64,
        /// Kind.
        kind: DecisionKind,
        /// Reason.
        reason: String,
        /// Actions.
        actions: Vec<Action>,
        /// The node's PostgreSQL as observed.
        pg: String,
        /// Whether the node could reach a consensus majority.
        majority: bool,
    },
    /// A PostgreSQL action finished (or failed, or was dropped).
    Action(String),
    /// A consensus command was applied.
    Applied(String),
    /// The client's write was acknowledged.
    Ack(String),
    /// An invariant was violated.
    Violation(String),
    /// Free text (phase changes).
    Note(String),
}

/// One trace line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time, ms.
    pub at_ms: u64,
    /// The node concerned, by name.
    pub node: Option<String>,
    /// What.
    pub kind: TraceKind,
}

fn action_text(a: &Action) -> String {
    match a {
        Action::Propose { op } => {
            let text = serde_json::to_string(op).unwrap_or_default();
            let short: String = text.chars().take(160).collect();
            format!("propose {short}")
        }
        Action::Pg { action } => {
            let text = serde_json::to_string(action).unwrap_or_default();
            format!("pg {text}")
        }
    }
}

impl TraceEvent {
    /// The event as one readable line.
    pub fn line(&self) -> String {
        let who = self.node.as_deref().unwrap_or("-");
        let mut s = format!("{:>8} ms {who:>4} ", self.at_ms);
        match &self.kind {
            TraceKind::Fault(f) => {
                let _ = write!(s, "FAULT {f}");
            }
            TraceKind::Decision {
                clock_ms,
                kind,
                reason,
                actions,
                pg,
                majority,
            } => {
                let _ = write!(
                    s,
                    "decide [{kind:?}] {reason} | clock {clock_ms} | {}| pg: {pg}",
                    if *majority { "" } else { "NO MAJORITY | " }
                );
                for a in actions {
                    let _ = write!(s, "\n{:>17}-> {}", "", action_text(a));
                }
            }
            TraceKind::Action(a) => {
                let _ = write!(s, "action {a}");
            }
            TraceKind::Applied(a) => {
                let _ = write!(s, "consensus {a}");
            }
            TraceKind::Ack(a) => {
                let _ = write!(s, "ack {a}");
            }
            TraceKind::Violation(v) => {
                let _ = write!(s, "VIOLATION {v}");
            }
            TraceKind::Note(n) => {
                let _ = write!(s, "== {n}");
            }
        }
        s
    }
}

/// A recorder that keeps decisions only when they say something new.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// The events so far.
    pub events: Vec<TraceEvent>,
    last_decision: Vec<Option<(DecisionKind, String)>>,
}

impl Trace {
    /// A trace for `n` nodes.
    pub fn new(n: usize) -> Self {
        Trace {
            events: Vec::new(),
            last_decision: vec![None; n],
        }
    }

    /// Records an event.
    pub fn push(&mut self, at_ms: u64, node: Option<&str>, kind: TraceKind) {
        self.events.push(TraceEvent {
            at_ms,
            node: node.map(str::to_owned),
            kind,
        });
    }

    /// Records a decision of node `i` if it has actions or differs from its previous one.
    #[allow(clippy::too_many_arguments)]
    pub fn decision(
        &mut self,
        at_ms: u64,
        i: usize,
        name: &str,
        clock_ms: u64,
        d: &Decision,
        pg: String,
        majority: bool,
    ) {
        // Renewals, publications and slot refreshes are routine: a decision with only
        // those, of the same kind and reason as the node's previous one, is not recorded.
        let kind = if d.kind == DecisionKind::Renew {
            DecisionKind::Steady
        } else {
            d.kind
        };
        let key = (kind, d.reason.clone());
        let same = self.last_decision.get(i).and_then(|k| k.as_ref()) == Some(&key);
        let routine = d.actions.iter().all(|a| {
            matches!(
                a,
                Action::Propose {
                    op: Operation::RenewLease { .. } | Operation::PublishMember { .. }
                } | Action::Pg {
                    action: PgAction::EnsureSlots { .. }
                }
            )
        });
        if same && routine {
            return;
        }
        if let Some(slot) = self.last_decision.get_mut(i) {
            *slot = Some(key);
        }
        self.push(
            at_ms,
            Some(name),
            TraceKind::Decision {
                clock_ms,
                kind: d.kind,
                reason: d.reason.clone(),
                actions: d.actions.clone(),
                pg,
                majority,
            },
        );
    }

    /// The whole trace as text, one event per line (acks collapsed unless `acks`).
    pub fn text(&self, acks: bool) -> String {
        let mut out = String::new();
        let mut skipped = 0usize;
        for e in &self.events {
            if !acks && matches!(e.kind, TraceKind::Ack(_)) {
                skipped += 1;
                continue;
            }
            if skipped > 0 {
                let _ = writeln!(out, "{:>17}({skipped} acks)", "");
                skipped = 0;
            }
            out.push_str(&e.line());
            out.push('\n');
        }
        if skipped > 0 {
            let _ = writeln!(out, "{:>17}({skipped} acks)", "");
        }
        out
    }

    /// Every fault and note, plus the last `tail` other events, as text.
    pub fn tail_text(&self, tail: usize) -> String {
        let cut = self.events.len().saturating_sub(tail);
        let mut out = String::new();
        let mut acks = 0usize;
        for (k, e) in self.events.iter().enumerate() {
            let keep = k >= cut
                || matches!(
                    e.kind,
                    TraceKind::Fault(_) | TraceKind::Note(_) | TraceKind::Violation(_)
                );
            if !keep {
                continue;
            }
            if matches!(e.kind, TraceKind::Ack(_)) && k + 40 < self.events.len() {
                acks += 1;
                continue;
            }
            if acks > 0 {
                let _ = writeln!(out, "{:>17}({acks} acks)", "");
                acks = 0;
            }
            out.push_str(&e.line());
            out.push('\n');
        }
        out
    }
}
