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
pub mod dashboard;
pub mod eval;
pub mod metrics;
pub mod replay;
pub mod reports;
pub mod search;
pub mod sla;
pub mod store;
pub mod telegram;
pub mod tickets;
pub mod web;

use std::sync::Arc;

use tokio::sync::Notify;

/// Wake-ups between the service's tasks: whoever writes rows that another task waits for notifies it.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// SLA timers were set or moved: the scheduler may have a nearer deadline.
    pub deadlines_changed: Arc<Notify>,
    /// Messages were queued in the outbox: the sender has work.
    pub outbox_changed: Arc<Notify>,
}
