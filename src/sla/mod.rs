//! Service-level agreements: how soon a ticket must get its first response and its resolution, and the
//! warnings and breaches that escalate it when a deadline is near or missed.

mod calendar;
mod policy;
mod scheduler;

pub(crate) use calendar::iana;
pub use calendar::{Calendar, Day, Hours};
pub use policy::{Deadline, Policy, SlaConfig, Stage, Target};
pub use scheduler::Scheduler;
