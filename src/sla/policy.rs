//! SLA policies per category and per priority, with the taxonomy's figures as defaults.
//!
//! A ticket's deadlines follow its category's policy, tightened by its priority's when an urgency word
//! raised it above the category's default (a breakdown with someone hurt is answered as fast as an accident).
//! A policy may count its time on a business-hours calendar; by default time runs around the clock.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::calendar::Calendar;
use crate::classify::{Category, Priority};

/// How long a ticket may wait for its first response and for its resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(with = "humantime_serde")]
    pub first_response: Duration,
    #[serde(with = "humantime_serde")]
    pub resolution: Duration,
    /// The `[sla.calendars]` entry whose open hours the time counts (`calendar = "office"`); none: around the
    /// clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

const fn policy(first_response: u64, resolution: u64) -> Policy {
    Policy {
        first_response: Duration::from_secs(first_response),
        resolution: Duration::from_secs(resolution),
        calendar: None,
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

    /// The time allowed for `target`.
    pub fn span(&self, target: Target) -> Duration {
        match target {
            Target::FirstResponse => self.first_response,
            Target::Resolution => self.resolution,
        }
    }
}

/// A span of time as people say it: `15 分钟`, `2 小时`, `1 小时 30 分钟`, `3 天`.
pub fn spoken(span: Duration) -> String {
    let minutes = span.as_secs().div_ceil(MINUTE);
    let (days, hours, minutes) = (minutes / (24 * 60), minutes / 60 % 24, minutes % 60);
    match (days, hours, minutes) {
        (0, 0, m) => format!("{m} 分钟"),
        (0, h, 0) => format!("{h} 小时"),
        (0, h, m) => format!("{h} 小时 {m} 分钟"),
        (d, 0, 0) => format!("{d} 天"),
        (d, h, _) => format!("{} 小时", d * 24 + h),
    }
}

/// The `[sla]` section of the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlaConfig {
    /// The fraction of a deadline's time after which a warning fires.
    pub warn_at: f64,
    /// Business-hours calendars by name (`[sla.calendars.office]`), for policies to count their time on.
    pub calendars: BTreeMap<String, Calendar>,
    /// Overrides of the taxonomy's policies, by category id (`[sla.categories.breakdown]`).
    pub categories: BTreeMap<Category, Policy>,
    /// Overrides of the priority bounds (`[sla.priorities.P1]`).
    pub priorities: BTreeMap<Priority, Policy>,
}

impl Default for SlaConfig {
    fn default() -> Self {
        SlaConfig {
            warn_at: 0.8,
            calendars: BTreeMap::new(),
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
        if let Some((name, _)) = self.calendars.iter().find(|(_, calendar)| !calendar.is_ever_open()) {
            return Err(format!("sla.calendars.{name}.hours: the calendar is never open"));
        }
        let categories = self
            .categories
            .iter()
            .map(|(c, policy)| (format!("categories.{c}"), policy));
        let priorities = self
            .priorities
            .iter()
            .map(|(p, policy)| (format!("priorities.{p}"), policy));
        for (key, policy) in categories.chain(priorities) {
            match &policy.calendar {
                Some(name) if !self.calendars.contains_key(name) => {
                    return Err(format!(
                        "sla.{key}.calendar: there is no calendar {name:?} in [sla.calendars]"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The policy that sets `target`'s deadlines for a ticket of `category` at `priority`.
    ///
    /// That is the category's policy, calendar included, unless the priority's allows strictly less time for
    /// `target`: then the priority's policy, with its own calendar (or none). Durations are compared as
    /// configured, whatever their calendars. So a category on office hours keeps them until an urgency word
    /// raises the ticket to a priority with a shorter bound, such as P1's, which runs around the clock.
    pub fn policy(&self, category: Category, priority: Priority, target: Target) -> Policy {
        let by_category = self.categories.get(&category);
        let by_priority = self.priorities.get(&priority);
        let by_category = by_category.cloned().unwrap_or_else(|| Policy::for_category(category));
        let by_priority = by_priority.cloned().unwrap_or_else(|| Policy::for_priority(priority));
        if by_priority.span(target) < by_category.span(target) {
            by_priority
        } else {
            by_category
        }
    }

    /// The time a driver is promised a first response in, as the acknowledgement says it: `15 分钟`, and when
    /// business hours push the deadline out, the local time it falls at too.
    pub fn promise(&self, category: Category, priority: Priority, from: i64) -> String {
        let policy = self.policy(category, priority, Target::FirstResponse);
        let span = policy.first_response;
        let due_at = self.deadlines(category, priority, Target::FirstResponse, from)[1].due_at;
        let calendar = policy.calendar.as_ref().and_then(|name| self.calendars.get(name));
        match calendar {
            Some(calendar) if due_at - from > span.as_millis() as i64 => {
                let due = jiff::Timestamp::from_millisecond(due_at)
                    .map(|t| {
                        t.to_zoned_datetime(calendar.time_zone.clone())
                            .strftime("%-m月%-d日 %H:%M")
                            .to_string()
                    })
                    .unwrap_or_default();
                format!("{}（按工作时间计，{due} 前）", spoken(span))
            }
            _ => spoken(span),
        }
    }

    /// The warning and breach timers for `target`, counted from `from` (milliseconds since the epoch), on the
    /// policy's calendar if it has one.
    pub fn deadlines(&self, category: Category, priority: Priority, target: Target, from: i64) -> [Deadline; 2] {
        let policy = self.policy(category, priority, target);
        let span = policy.span(target).as_millis() as i64;
        let warning = (span as f64 * self.warn_at).round() as i64;
        // `validate` refuses a policy naming an unknown calendar; should one get here, its time runs around the
        // clock, which errs on the early side.
        let calendar = policy.calendar.as_ref().and_then(|name| self.calendars.get(name));
        let after = |time: i64| match calendar {
            Some(calendar) => calendar.after_open_time(from, time),
            None => from + time,
        };
        [
            Deadline {
                target,
                stage: Stage::Warning,
                due_at: after(warning),
            },
            Deadline {
                target,
                stage: Stage::Breach,
                due_at: after(span),
            },
        ]
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail returns its own large error type
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::sla::calendar::tests::{at, wall};

    /// The first-response and resolution times a ticket of `category` at `priority` gets.
    fn allowed(sla: &SlaConfig, category: Category, priority: Priority) -> Policy {
        let first_response = sla.policy(category, priority, Target::FirstResponse).first_response;
        let resolution = sla.policy(category, priority, Target::Resolution).resolution;
        policy(first_response.as_secs(), resolution.as_secs())
    }

    #[test]
    fn defaults_follow_the_taxonomy() {
        let sla = SlaConfig::default();
        let accident = allowed(&sla, Category::Accident, Priority::P1);
        assert_eq!(accident, policy(5 * MINUTE, 4 * HOUR));
        let arrears = allowed(&sla, Category::FreightArrears, Priority::P2);
        assert_eq!(arrears, policy(30 * MINUTE, 7 * DAY));
    }

    #[test]
    fn a_raised_priority_tightens_the_category_policy() {
        let sla = SlaConfig::default();
        assert_eq!(
            allowed(&sla, Category::Breakdown, Priority::P1),
            policy(5 * MINUTE, 4 * HOUR)
        );
        assert_eq!(
            allowed(&sla, Category::RestStop, Priority::P2),
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

    #[test]
    fn the_taxonomy_defaults_run_around_the_clock() {
        let priorities = [Priority::P1, Priority::P2, Priority::P3];
        assert!(Category::ALL
            .into_iter()
            .all(|c| Policy::for_category(c).calendar.is_none()));
        assert!(priorities
            .into_iter()
            .all(|p| Policy::for_priority(p).calendar.is_none()));
    }

    const SHANGHAI: &str = "Asia/Shanghai";

    /// Membership questions and breakdowns on office hours in Shanghai, Monday to Friday 09:00–18:00.
    const OFFICE_HOURS: &str = r#"
        [calendars.office]
        time_zone = "Asia/Shanghai"
        hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
        [categories.membership]
        first_response = "30m"
        resolution = "3d"
        calendar = "office"
        [categories.breakdown]
        first_response = "15m"
        resolution = "8h"
        calendar = "office"
    "#;

    fn sla(toml: &str) -> SlaConfig {
        let sla: SlaConfig = toml::from_str(toml).unwrap();
        sla.validate().unwrap();
        sla
    }

    /// The warning and breach times of `target`, on Shanghai's wall clock.
    fn due(sla: &SlaConfig, category: Category, priority: Priority, target: Target, from: &str) -> [String; 2] {
        let deadlines = sla.deadlines(category, priority, target, at(SHANGHAI, from));
        deadlines.map(|deadline| wall(SHANGHAI, deadline.due_at))
    }

    #[test]
    fn a_question_on_office_hours_late_on_friday_warns_and_breaches_on_monday_morning() {
        let [warning, breach] = due(
            &sla(OFFICE_HOURS),
            Category::Membership,
            Priority::P3,
            Target::FirstResponse,
            "2026-05-08T17:50",
        );
        assert_eq!(warning, "Mon 2026-05-11 09:14");
        assert_eq!(breach, "Mon 2026-05-11 09:20");
    }

    #[test]
    fn a_resolution_time_counts_open_hours_not_calendar_days() {
        // Three days are 72 open hours: eight nine-hour working days.
        let [_, breach] = due(
            &sla(OFFICE_HOURS),
            Category::Membership,
            Priority::P3,
            Target::Resolution,
            "2026-05-11T09:00",
        );
        assert_eq!(breach, "Wed 2026-05-20 18:00");
    }

    #[test]
    fn a_breakdown_with_someone_hurt_is_answered_around_the_clock_despite_office_hours() {
        let sla = sla(OFFICE_HOURS);
        let friday_night = "2026-05-08T23:00";
        let [_, hurt] = due(
            &sla,
            Category::Breakdown,
            Priority::P1,
            Target::FirstResponse,
            friday_night,
        );
        assert_eq!(hurt, "Fri 2026-05-08 23:05");
        let [_, plain] = due(
            &sla,
            Category::Breakdown,
            Priority::P2,
            Target::FirstResponse,
            friday_night,
        );
        assert_eq!(plain, "Mon 2026-05-11 09:15");
    }

    #[test]
    fn a_policy_without_a_calendar_runs_around_the_clock() {
        let sla = sla(OFFICE_HOURS);
        let friday_night = "2026-05-08T23:00";
        let [warning, breach] = due(
            &sla,
            Category::Accident,
            Priority::P1,
            Target::FirstResponse,
            friday_night,
        );
        assert_eq!([warning, breach], ["Fri 2026-05-08 23:04", "Fri 2026-05-08 23:05"]);
        let [_, breach] = due(
            &sla,
            Category::Health,
            Priority::P3,
            Target::FirstResponse,
            friday_night,
        );
        assert_eq!(breach, "Sat 2026-05-09 03:00");
    }

    #[test]
    fn a_policy_naming_an_unknown_calendar_is_refused() {
        let by_category = "[categories.breakdown]\nfirst_response = \"15m\"\nresolution = \"8h\"\ncalendar = \"ofice\"";
        let error = toml::from_str::<SlaConfig>(by_category)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            error,
            "sla.categories.breakdown.calendar: there is no calendar \"ofice\" in [sla.calendars]"
        );
        let by_priority = "[priorities.P3]\nfirst_response = \"4h\"\nresolution = \"7d\"\ncalendar = \"office\"";
        let error = toml::from_str::<SlaConfig>(by_priority)
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(
            error,
            "sla.priorities.P3.calendar: there is no calendar \"office\" in [sla.calendars]"
        );
    }

    #[test]
    fn a_calendar_that_is_never_open_is_refused() {
        let closed = "[calendars.closed]\ntime_zone = \"Asia/Shanghai\"\nholidays = [\"2026-10-01\"]";
        let error = toml::from_str::<SlaConfig>(closed).unwrap().validate().unwrap_err();
        assert_eq!(error, "sla.calendars.closed.hours: the calendar is never open");
    }

    #[test]
    fn calendars_are_read_from_the_configuration_file_and_bad_hours_name_their_key() {
        figment::Jail::expect_with(|jail| {
            let office = "[sla.calendars.office]\ntime_zone = \"Asia/Shanghai\"\nholidays = [\"2026-10-01\"]\n";
            jail.create_file("good.toml", &format!("{office}hours = {{ mon = \"09:00-18:00\" }}\n"))?;
            let config = Config::load(Some(Path::new("good.toml"))).unwrap();
            config.sla.validate().unwrap();
            assert!(config.sla.calendars["office"].is_ever_open());

            jail.create_file("bad.toml", &format!("{office}hours = {{ mon = \"9-18\" }}\n"))?;
            let error = Config::load(Some(Path::new("bad.toml"))).unwrap_err().to_string();
            assert!(error.contains("\"9-18\" is not HH:MM-HH:MM"), "{error}");
            assert!(error.contains("sla.calendars.office.hours.mon"), "{error}");
            Ok(())
        });
    }
}
