//! suqiu (诉求): turns truck drivers' group-chat messages into answered appeals.
//!
//! This crate holds the logic; `src/main.rs` is a thin command line over it.

pub mod batch;
pub mod classify;
pub mod cli;
pub mod eval;
