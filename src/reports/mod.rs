//! Response-time reports for supervisors: how fast tickets opened in a period were claimed, answered and
//! resolved, how many met their SLA, grouped by category, responder, chat or day; and the open backlog now.
//!
//! Tickets a responder marked "not an appeal" are left out: they were never appeals to answer.

pub mod activity;
pub mod export;

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use crate::clock::rfc3339;
use crate::store::Db;

/// What the tickets of a report are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Category,
    /// The responder the ticket is assigned to now; `unassigned` when none.
    Responder,
    Chat,
    /// The day the ticket was opened, in the report's time zone.
    Day,
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> Result<GroupBy, String> {
        match s {
            "category" => Ok(GroupBy::Category),
            "responder" => Ok(GroupBy::Responder),
            "chat" => Ok(GroupBy::Chat),
            "day" => Ok(GroupBy::Day),
            other => Err(format!(
                "group_by {other:?} is not one of category, responder, chat, day"
            )),
        }
    }
}

impl GroupBy {
    fn id(self) -> &'static str {
        match self {
            GroupBy::Category => "category",
            GroupBy::Responder => "responder",
            GroupBy::Chat => "chat",
            GroupBy::Day => "day",
        }
    }
}

/// What a report covers: tickets opened in `[from, to)` (milliseconds since the epoch).
#[derive(Debug, Clone)]
pub struct Period {
    pub from: i64,
    pub to: i64,
    pub group_by: GroupBy,
    /// The zone whose calendar days `GroupBy::Day` counts.
    pub time_zone: TimeZone,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub group_by: &'static str,
    pub generated_at: String,
    pub groups: Vec<Group>,
    /// Every ticket of the period together.
    pub total: Group,
    pub backlog: Backlog,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Group {
    pub key: String,
    pub tickets: usize,
    pub to_claim: Durations,
    pub to_first_response: Durations,
    pub to_resolution: Durations,
    pub first_response_sla: Attainment,
    pub resolution_sla: Attainment,
}

/// Times from opening to a step, in seconds, over the tickets that have reached it.
#[derive(Debug, Serialize, PartialEq)]
pub struct Durations {
    pub count: usize,
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

/// Tickets whose deadline outcome is known: met (done by the deadline) or missed (done late, or not done and
/// past due). Tickets still within their time count in neither.
#[derive(Debug, Serialize, PartialEq)]
pub struct Attainment {
    pub met: usize,
    pub missed: usize,
    /// `met / (met + missed)`; none when no outcome is known yet.
    pub rate: Option<f64>,
}

/// Tickets not yet resolved, whenever they were opened.
#[derive(Debug, Serialize, PartialEq)]
pub struct Backlog {
    pub open: i64,
    pub claimed: i64,
    pub responded: i64,
    /// Past a deadline still pending: no first response by its due time, or unresolved past the resolution's.
    pub overdue: i64,
    pub by_priority: BTreeMap<String, i64>,
    pub by_category: BTreeMap<String, i64>,
    pub oldest_opened_at: Option<String>,
}

/// One ticket's times, as the report reads them.
struct Times {
    key: String,
    opened_at: i64,
    claimed_at: Option<i64>,
    first_response_at: Option<i64>,
    resolved_at: Option<i64>,
    first_response_due: Option<i64>,
    resolution_due: Option<i64>,
}

/// The report for `period`, as of `now`.
pub async fn response_times(db: &Db, period: &Period, now: i64) -> Result<Report, sqlx::Error> {
    let key = match period.group_by {
        GroupBy::Category => "t.category",
        GroupBy::Responder => "COALESCE(r.name, 'unassigned')",
        GroupBy::Chat => "t.chat",
        // Days are counted in Rust, in the report's zone.
        GroupBy::Day => "''",
    };
    let sql = format!(
        "SELECT {key} AS key, t.opened_at, t.claimed_at, t.first_response_at, t.resolved_at, \
         t.first_response_due, t.resolution_due \
         FROM tickets t LEFT JOIN responders r ON r.id = t.assignee \
         WHERE t.opened_at >= $1 AND t.opened_at < $2 AND t.status <> 'closed'"
    );
    let rows = sqlx::query(&sql)
        .bind(period.from)
        .bind(period.to)
        .fetch_all(db.pool())
        .await?;
    let mut times = Vec::with_capacity(rows.len());
    for row in rows {
        let opened_at: i64 = row.try_get("opened_at")?;
        let key = match period.group_by {
            GroupBy::Day => day_of(opened_at, &period.time_zone),
            _ => row.try_get("key")?,
        };
        times.push(Times {
            key,
            opened_at,
            claimed_at: row.try_get("claimed_at")?,
            first_response_at: row.try_get("first_response_at")?,
            resolved_at: row.try_get("resolved_at")?,
            first_response_due: row.try_get("first_response_due")?,
            resolution_due: row.try_get("resolution_due")?,
        });
    }

    let mut by_key: BTreeMap<&str, Vec<&Times>> = BTreeMap::new();
    for t in &times {
        by_key.entry(&t.key).or_default().push(t);
    }
    let groups = by_key
        .into_iter()
        .map(|(key, tickets)| group(key, &tickets, now))
        .collect();
    let all: Vec<&Times> = times.iter().collect();
    Ok(Report {
        from: rfc3339(period.from),
        to: rfc3339(period.to),
        group_by: period.group_by.id(),
        generated_at: rfc3339(now),
        groups,
        total: group("all", &all, now),
        backlog: backlog(db, now).await?,
    })
}

fn day_of(ms: i64, zone: &TimeZone) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned_datetime(zone.clone()).date().to_string())
        .unwrap_or_default()
}

fn group(key: &str, tickets: &[&Times], now: i64) -> Group {
    let since_opening = |step: fn(&Times) -> Option<i64>| {
        durations(
            tickets
                .iter()
                .filter_map(|t| step(t).map(|at| at - t.opened_at))
                .collect(),
        )
    };
    Group {
        key: key.to_owned(),
        tickets: tickets.len(),
        to_claim: since_opening(|t| t.claimed_at),
        to_first_response: since_opening(|t| t.first_response_at),
        to_resolution: since_opening(|t| t.resolved_at),
        first_response_sla: attainment(tickets.iter().map(|t| (t.first_response_at, t.first_response_due)), now),
        resolution_sla: attainment(tickets.iter().map(|t| (t.resolved_at, t.resolution_due)), now),
    }
}

/// Median and 90th percentile (nearest rank) of durations in milliseconds, reported in seconds.
fn durations(mut ms: Vec<i64>) -> Durations {
    ms.sort_unstable();
    let rank = |p: f64| -> Option<f64> {
        if ms.is_empty() {
            return None;
        }
        let index = ((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1;
        Some(ms[index] as f64 / 1000.0)
    };
    Durations {
        count: ms.len(),
        median_seconds: rank(0.5),
        p90_seconds: rank(0.9),
    }
}

/// Each item is when a step was done (if it was) and when it was due.
fn attainment(items: impl Iterator<Item = (Option<i64>, Option<i64>)>, now: i64) -> Attainment {
    let (mut met, mut missed) = (0, 0);
    for (done, due) in items {
        let Some(due) = due else { continue };
        match done {
            Some(at) if at <= due => met += 1,
            Some(_) => missed += 1,
            None if due <= now => missed += 1,
            None => {}
        }
    }
    let decided = met + missed;
    Attainment {
        met,
        missed,
        rate: (decided > 0).then(|| met as f64 / decided as f64),
    }
}

/// Unresolved tickets per responder now, by name; `unassigned` for the ones nobody holds.
pub async fn open_load(db: &Db) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT COALESCE(r.name, 'unassigned') AS name, COUNT(*) AS n \
         FROM tickets t LEFT JOIN responders r ON r.id = t.assignee \
         WHERE t.status IN ('open', 'claimed', 'responded') GROUP BY COALESCE(r.name, 'unassigned')",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("name")?, row.try_get("n")?)))
        .collect()
}

async fn backlog(db: &Db, now: i64) -> Result<Backlog, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT status, priority, category, COUNT(*) AS n, MIN(opened_at) AS oldest, \
         SUM(CASE WHEN (first_response_at IS NULL AND first_response_due <= $1) OR resolution_due <= $1 \
             THEN 1 ELSE 0 END) AS overdue \
         FROM tickets WHERE status IN ('open', 'claimed', 'responded') GROUP BY status, priority, category",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let mut backlog = Backlog {
        open: 0,
        claimed: 0,
        responded: 0,
        overdue: 0,
        by_priority: BTreeMap::new(),
        by_category: BTreeMap::new(),
        oldest_opened_at: None,
    };
    let mut oldest: Option<i64> = None;
    for row in rows {
        let status: String = row.try_get("status")?;
        let n: i64 = row.try_get("n")?;
        match status.as_str() {
            "open" => backlog.open += n,
            "claimed" => backlog.claimed += n,
            _ => backlog.responded += n,
        }
        *backlog.by_priority.entry(row.try_get("priority")?).or_default() += n;
        *backlog.by_category.entry(row.try_get("category")?).or_default() += n;
        backlog.overdue += row.try_get::<i64, _>("overdue")?;
        let first: i64 = row.try_get("oldest")?;
        oldest = Some(oldest.map_or(first, |o| o.min(first)));
    }
    backlog.oldest_opened_at = oldest.map(rfc3339);
    Ok(backlog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_and_p90_are_nearest_ranks() {
        let d = durations((1..=10).map(|s| s * 1000).collect());
        assert_eq!(d.count, 10);
        assert_eq!(d.median_seconds, Some(5.0));
        assert_eq!(d.p90_seconds, Some(9.0));
        let one = durations(vec![42_000]);
        assert_eq!((one.median_seconds, one.p90_seconds), (Some(42.0), Some(42.0)));
        assert_eq!(durations(vec![]).median_seconds, None);
    }

    #[test]
    fn a_step_not_yet_due_counts_neither_way() {
        let now = 1_000;
        let a = attainment(
            [
                (Some(500), Some(600)), // on time
                (Some(700), Some(600)), // late
                (None, Some(900)),      // past due, not done
                (None, Some(2_000)),    // still within its time
                (Some(100), None),      // no deadline
            ]
            .into_iter(),
            now,
        );
        assert_eq!((a.met, a.missed), (1, 2));
        assert_eq!(a.rate, Some(1.0 / 3.0));
    }

    #[test]
    fn days_are_counted_in_the_report_zone() {
        // 2026-03-01T17:00:00Z is already 2 March in Shanghai.
        let ms = "2026-03-01T17:00:00Z".parse::<Timestamp>().unwrap().as_millisecond();
        assert_eq!(day_of(ms, &TimeZone::UTC), "2026-03-01");
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(day_of(ms, &shanghai), "2026-03-02");
    }
}
