//! Tickets: what a driver's appeal becomes, and what the response team does with it.
//!
//! [`state`] holds the one pure transition function; [`intake`] turns inbound messages into tickets;
//! [`desk`] is what responders do (claim, reply, resolve…) and read (the queue, a ticket's timeline).

pub mod desk;
pub mod intake;
pub(crate) mod records;
pub mod state;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketId(pub i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResponderId(pub i64);

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for a responder.
    Open,
    /// A responder owns it and has not yet answered the driver.
    Claimed,
    /// The driver has had an answer; the matter is not settled yet.
    Responded,
    Resolved,
    /// Not an appeal after all: a responder corrected the classifier.
    Closed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Open,
        Status::Claimed,
        Status::Responded,
        Status::Resolved,
        Status::Closed,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Claimed => "claimed",
            Status::Responded => "responded",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// Resolved or closed: nothing more is due.
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Resolved | Status::Closed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.id() == s)
            .ok_or_else(|| format!("unknown status {s:?} (expected open, claimed, responded, resolved or closed)"))
    }
}

/// What is recorded in a ticket's event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Created,
    Classified,
    Attached,
    Claimed,
    Replied,
    Noted,
    SlaWarning,
    SlaBreached,
    Escalated,
    Transferred,
    Reclassified,
    Resolved,
    Reopened,
    /// The driver rated the help (1–5).
    Rated,
}

impl EventKind {
    pub fn id(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Classified => "classified",
            EventKind::Attached => "attached",
            EventKind::Claimed => "claimed",
            EventKind::Replied => "replied",
            EventKind::Noted => "noted",
            EventKind::SlaWarning => "sla_warning",
            EventKind::SlaBreached => "sla_breached",
            EventKind::Escalated => "escalated",
            EventKind::Transferred => "transferred",
            EventKind::Reclassified => "reclassified",
            EventKind::Resolved => "resolved",
            EventKind::Reopened => "reopened",
            EventKind::Rated => "rated",
        }
    }
}
