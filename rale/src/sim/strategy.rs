//! proptest strategies for fault schedules. Schedules shrink by dropping faults, moving
//! them earlier and shortening them, towards a minimal failing schedule.

use std::collections::BTreeSet;

use proptest::prelude::*;

pub use super::fault::FaultMix;
use super::fault::{Fault, Schedule, ScheduledFault, Target};
use crate::types::NodeId;

fn target(nodes: Vec<NodeId>) -> impl Strategy<Value = Target> {
    let n = nodes.len().max(1);
    prop_oneof![
        3 => Just(Target::Primary),
        2 => (0..n).prop_map(Target::Replica),
        1 => proptest::sample::select(nodes).prop_map(Target::Node),
    ]
}

/// One fault.
pub fn fault(mix: &FaultMix) -> BoxedStrategy<Fault> {
    let nodes = mix.nodes.clone();
    let d = 100..=mix.max_duration_ms.max(100);
    let t = || target(nodes.clone());
    let sides_nodes = nodes.clone();
    let partition = (
        proptest::collection::vec(0usize..3, nodes.len()),
        0usize..3,
        d.clone(),
    )
        .prop_map(move |(groups, client_side, duration_ms)| {
            let mut sides = vec![BTreeSet::new(); 3];
            for (k, g) in groups.into_iter().enumerate() {
                sides[g].insert(sides_nodes[k].clone());
            }
            Fault::Partition {
                sides,
                client_side,
                duration_ms,
            }
        });
    let drift = mix.drift_ppm.max(1);
    let mut options: Vec<(u32, BoxedStrategy<Fault>)> = vec![
        (
            3,
            (t(), d.clone())
                .prop_map(|(target, down_ms)| Fault::CrashNode { target, down_ms })
                .boxed(),
        ),
        (
            2,
            t().prop_map(|target| Fault::CrashPostgres { target })
                .boxed(),
        ),
        (4, partition.boxed()),
        (
            2,
            (t(), t(), d.clone())
                .prop_map(|(a, b, duration_ms)| Fault::CutLink { a, b, duration_ms })
                .boxed(),
        ),
        (
            1,
            (t(), d.clone())
                .prop_map(|(target, duration_ms)| Fault::CutClient {
                    target,
                    duration_ms,
                })
                .boxed(),
        ),
        (
            1,
            (0u64..=500, d.clone())
                .prop_map(|(extra_ms, duration_ms)| Fault::SlowConsensus {
                    extra_ms,
                    duration_ms,
                })
                .boxed(),
        ),
        (
            1,
            (t(), -drift..=drift)
                .prop_map(|(target, ppm)| Fault::ClockDrift { target, ppm })
                .boxed(),
        ),
    ];
    if mix.outage_weight > 0 {
        let who = proptest::option::weighted(0.5, t());
        options.push((
            mix.outage_weight,
            (who, d.clone())
                .prop_map(|(target, duration_ms)| Fault::ConsensusUnavailable {
                    target,
                    duration_ms,
                })
                .boxed(),
        ));
    }
    options.push((1, Just(Fault::HealAll).boxed()));
    options.push((
        1,
        (t(), d.clone())
            .prop_map(|(target, down_ms)| Fault::StopAgent { target, down_ms })
            .boxed(),
    ));
    if mix.agent_faults {
        options.push((
            2,
            (t(), d.clone())
                .prop_map(|(target, down_ms)| Fault::CrashAgent { target, down_ms })
                .boxed(),
        ));
        options.push((
            2,
            (t(), d.clone())
                .prop_map(|(target, frozen_ms)| Fault::FreezeAgent { target, frozen_ms })
                .boxed(),
        ));
        options.push((
            2,
            (t(), d)
                .prop_map(|(target, stalled_ms)| Fault::StallLoop { target, stalled_ms })
                .boxed(),
        ));
    }
    proptest::strategy::Union::new_weighted(options).boxed()
}

/// A schedule: a seed and up to `max_faults` faults at times in the window.
pub fn schedule(mix: FaultMix) -> impl Strategy<Value = Schedule> {
    let at = 0..=mix.window_ms;
    let one = (at, fault(&mix)).prop_map(|(at_ms, fault)| ScheduledFault { at_ms, fault });
    (
        any::<u64>(),
        proptest::collection::vec(one, 0..=mix.max_faults),
    )
        .prop_map(|(seed, faults)| Schedule { seed, faults })
}
