//! suqiu (诉求): turns truck drivers' group-chat messages into answered appeals.
//!
//! This crate holds the logic; `src/main.rs` is a thin command line over it.

pub mod app;
pub mod auth;
pub mod batch;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod eval;
pub mod replay;
pub mod reports;
pub mod sla;
pub mod store;
pub mod tickets;
pub mod web;
