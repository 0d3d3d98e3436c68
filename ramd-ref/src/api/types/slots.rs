//! The primary's replication slots in `GET /api/v1/cluster/status` (`slots`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Who keeps a replication slot (see `docs/slots.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SlotManagement {
    /// A member's own physical slot (named after the member), kept by RALE.
    Member,
    /// A permanent slot of the dynamic configuration (`slots`), kept by RALE.
    Permanent,
    /// Matches an entry of `ignore_slots`: RALE leaves it alone.
    Ignored,
    /// Created outside RALE and not ignored: RALE neither keeps nor drops it.
    Foreign,
}

impl SlotManagement {
    /// The lowercase name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Permanent => "permanent",
            Self::Ignored => "ignored",
            Self::Foreign => "foreign",
        }
    }
}

/// One replication slot of the primary and the WAL it retains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SlotView {
    /// Slot name.
    pub name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    /// Output plugin (logical slots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Database (logical slots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// A consumer is connected.
    pub active: bool,
    /// WAL the slot keeps on the server: its current position minus the slot's
    /// `restart_lsn`.
    pub retained_wal_bytes: u64,
    /// Who keeps the slot.
    pub managed: SlotManagement,
    /// `retained_wal_bytes` is above `slots_max_retained_wal_bytes`.
    pub over_limit: bool,
}

/// The replication slots of the primary, as its workload collector last read them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SlotsView {
    /// The member whose server holds them (the primary that answered).
    pub node: String,
    /// When they were read (Unix milliseconds).
    pub collected_unix_ms: u64,
    /// `slots_max_retained_wal_bytes` of the dynamic configuration (`None` = no limit).
    pub max_retained_wal_bytes: Option<u64>,
    /// The slots, by name (at most 100, as the collector reads them).
    pub slots: Vec<SlotView>,
}
