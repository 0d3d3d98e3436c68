//! rale-backup (being built).
