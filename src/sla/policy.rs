//! SLA policies per category and per priority, with the taxonomy's figures as defaults.
//!
//! A ticket's deadlines follow its category's policy, tightened by its priority's when an urgency word
//! raised it above the category's default (a breakdown with someone hurt is answered as fast as an accident).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::classify::{Category, Priority};

/// How long a ticket may wait for its first response and for its resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(with = "humantime_serde")]
    pub first_response: Duration,
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

const fn policy(first_response: u64, resolution: u64) -> Policy {
    Policy {
        first_response: Duration::from_secs(first_response),
        resolution: Duration::from_secs(resolution),
    }
}

impl Policy {
    /// The taxonomy's default for a category (TAXONOMY.md).
    pub fn for_category(category: Category) -> Policy {
        match category {
            Category::Accident | Category::Safety | Category::Crisis => policy(5 * MINUTE, 4 * HOUR),
            Category::Breakdown => policy(15 * MINUTE, 8 * HOUR),
            Category::FreightArrears => policy(30 * MINUTE, 7 * DAY),
            Category::Platform | Category::Enforcement | Category::Cargo => policy(30 * MINUTE, 3 * DAY),
            Category::Labor => policy(HOUR, 7 * DAY),
            Category::RestStop | Category::Membership => policy(4 * HOUR, 3 * DAY),
            Category::Health | Category::Other => policy(4 * HOUR, 7 * DAY),
        }
    }

    /// The loosest deadlines a ticket of this priority may have.
    pub fn for_priority(priority: Priority) -> Policy {
        match priority {
            Priority::P1 => policy(5 * MINUTE, 4 * HOUR),
            Priority::P2 => policy(30 * MINUTE, 7 * DAY),
            Priority::P3 => policy(4 * HOUR, 7 * DAY),
        }
    }

    fn tightest(self, other: Policy) -> Policy {
        Policy {
            first_response: self.first_response.min(other.first_response),
            resolution: self.resolution.min(other.resolution),
        }
    }
}

/// The `[sla]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    /// The fraction of a deadline's time after which a warning fires.
    pub warn_at: f64,
    /// Overrides of the taxonomy's policies, by category id (`[sla.categories.breakdown]`).
    pub categories: BTreeMap<Category, Policy>,
    /// Overrides of the priority bounds (`[sla.priorities.P1]`).
    pub priorities: BTreeMap<Priority, Policy>,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            warn_at: 0.8,
            categories: BTreeMap::new(),
            priorities: BTreeMap::new(),
        }
    }
}

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    FirstResponse,
    Resolution,
}

/// A warning comes before the deadline, a breach at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    Warning,
    Breach,
}

impl Target {
    pub fn id(self) -> &'static str {
        match self {
            Target::FirstResponse => "first_response",
            Target::Resolution => "resolution",
        }
    }

    pub fn parse(id: &str) -> Option<Target> {
        [Target::FirstResponse, Target::Resolution]
            .into_iter()
            .find(|t| t.id() == id)
    }
}

impl Stage {
    pub fn id(self) -> &'static str {
        match self {
            Stage::Warning => "warning",
            Stage::Breach => "breach",
        }
    }

    pub fn parse(id: &str) -> Option<Stage> {
        [Stage::Warning, Stage::Breach].into_iter().find(|s| s.id() == id)
    }
}

/// One timer of a ticket: fires once at `due_at` (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub target: Target,
    pub stage: Stage,
    pub due_at: i64,
}

impl SlaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.warn_at > 0.0 && self.warn_at < 1.0) {
            return Err(format!(
                "sla.warn_at must be between 0 and 1 (exclusive), got {}",
                self.warn_at
            ));
        }
        Ok(())
    }

    /// The policy for a ticket of `category` at `priority`.
    pub fn policy(&self, category: Category, priority: Priority) -> Policy {
        let by_category = self
            .categories
            .get(&category)
            .copied()
            .unwrap_or_else(|| Policy::for_category(category));
        let by_priority = self
            .priorities
            .get(&priority)
            .copied()
            .unwrap_or_else(|| Policy::for_priority(priority));
        by_category.tightest(by_priority)
    }

    /// The warning and breach timers for `target`, counted from `from` (milliseconds since the epoch).
    pub fn deadlines(&self, category: Category, priority: Priority, target: Target, from: i64) -> [Deadline; 2] {
        let policy = self.policy(category, priority);
        let span = match target {
            Target::FirstResponse => policy.first_response,
            Target::Resolution => policy.resolution,
        };
        let span = span.as_millis() as i64;
        let warning = from + (span as f64 * self.warn_at).round() as i64;
        [
            Deadline {
                target,
                stage: Stage::Warning,
                due_at: warning,
            },
            Deadline {
                target,
                stage: Stage::Breach,
                due_at: from + span,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_taxonomy() {
        let sla = SlaConfig::default();
        let accident = sla.policy(Category::Accident, Priority::P1);
        assert_eq!(accident, policy(5 * MINUTE, 4 * HOUR));
        let arrears = sla.policy(Category::FreightArrears, Priority::P2);
        assert_eq!(arrears, policy(30 * MINUTE, 7 * DAY));
    }

    #[test]
    fn a_raised_priority_tightens_the_category_policy() {
        let sla = SlaConfig::default();
        assert_eq!(
            sla.policy(Category::Breakdown, Priority::P1),
            policy(5 * MINUTE, 4 * HOUR)
        );
        assert_eq!(
            sla.policy(Category::RestStop, Priority::P2),
            policy(30 * MINUTE, 3 * DAY)
        );
    }

    #[test]
    fn the_warning_comes_at_the_configured_fraction() {
        let sla = SlaConfig::default();
        let [warning, breach] = sla.deadlines(Category::Accident, Priority::P1, Target::FirstResponse, 1_000);
        assert_eq!(warning.due_at, 1_000 + 240_000);
        assert_eq!(breach.due_at, 1_000 + 300_000);
    }
}
