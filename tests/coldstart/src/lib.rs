//! See `benches/coldstart.rs`.
