//! The overview's charts, drawn server-side as SVG by charts-rs from the period's figures. The charts carry
//! only numbers, dates and fixed labels, never a driver's text.

use charts_rs::{BarChart, ChartBase, HeatmapChart, LineChart, Series};

use crate::reports::activity::{Activity, HOURS, WEEKDAYS};
use crate::reports::Report;

const WIDTH: f32 = 1100.0;

/// The x axis of a chart by day: `MM-DD`.
fn short_date(date: &str) -> String {
    date.get(5..).unwrap_or(date).to_owned()
}

/// A chart as the page shows it: the SVG, and its legend as HTML beside it. charts-rs measures text with a
/// Latin font, so a legend of Chinese names drawn in the SVG would overlap itself; the page's own fonts lay
/// it out instead.
#[derive(Default)]
pub struct Chart {
    pub svg: String,
    pub legend: Vec<Swatch>,
}

impl Chart {
    pub fn is_empty(&self) -> bool {
        self.svg.is_empty()
    }
}

/// A series' name and colour, `#rrggbb`.
pub struct Swatch {
    pub name: String,
    pub color: String,
}

/// Hides the SVG's legend and returns the swatches of series named `names`, in the chart's colours.
fn legend(base: &mut ChartBase, names: Vec<String>) -> Vec<Swatch> {
    base.legend.show = Some(false);
    let colors = &base.series.colors;
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| Swatch {
            name,
            color: colors.get(i % colors.len().max(1)).map(|c| c.hex()).unwrap_or_default(),
        })
        .collect()
}

fn drawn(svg: charts_rs::Result<String>, legend: Vec<Swatch>) -> Result<Chart, String> {
    let svg = svg.map_err(|e| format!("chart: {e}"))?;
    Ok(Chart { svg, legend })
}

/// Tickets opened each day, stacked by category; `name` gives a category's name.
pub fn volume(activity: &Activity, name: impl Fn(&str) -> String) -> Result<Chart, String> {
    let mut categories: Vec<&str> = activity
        .days
        .iter()
        .flat_map(|d| d.by_category.keys().map(String::as_str))
        .collect();
    categories.sort_unstable();
    categories.dedup();
    if categories.is_empty() {
        return Ok(Chart::default());
    }
    let series = categories
        .iter()
        .map(|category| {
            let counts = activity
                .days
                .iter()
                .map(|d| d.by_category.get(*category).copied().unwrap_or(0) as f32)
                .collect();
            let mut series = Series::new(category.to_string(), counts);
            series.stack = Some("tickets".into());
            series
        })
        .collect();
    let busiest = activity
        .days
        .iter()
        .map(|d| d.by_category.values().sum::<u32>())
        .max()
        .unwrap_or(0);
    let days = activity.days.iter().map(|d| short_date(&d.date)).collect();
    let mut chart = BarChart::new(series, days);
    // Whole tickets on the axis: a step of a whole number, at most five of them.
    let steps = busiest.clamp(1, 5);
    let axis = &mut chart.y_axis_configs[0];
    axis.min = Some(0.0);
    axis.max = Some((busiest.div_ceil(steps) * steps) as f32);
    axis.split_number = steps as usize;
    chart.width = WIDTH;
    chart.height = 340.0;
    chart.title.text = "每日新工单（按类别）".into();
    let legend = legend(&mut chart, categories.iter().map(|c| name(c)).collect());
    drawn(chart.svg(), legend)
}

/// The median and p90 minutes to a first response and to resolution, day by day.
pub fn response_times(by_day: &Report) -> Result<Chart, String> {
    if by_day.groups.is_empty() {
        return Ok(Chart::default());
    }
    let days = by_day.groups.iter().map(|g| short_date(&g.key)).collect();
    // First responses take minutes and resolutions hours: each has its own axis.
    let line = |name: &str, unit: f64, axis: usize, step: fn(&crate::reports::Group) -> Option<f64>| {
        let values = by_day
            .groups
            .iter()
            .map(|g| step(g).map(|s| (s / unit) as f32))
            .collect();
        let mut series = Series::new_nullable(name.into(), values);
        series.y_axis_index = axis;
        series
    };
    let series = vec![
        line("首次回复中位数（分钟）", 60.0, 0, |g| {
            g.to_first_response.median_seconds
        }),
        line("首次回复 P90（分钟）", 60.0, 0, |g| {
            g.to_first_response.p90_seconds
        }),
        line("办结中位数（小时）", 3600.0, 1, |g| {
            g.to_resolution.median_seconds
        }),
        line("办结 P90（小时）", 3600.0, 1, |g| g.to_resolution.p90_seconds),
    ];
    let mut chart = LineChart::new(series, days);
    let mut hours = chart.y_axis_configs[0].clone();
    chart.y_axis_configs[0].title = Some("分钟".into());
    hours.title = Some("小时".into());
    if chart.y_axis_configs.len() < 2 {
        chart.y_axis_configs.push(hours);
    } else {
        chart.y_axis_configs[1] = hours;
    }
    chart.width = WIDTH;
    chart.height = 340.0;
    chart.title.text = "每日响应用时".into();
    let names = chart.series_list.iter().map(|s| s.name.clone()).collect();
    let legend = legend(&mut chart, names);
    drawn(chart.svg(), legend)
}

/// Tickets opened at each hour of each weekday: Monday on top, midnight on the left.
pub fn heat_map(activity: &Activity) -> Result<Chart, String> {
    // charts-rs counts rows from the bottom: row 0 is Sunday, row 6 Monday.
    let cells: Vec<(usize, f32)> = activity
        .heat
        .iter()
        .enumerate()
        .flat_map(|(weekday, hours)| {
            let row = WEEKDAYS - 1 - weekday;
            hours
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(move |(hour, n)| (row * HOURS + hour, *n as f32))
        })
        .collect();
    if cells.is_empty() {
        return Ok(Chart::default());
    }
    let hours = (0..HOURS).map(|h| h.to_string()).collect();
    // One character each, as calendars head their columns: charts-rs measures Chinese text too narrow, and a
    // longer name would run into the grid.
    let weekdays = ["日", "六", "五", "四", "三", "二", "一"].map(String::from).to_vec();
    let mut chart = HeatmapChart::new(cells, hours, weekdays);
    chart.width = WIDTH;
    chart.height = 300.0;
    chart.title.text = "新工单的星期（一至日）与钟点".into();
    drawn(chart.svg(), Vec::new())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::reports::activity::{Day, Ratings};

    fn activity(heat: [[u32; HOURS]; WEEKDAYS]) -> Activity {
        Activity {
            days: vec![
                Day {
                    date: "2026-03-02".into(),
                    by_category: BTreeMap::from([("accident".into(), 3), ("wage_arrears".into(), 1)]),
                },
                Day {
                    date: "2026-03-03".into(),
                    by_category: BTreeMap::new(),
                },
            ],
            heat,
            ratings: Ratings {
                count: 0,
                average: None,
                by_score: [0; 5],
            },
        }
    }

    #[test]
    fn the_volume_chart_has_a_series_per_category_and_every_day() {
        let chart = volume(&activity([[0; HOURS]; WEEKDAYS]), |c| format!("名称 {c}")).unwrap();
        let svg = &chart.svg;
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("03-02") && svg.contains("03-03"), "{svg}");
        let names: Vec<&str> = chart.legend.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["名称 accident", "名称 wage_arrears"]);
        assert_ne!(chart.legend[0].color, chart.legend[1].color);
        // The legend is the page's: the SVG has no names in it.
        assert!(!svg.contains("名称"), "{svg}");
    }

    #[test]
    fn the_heat_map_draws_a_full_week_and_nothing_without_tickets() {
        assert!(heat_map(&activity([[0; HOURS]; WEEKDAYS])).unwrap().is_empty());
        let mut heat = [[0; HOURS]; WEEKDAYS];
        heat[0][23] = 7; // Monday, 23:00
        heat[6][0] = 2; // Sunday, midnight
        let svg = heat_map(&activity(heat)).unwrap().svg;
        // Each count in its own cell, with the rows and columns labelled.
        for cell in [
            r#"data-x="23" data-y="一" data-value="7""#,
            r#"data-x="0" data-y="日" data-value="2""#,
        ] {
            assert!(svg.contains(cell), "{cell} missing from {svg}");
        }
        assert_eq!(svg.matches("data-value=").count(), 2, "{svg}");
    }
}
