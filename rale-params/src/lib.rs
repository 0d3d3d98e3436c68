//! rale-params (being built).
