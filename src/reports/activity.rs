//! When appeals arrive and how drivers rated the help: the tickets of a period counted by day and category and
//! by weekday and hour (in the report's time zone), and the drivers' ratings.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use sqlx::Row;

use super::{day_of, Period};
use crate::store::Db;

/// Weekdays from Monday, as the heat map's rows are ordered.
pub const WEEKDAYS: usize = 7;
pub const HOURS: usize = 24;

#[derive(Debug, Serialize, PartialEq)]
pub struct Activity {
    /// Every calendar day of the period, oldest first, each with its tickets by category (days without any
    /// are there, empty, so that a chart's axis has no gaps).
    pub days: Vec<Day>,
    /// Tickets opened at each hour of each weekday: `heat[weekday][hour]`, Monday first.
    pub heat: [[u32; HOURS]; WEEKDAYS],
    pub ratings: Ratings,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Day {
    /// `YYYY-MM-DD` in the report's zone.
    pub date: String,
    pub by_category: BTreeMap<String, u32>,
}

/// The drivers' ratings of the tickets opened in the period.
#[derive(Debug, Serialize, PartialEq)]
pub struct Ratings {
    pub count: u32,
    /// Mean score, 1–5; none without ratings.
    pub average: Option<f64>,
    /// How many gave each score: `by_score[0]` is the count of 1s.
    pub by_score: [u32; 5],
}

/// The activity of the tickets opened in `period` (its `group_by` is not used).
pub async fn activity(db: &Db, period: &Period) -> Result<Activity, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT t.category, t.opened_at, g.score FROM tickets t LEFT JOIN ratings g ON g.ticket_id = t.id \
         WHERE t.opened_at >= $1 AND t.opened_at < $2 AND t.status <> 'closed'",
    )
    .bind(period.from)
    .bind(period.to)
    .fetch_all(db.pool())
    .await?;

    let mut days: BTreeMap<String, BTreeMap<String, u32>> = calendar(period.from, period.to, &period.time_zone)
        .into_iter()
        .map(|date| (date, BTreeMap::new()))
        .collect();
    let mut heat = [[0; HOURS]; WEEKDAYS];
    let mut scores = Vec::new();
    for row in rows {
        let opened_at: i64 = row.try_get("opened_at")?;
        let category: String = row.try_get("category")?;
        *days
            .entry(day_of(opened_at, &period.time_zone))
            .or_default()
            .entry(category)
            .or_default() += 1;
        if let Some((weekday, hour)) = weekday_hour(opened_at, &period.time_zone) {
            heat[weekday][hour] += 1;
        }
        if let Some(score) = row.try_get::<Option<i64>, _>("score")? {
            scores.push(score);
        }
    }
    Ok(Activity {
        days: days
            .into_iter()
            .map(|(date, by_category)| Day { date, by_category })
            .collect(),
        heat,
        ratings: ratings(&scores),
    })
}

/// How many tickets were opened since the start of today in `zone`, as of `now`.
pub async fn opened_today(db: &Db, now: i64, zone: &TimeZone) -> Result<i64, sqlx::Error> {
    let midnight = Timestamp::from_millisecond(now)
        .ok()
        .and_then(|t| t.to_zoned_datetime(zone.clone()).start_of_day().ok())
        .map_or(now, |z| z.timestamp().as_millisecond());
    sqlx::query_scalar("SELECT COUNT(*) FROM tickets WHERE opened_at >= $1 AND status <> 'closed'")
        .bind(midnight)
        .fetch_one(db.pool())
        .await
}

/// The calendar days from `from` to `to` (milliseconds, `to` exclusive) in `zone`.
fn calendar(from: i64, to: i64, zone: &TimeZone) -> Vec<String> {
    if to <= from {
        return Vec::new();
    }
    let date = |ms: i64| {
        Timestamp::from_millisecond(ms)
            .ok()
            .map(|t| t.to_zoned_datetime(zone.clone()).date())
    };
    let (Some(first), Some(last)) = (date(from), date(to - 1)) else {
        return Vec::new();
    };
    first
        .series(jiff::ToSpan::days(1))
        .take_while(|d| *d <= last)
        .map(|d| d.to_string())
        .collect()
}

/// Monday-based weekday and hour of `ms` in `zone`.
fn weekday_hour(ms: i64, zone: &TimeZone) -> Option<(usize, usize)> {
    let zoned = Timestamp::from_millisecond(ms).ok()?.to_zoned_datetime(zone.clone());
    let weekday = jiff::civil::Weekday::Monday.until(zoned.weekday()) as usize;
    Some((weekday, zoned.hour() as usize))
}

fn ratings(scores: &[i64]) -> Ratings {
    let mut by_score = [0; 5];
    for &s in scores {
        if let Some(slot) = usize::try_from(s - 1).ok().and_then(|i| by_score.get_mut(i)) {
            *slot += 1;
        }
    }
    let count: u32 = by_score.iter().sum();
    let total: u32 = by_score.iter().zip(1..).map(|(n, score)| n * score).sum();
    Ratings {
        count,
        average: (count > 0).then(|| f64::from(total) / f64::from(count)),
        by_score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn the_calendar_has_every_day_of_the_period_in_the_zone() {
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        // 16:30 UTC on 1 March is 00:30 on 2 March in Shanghai; the period ends before 3 March there.
        let days = calendar(ms("2026-03-01T16:30:00Z"), ms("2026-03-03T15:00:00Z"), &shanghai);
        assert_eq!(days, ["2026-03-02", "2026-03-03"]);
        assert_eq!(
            calendar(ms("2026-03-01T00:00:00Z"), ms("2026-03-01T00:00:00Z"), &shanghai).len(),
            0
        );
    }

    #[test]
    fn hours_and_weekdays_are_local() {
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        // Sunday 1 March 2026, 23:00 UTC is Monday 07:00 in Shanghai.
        assert_eq!(weekday_hour(ms("2026-03-01T23:00:00Z"), &shanghai), Some((0, 7)));
        assert_eq!(weekday_hour(ms("2026-03-01T23:00:00Z"), &TimeZone::UTC), Some((6, 23)));
    }

    #[test]
    fn ratings_count_each_score_and_average_them() {
        let r = ratings(&[5, 5, 4, 1]);
        assert_eq!(r.count, 4);
        assert_eq!(r.by_score, [1, 0, 0, 1, 2]);
        assert_eq!(r.average, Some(3.75));
        assert_eq!(ratings(&[]).average, None);
    }
}
