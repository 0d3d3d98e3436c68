//! Tuning recommendations from the machine's resources and the workload.
//!
//! The formulas and where they come from are described in the crate README
//! ("Recommendations"). Every recommended value is run through [`crate::validate()`] for the
//! requested major, so a recommendation is always a value that major accepts.

use serde::{Deserialize, Serialize};

use crate::types::Apply;
use crate::validate::{Verdict, validate};
use crate::{Error, PgMajor, Result};

const MIB: u64 = 1024 * 1024;

/// Kind of storage under the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageType {
    /// Local solid-state disks (SATA/NVMe SSD).
    Ssd,
    /// Spinning disks.
    Hdd,
    /// Network block storage (SAN, cloud volumes such as EBS or Persistent Disk).
    Network,
}

/// The expected workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// Many short read/write transactions.
    Oltp,
    /// Web application: many connections, mostly small reads.
    Web,
    /// Few large analytical queries, bulk loads.
    #[serde(alias = "dw")]
    DataWarehouse,
    /// A bit of everything.
    Mixed,
}

/// Input of [`optimize`] (`POST /api/v1/parameter/optimize`). Unknown fields are refused,
/// so that a misspelt field is not silently replaced by its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizeRequest {
    /// PostgreSQL major the settings are for.
    pub version: PgMajor,
    /// RAM available to PostgreSQL, in bytes.
    pub total_memory_bytes: u64,
    /// CPU cores available to PostgreSQL.
    pub cpu_count: u32,
    /// Storage under the data directory.
    pub storage: StorageType,
    /// Expected workload.
    pub workload: Workload,
    /// Expected client connections; a workload default when absent.
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Standbys in the HA cluster (default 2).
    #[serde(default)]
    pub standby_count: Option<u32>,
}

/// One recommended setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// Parameter name.
    pub name: String,
    /// The value as it would be written in `postgresql.conf` (e.g. `4GB`).
    pub value: String,
    /// The same in base units, as `pg_settings.setting` would show it.
    pub setting: String,
    /// Why, in one line.
    pub rationale: String,
    /// What it takes to apply it.
    pub apply: Apply,
    /// Whether applying it needs a restart.
    pub needs_restart: bool,
}

/// Output of [`optimize`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizeResponse {
    /// The major the settings are for.
    pub version: PgMajor,
    /// The recommended settings, memory first, replication last.
    pub recommendations: Vec<Recommendation>,
    /// Caveats that apply to the whole set.
    pub notes: Vec<String>,
}

impl OptimizeResponse {
    /// The names of the recommendations that need a restart.
    pub fn restart_required(&self) -> Vec<&str> {
        self.recommendations
            .iter()
            .filter(|r| r.needs_restart)
            .map(|r| r.name.as_str())
            .collect()
    }
}

fn mem(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{}GB", mib / 1024)
    } else {
        format!("{mib}MB")
    }
}

/// Computes recommended settings. Fails only on an impossible request (under 256 MiB of
/// memory, zero CPUs, zero connections).
pub fn optimize(req: &OptimizeRequest) -> Result<OptimizeResponse> {
    let ram_mib = req.total_memory_bytes / MIB;
    if ram_mib < 256 {
        return Err(Error::InvalidRequest(
            "total_memory_bytes must be at least 256 MiB".into(),
        ));
    }
    if req.cpu_count == 0 {
        return Err(Error::InvalidRequest("cpu_count must be at least 1".into()));
    }
    if req.max_connections == Some(0) {
        return Err(Error::InvalidRequest(
            "max_connections must be at least 1".into(),
        ));
    }
    let cpus = u64::from(req.cpu_count.min(4096));
    let wl = req.workload;
    let connections = u64::from(req.max_connections.unwrap_or(match wl {
        Workload::Web => 200,
        Workload::Oltp => 300,
        Workload::DataWarehouse => 40,
        Workload::Mixed => 100,
    }))
    .clamp(10, 10_000);
    let standbys = u64::from(req.standby_count.unwrap_or(2).min(100));

    // Memory.
    let shared_mib = (ram_mib / 4).clamp(128, 1024 * 1024);
    let cache_mib = ram_mib * 3 / 4;
    let maint_mib = (ram_mib / if wl == Workload::DataWarehouse { 8 } else { 16 }).clamp(64, 2048);
    let per_gather = match (cpus, wl) {
        (1, _) => 0,
        (_, Workload::DataWarehouse) => (cpus / 2).clamp(1, 8),
        _ => (cpus / 2).clamp(1, 4),
    };
    let work_kib = ((ram_mib - shared_mib) * 1024 / (connections * 3 * (1 + per_gather)))
        .clamp(1024, 2 * 1024 * 1024);
    let work_mib = work_kib / 1024;

    // WAL and checkpoints.
    let (min_wal_mib, max_wal_mib) = match wl {
        Workload::Web | Workload::Mixed => (1024, 4096),
        Workload::Oltp => (2048, 8192),
        Workload::DataWarehouse => (4096, 16384),
    };
    let wal_buffers = if shared_mib / 32 >= 16 {
        "16MB".to_string()
    } else {
        "-1".to_string()
    };

    // Storage.
    let (random_page_cost, io_concurrency) = match req.storage {
        StorageType::Ssd => ("1.1", "200"),
        StorageType::Network => ("1.5", "256"),
        StorageType::Hdd => ("4", "2"),
    };

    let senders = (2 * standbys + 4).max(10);
    let slots = (standbys + 4).max(10);

    let mut plan: Vec<(&str, String, String)> = vec![
        ("max_connections", connections.to_string(), format!("{connections} client connections expected for a {} workload; put a pooler in front for more", wl_name(wl))),
        ("shared_buffers", mem(shared_mib), "25% of RAM: PostgreSQL's own cache, the OS page cache holds the rest".into()),
        ("effective_cache_size", mem(cache_mib), "75% of RAM: what the planner may assume is cached by PostgreSQL plus the OS (allocates nothing)".into()),
        ("work_mem", mem(work_mib.max(1)), format!("RAM left after shared_buffers, shared by {connections} connections × 3 sort/hash nodes × {} processes per query", 1 + per_gather)),
        ("maintenance_work_mem", mem(maint_mib), format!("1/{} of RAM (64MB..2GB) for VACUUM, CREATE INDEX and restore", if wl == Workload::DataWarehouse { 8 } else { 16 })),
        ("min_wal_size", mem(min_wal_mib), "WAL kept recycled between checkpoints so write bursts do not create new segments".into()),
        ("max_wal_size", mem(max_wal_mib), format!("room for a {} write rate between timed checkpoints, so checkpoints are not forced by WAL volume", wl_name(wl))),
        ("wal_buffers", wal_buffers.clone(), if wal_buffers == "-1" { "automatic (1/32 of shared_buffers) is right for small shared_buffers".into() } else { "one WAL segment (16MB), the most the automatic setting would pick; helps concurrent commits".into() }),
        ("checkpoint_timeout", "15min".into(), "fewer full-page writes than the 5min default; crash recovery stays in minutes".into()),
        ("checkpoint_completion_target", "0.9".into(), "spread checkpoint writes over 90% of the interval to avoid I/O spikes".into()),
        ("random_page_cost", random_page_cost.into(), match req.storage {
            StorageType::Ssd => "random reads on SSD cost almost the same as sequential ones".into(),
            StorageType::Network => "network volumes are latency-bound for random and sequential reads alike".into(),
            StorageType::Hdd => "the default: a disk seek costs about four sequential page reads".into(),
        }),
        ("effective_io_concurrency", io_concurrency.into(), "concurrent prefetch requests the storage can absorb (bitmap heap scans)".into()),
        ("maintenance_io_concurrency", io_concurrency.into(), "the same prefetch depth for VACUUM and other maintenance".into()),
        ("max_worker_processes", cpus.max(8).to_string(), "background worker slots: one per core, at least the default 8".into()),
        ("max_parallel_workers", cpus.to_string(), "parallel query workers in total: one per core".into()),
        ("max_parallel_workers_per_gather", per_gather.to_string(), if per_gather == 0 { "a single core cannot run parallel plans usefully".into() } else { format!("up to {per_gather} workers per query node, leaving cores for other sessions") }),
        ("max_parallel_maintenance_workers", per_gather.min(4).to_string(), "parallel workers for CREATE INDEX and VACUUM".into()),
        ("wal_level", "replica".into(), "streaming replication and archiving need at least replica (use logical only for logical decoding)".into()),
        ("max_wal_senders", senders.to_string(), format!("{standbys} standbys plus two concurrent base backups (two senders each), with headroom")),
        ("max_replication_slots", slots.to_string(), format!("one physical slot per member ({standbys} standbys) plus headroom for backups and rebuilds")),
        ("hot_standby", "on".into(), "standbys answer read-only queries and can be health-checked with SQL".into()),
        ("wal_log_hints", "on".into(), "pg_rewind needs it (unless data checksums are on) to rejoin a former primary after failover".into()),
        ("wal_keep_size", mem(min_wal_mib), "WAL kept for standbys without a slot (e.g. during a rebuild), on top of slot retention".into()),
    ];
    if wl == Workload::DataWarehouse {
        plan.push((
            "default_statistics_target",
            "500".into(),
            "more detailed statistics for complex analytical plans".into(),
        ));
    }

    let mut recommendations = Vec::new();
    let mut notes = vec![
        "Review max_slot_wal_keep_size: slots of absent standbys retain WAL until the disk fills."
            .to_string(),
        "Memory settings assume the machine runs only PostgreSQL.".to_string(),
    ];
    for (name, value, rationale) in plan {
        match validate(req.version, name, &value) {
            Verdict::Ok(a) => recommendations.push(Recommendation {
                name: a.name,
                value,
                setting: a.setting,
                rationale,
                apply: a.apply,
                needs_restart: a.apply.needs_restart(),
            }),
            Verdict::Rejected(r) => notes.push(format!("{name} not recommended: {}", r.message)),
        }
    }
    Ok(OptimizeResponse {
        version: req.version,
        recommendations,
        notes,
    })
}

fn wl_name(w: Workload) -> &'static str {
    match w {
        Workload::Oltp => "OLTP",
        Workload::Web => "web",
        Workload::DataWarehouse => "data-warehouse",
        Workload::Mixed => "mixed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(ram_gib: u64, cpus: u32, wl: Workload) -> OptimizeRequest {
        OptimizeRequest {
            version: PgMajor::BASE,
            total_memory_bytes: ram_gib * 1024 * MIB,
            cpu_count: cpus,
            storage: StorageType::Ssd,
            workload: wl,
            max_connections: None,
            standby_count: None,
        }
    }

    fn get<'a>(r: &'a OptimizeResponse, name: &str) -> &'a Recommendation {
        r.recommendations
            .iter()
            .find(|x| x.name == name)
            .expect(name)
    }

    #[test]
    fn typical_oltp_box() {
        let r = optimize(&req(64, 16, Workload::Oltp)).expect("valid request");
        assert_eq!(get(&r, "shared_buffers").value, "16GB");
        assert_eq!(get(&r, "effective_cache_size").value, "48GB");
        assert_eq!(get(&r, "maintenance_work_mem").value, "2GB");
        assert_eq!(get(&r, "wal_level").value, "replica");
        assert!(get(&r, "shared_buffers").needs_restart);
        assert!(!get(&r, "work_mem").needs_restart);
        assert!(r.restart_required().contains(&"max_wal_senders"));
        assert!(
            r.notes.iter().all(|n| !n.contains("not recommended")),
            "{:?}",
            r.notes
        );
    }

    #[test]
    fn rejects_impossible_requests() {
        assert!(
            optimize(&OptimizeRequest {
                total_memory_bytes: MIB,
                ..req(1, 1, Workload::Web)
            })
            .is_err()
        );
        assert!(optimize(&req(4, 0, Workload::Web)).is_err());
    }

    proptest! {
        #[test]
        fn every_recommendation_is_valid_for_its_version(
            ram_mib in 256u64..4_000_000,
            cpus in 1u32..512,
            conns in proptest::option::of(1u32..20_000),
            standbys in proptest::option::of(0u32..50),
            version in 13u32..=17,
            wl in prop_oneof![Just(Workload::Oltp), Just(Workload::Web), Just(Workload::DataWarehouse), Just(Workload::Mixed)],
            storage in prop_oneof![Just(StorageType::Ssd), Just(StorageType::Hdd), Just(StorageType::Network)],
        ) {
            let r = optimize(&OptimizeRequest {
                version: PgMajor::new(version).expect("supported"),
                total_memory_bytes: ram_mib * MIB,
                cpu_count: cpus,
                storage,
                workload: wl,
                max_connections: conns,
                standby_count: standbys,
            }).expect("valid request");
            prop_assert!(r.notes.iter().all(|n| !n.contains("not recommended")), "{:?}", r.notes);
            prop_assert!(r.recommendations.len() >= 23);
        }
    }
}
