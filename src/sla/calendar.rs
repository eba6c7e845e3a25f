//! Business-hours calendars (`[sla.calendars.NAME]`): when a support desk is open, in its own time zone, so an
//! SLA deadline can count only the time the desk is open. A policy without a calendar runs around the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// When a desk is open: weekly opening hours in a time zone, less holidays.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    /// An IANA time zone name, such as `Asia/Shanghai`.
    #[serde(with = "iana")]
    pub time_zone: TimeZone,
    /// Opening hours by day of the week (`mon = "09:00-18:00"`); a day not listed is closed.
    #[serde(default)]
    pub hours: BTreeMap<Day, Hours>,
    /// Days closed all day, as dates in the calendar's time zone (`"2026-10-01"`).
    #[serde(default)]
    pub holidays: BTreeSet<Date>,
}

/// A day of the week, as the keys of `hours` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// One day's opening hours, such as `"08:00-12:00,13:30-18:00"`: ranges of minutes since midnight, in order and
/// apart, each open at its start and closed at its end (`24:00` is the end of the day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hours(Vec<(u16, u16)>);

/// The longest walk through a calendar looking for open time: ten years of days.
const MAX_DAYS: usize = 3653;

impl Calendar {
    /// The instant (milliseconds since the epoch) at which `open_time` milliseconds of open time have passed
    /// since `from`. The clock runs only while the desk is open: from outside the hours it starts at the next
    /// opening. Open time that cannot be found within ten years (a calendar that validation would refuse) is
    /// counted around the clock instead.
    pub fn after_open_time(&self, from: i64, open_time: i64) -> i64 {
        self.walk(from, open_time).unwrap_or(from + open_time)
    }

    /// Whether the desk opens on some day of the week.
    pub fn is_ever_open(&self) -> bool {
        !self.hours.is_empty()
    }

    /// Walks the open periods day by day, as absolute instants, so a change of clocks is counted as it happened.
    fn walk(&self, from: i64, mut left: i64) -> Option<i64> {
        let mut day = self
            .time_zone
            .to_datetime(Timestamp::from_millisecond(from).ok()?)
            .date();
        for _ in 0..MAX_DAYS {
            for &(opens, closes) in self.ranges(day) {
                let (opens, closes) = (self.instant(day, opens)?.max(from), self.instant(day, closes)?);
                if opens >= closes {
                    continue;
                }
                if closes - opens >= left {
                    return Some(opens + left);
                }
                left -= closes - opens;
            }
            day = day.tomorrow().ok()?;
        }
        None
    }

    /// The opening hours of `day`: none on a holiday or a day not listed.
    fn ranges(&self, day: Date) -> &[(u16, u16)] {
        if self.holidays.contains(&day) {
            return &[];
        }
        self.hours.get(&Day::of(day.weekday())).map_or(&[], |hours| &hours.0)
    }

    /// Milliseconds since the epoch at `minute` minutes past midnight of `day` on the desk's clocks. A time that
    /// the clocks skip (a change to summer time) is read after the change.
    fn instant(&self, day: Date, minute: u16) -> Option<i64> {
        let civil = day
            .at(0, 0, 0, 0)
            .checked_add(SignedDuration::from_mins(minute.into()))
            .ok()?;
        Some(self.time_zone.to_timestamp(civil).ok()?.as_millisecond())
    }
}

impl Day {
    fn of(weekday: Weekday) -> Day {
        match weekday {
            Weekday::Monday => Day::Mon,
            Weekday::Tuesday => Day::Tue,
            Weekday::Wednesday => Day::Wed,
            Weekday::Thursday => Day::Thu,
            Weekday::Friday => Day::Fri,
            Weekday::Saturday => Day::Sat,
            Weekday::Sunday => Day::Sun,
        }
    }
}

impl FromStr for Hours {
    type Err = String;

    fn from_str(text: &str) -> Result<Hours, String> {
        let mut ranges: Vec<(u16, u16)> = Vec::new();
        for range in text.split(',') {
            let (opens, closes) = range.split_once('-').ok_or_else(|| not_hours(text))?;
            let (opens, closes) = (time_of_day(opens, text)?, time_of_day(closes, text)?);
            if opens >= closes {
                return Err(format!("{text:?}: {} does not open before it closes", range.trim()));
            }
            if ranges.last().is_some_and(|&(_, closed)| opens < closed) {
                return Err(format!("{text:?}: the ranges overlap or are out of order"));
            }
            ranges.push((opens, closes));
        }
        Ok(Hours(ranges))
    }
}

fn not_hours(text: &str) -> String {
    format!("{text:?} is not HH:MM-HH:MM (or several, separated by commas)")
}

/// Minutes since midnight of `HH:MM` (one-digit hours allowed), from `00:00` to `24:00`, in `hours`.
fn time_of_day(text: &str, hours: &str) -> Result<u16, String> {
    let number = |digits: &str, longest: usize| {
        let ok = (1..=longest).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| digits.parse::<u16>().ok()).flatten()
    };
    let text = text.trim();
    let (hour, minute) = text
        .split_once(':')
        .filter(|(_, minute)| minute.len() == 2)
        .and_then(|(hour, minute)| Some((number(hour, 2)?, number(minute, 2)?)))
        .ok_or_else(|| not_hours(hours))?;
    if minute >= 60 || hour > 24 || (hour == 24 && minute > 0) {
        return Err(format!("{hours:?}: {text} is not a time of day"));
    }
    Ok(hour * 60 + minute)
}

impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (opens, closes)) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { "," };
            let (oh, om, ch, cm) = (opens / 60, opens % 60, closes / 60, closes % 60);
            write!(f, "{separator}{oh:02}:{om:02}-{ch:02}:{cm:02}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Hours {
    type Error = String;

    fn try_from(text: String) -> Result<Hours, String> {
        text.parse()
    }
}

impl From<Hours> for String {
    fn from(hours: Hours) -> String {
        hours.to_string()
    }
}

/// Time zones by their IANA name, such as `Asia/Shanghai`.
pub(crate) mod iana {
    use jiff::tz::TimeZone;
    use serde::{de, ser, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(zone: &TimeZone, serializer: S) -> Result<S::Ok, S::Error> {
        let name = zone
            .iana_name()
            .ok_or_else(|| <S::Error as ser::Error>::custom("a time zone without an IANA name"))?;
        serializer.serialize_str(name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<TimeZone, D::Error> {
        let name = String::deserialize(deserializer)?;
        // jiff's reason tells a misspelt name from a machine without a time zone database.
        TimeZone::get(&name)
            .map_err(|error| <D::Error as de::Error>::custom(format!("unknown time zone {name:?}: {error}")))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const WEEKDAYS_9_TO_6: &str = r#"
        hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
        holidays = ["2026-10-01"]
    "#;

    fn office(zone: &str) -> Calendar {
        toml::from_str(&format!("time_zone = {zone:?}\n{WEEKDAYS_9_TO_6}")).unwrap()
    }

    /// Milliseconds since the epoch at a wall-clock time such as `2026-05-08T17:50` in `zone`.
    pub(crate) fn at(zone: &str, wall: &str) -> i64 {
        let civil: jiff::civil::DateTime = wall.parse().unwrap();
        TimeZone::get(zone)
            .unwrap()
            .to_timestamp(civil)
            .unwrap()
            .as_millisecond()
    }

    /// The wall-clock time in `zone` at `ms`, such as `Mon 2026-05-11 09:20`.
    pub(crate) fn wall(zone: &str, ms: i64) -> String {
        let instant = Timestamp::from_millisecond(ms).unwrap();
        TimeZone::get(zone)
            .unwrap()
            .to_datetime(instant)
            .strftime("%a %Y-%m-%d %H:%M")
            .to_string()
    }

    const MINUTES: i64 = 60_000;
    const SHANGHAI: &str = "Asia/Shanghai";
    const BERLIN: &str = "Europe/Berlin";

    #[test]
    fn an_appeal_at_ten_to_six_on_friday_is_due_twenty_minutes_into_monday() {
        let due = office(SHANGHAI).after_open_time(at(SHANGHAI, "2026-05-08T17:50"), 30 * MINUTES);
        assert_eq!(wall(SHANGHAI, due), "Mon 2026-05-11 09:20");
    }

    #[test]
    fn an_appeal_in_the_night_is_due_half_an_hour_after_opening() {
        let due = office(SHANGHAI).after_open_time(at(SHANGHAI, "2026-05-08T03:00"), 30 * MINUTES);
        assert_eq!(wall(SHANGHAI, due), "Fri 2026-05-08 09:30");
    }

    #[test]
    fn an_appeal_during_hours_is_due_after_the_open_time_has_passed() {
        let due = office(SHANGHAI).after_open_time(at(SHANGHAI, "2026-05-08T10:00"), 30 * MINUTES);
        assert_eq!(wall(SHANGHAI, due), "Fri 2026-05-08 10:30");
    }

    #[test]
    fn a_deadline_that_falls_at_closing_time_is_due_at_closing_time() {
        let due = office(SHANGHAI).after_open_time(at(SHANGHAI, "2026-05-08T17:30"), 30 * MINUTES);
        assert_eq!(wall(SHANGHAI, due), "Fri 2026-05-08 18:00");
    }

    #[test]
    fn a_holiday_is_skipped() {
        let due = office(SHANGHAI).after_open_time(at(SHANGHAI, "2026-09-30T17:50"), 30 * MINUTES);
        assert_eq!(wall(SHANGHAI, due), "Fri 2026-10-02 09:20");
    }

    #[test]
    fn a_lunch_break_is_not_counted() {
        let calendar: Calendar =
            toml::from_str("time_zone = \"Asia/Shanghai\"\nhours = { mon = \"08:00-12:00,13:30-18:00\" }").unwrap();
        let due = calendar.after_open_time(at(SHANGHAI, "2026-05-11T11:45"), 30 * MINUTES);
        assert_eq!(wall(SHANGHAI, due), "Mon 2026-05-11 13:45");
    }

    #[test]
    fn across_the_change_to_summer_time_the_wall_clock_is_right() {
        // Clocks in Berlin go from 02:00 to 03:00 on Sunday 29 March 2026.
        let due = office(BERLIN).after_open_time(at(BERLIN, "2026-03-27T17:00"), 120 * MINUTES);
        assert_eq!(wall(BERLIN, due), "Mon 2026-03-30 10:00");
    }

    #[test]
    fn a_desk_open_through_the_night_of_the_change_counts_the_hours_that_passed() {
        let calendar: Calendar =
            toml::from_str("time_zone = \"Europe/Berlin\"\nhours = { sun = \"00:00-24:00\" }").unwrap();
        let due = calendar.after_open_time(at(BERLIN, "2026-03-29T01:00"), 180 * MINUTES);
        assert_eq!(wall(BERLIN, due), "Sun 2026-03-29 05:00");
    }

    #[test]
    fn opening_hours_must_be_ranges_of_hh_mm() {
        let error = |text: &str| text.parse::<Hours>().unwrap_err();
        assert_eq!(
            error("9-18"),
            "\"9-18\" is not HH:MM-HH:MM (or several, separated by commas)"
        );
        assert_eq!(error("09:00-25:00"), "\"09:00-25:00\": 25:00 is not a time of day");
        assert_eq!(error("09:60-18:00"), "\"09:60-18:00\": 09:60 is not a time of day");
        assert_eq!(
            error("18:00-09:00"),
            "\"18:00-09:00\": 18:00-09:00 does not open before it closes"
        );
        assert_eq!(
            error("09:00-09:00"),
            "\"09:00-09:00\": 09:00-09:00 does not open before it closes"
        );
        assert_eq!(
            error("08:00-12:00,11:00-18:00"),
            "\"08:00-12:00,11:00-18:00\": the ranges overlap or are out of order"
        );
        assert_eq!(
            "9:00-12:00, 13:30-24:00".parse::<Hours>().unwrap().to_string(),
            "09:00-12:00,13:30-24:00"
        );
    }

    #[test]
    fn an_unknown_time_zone_is_named() {
        let error = toml::from_str::<Calendar>("time_zone = \"Asia/Shangai\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown time zone \"Asia/Shangai\""), "{error}");
    }

    #[test]
    fn a_holiday_must_be_a_date() {
        let text = "time_zone = \"Asia/Shanghai\"\nholidays = [\"2026-13-01\"]";
        let error = toml::from_str::<Calendar>(text).unwrap_err().to_string();
        assert!(error.contains("holidays"), "{error}");
    }
}
