//! Shared fixtures for RALE's end-to-end tests: real PostgreSQL servers on loopback,
//! free ports chosen at run time, temporary directories removed on drop.
