//! Exports for supervisors to hand upward: the ticket list and the response-time report as CSV and XLSX files,
//! with Chinese headers and times in the configured zone.
//!
//! [`ticket_list`] reads the database; [`tickets`] and [`response_times`] are pure: data in, bytes and file
//! names out, so that an HTTP route only picks the format and sets the headers.

use std::collections::HashMap;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format as Style, Workbook, Worksheet, XlsxError};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{attainment, Attainment, Durations, Group, GroupBy, Period, Report};
use crate::classify::{Category, RuleSet};
use crate::store::{values, Db, ROWS};
use crate::tickets::desk::{self, Filter};
use crate::tickets::TicketId;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("failed to write the csv file: {0}")]
    Csv(#[from] csv::Error),
    #[error("failed to write the xlsx file: {0}")]
    Xlsx(#[from] XlsxError),
}

/// The file formats an export comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// UTF-8 with a byte-order mark, so that Excel on a Chinese Windows reads it as UTF-8.
    Csv,
    Xlsx,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "csv" => Ok(Format::Csv),
            "xlsx" => Ok(Format::Xlsx),
            other => Err(format!("format {other:?} is not one of csv, xlsx")),
        }
    }
}

/// An exported file, ready to send.
#[derive(Debug, Clone)]
pub struct ExportFile {
    pub bytes: Vec<u8>,
    /// The name to save it under, in Chinese: `suqiu-工单-2026-11-01_2026-11-07.xlsx`.
    pub file_name: String,
    /// The same in ASCII, for clients that ignore `filename*`: `suqiu-tickets-2026-11-01_2026-11-07.xlsx`.
    pub ascii_file_name: String,
    pub content_type: &'static str,
}

impl ExportFile {
    /// The `Content-Disposition` header value: `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266).
    pub fn content_disposition(&self) -> String {
        format!(
            "attachment; filename=\"{}\"; filename*=UTF-8''{}",
            self.ascii_file_name,
            percent_encode(&self.file_name)
        )
    }
}

/// What an export needs besides its data: the zone its times are read in and the categories' names.
#[derive(Clone, Copy)]
pub struct Locale<'a> {
    pub time_zone: &'a TimeZone,
    pub rules: &'a RuleSet,
}

/// Which tickets a list holds.
#[derive(Debug, Clone)]
pub enum Selection {
    /// The queue's rows for a filter, in the queue's order ([`desk::list`]: up to the filter's limit, 100
    /// unless set and 1,000 at most).
    Queue(Filter),
    /// The tickets opened in `[from, to)` (milliseconds since the epoch), oldest first, less those closed as
    /// "not an appeal": the tickets the response-time report of that period counts.
    Opened { from: i64, to: i64 },
}

/// Whether a deadline was kept, as the report counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sla {
    Met,
    /// Done late, or not done and past due.
    Missed,
    /// Not done and not yet due.
    Pending,
}

/// One ticket of a list. Times are milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct TicketRow {
    pub id: TicketId,
    pub opened_at: i64,
    pub chat: String,
    /// The chat's name as its channel last gave it.
    pub chat_title: Option<String>,
    pub driver: String,
    pub driver_name: Option<String>,
    pub category: String,
    pub priority: String,
    pub status: String,
    pub assignee_name: Option<String>,
    pub claimed_at: Option<i64>,
    pub first_response_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// None without a deadline, and for a ticket closed as "not an appeal".
    pub first_response_sla: Option<Sla>,
    pub resolution_sla: Option<Sla>,
    /// The driver's rating of the help, 1 to 5.
    pub rating: Option<i64>,
    /// The driver's first message on the ticket.
    pub first_message: String,
}

/// The tickets of a selection as of `generated_at`.
#[derive(Debug, Clone)]
pub struct TicketList {
    pub selection: Selection,
    pub generated_at: i64,
    pub rows: Vec<TicketRow>,
}

const ROW_QUERY: &str = "SELECT t.id, t.chat, c.title AS chat_title, t.driver, t.driver_name, t.category, \
     t.priority, t.status, r.name AS assignee_name, t.opened_at, t.claimed_at, t.first_response_at, t.resolved_at, \
     t.first_response_due, t.resolution_due, CAST(g.score AS BIGINT) AS rating, m.text AS first_message \
     FROM tickets t \
     LEFT JOIN responders r ON r.id = t.assignee \
     LEFT JOIN chats c ON c.channel = t.channel AND c.chat = t.chat \
     LEFT JOIN ratings g ON g.ticket_id = t.id \
     LEFT JOIN messages m ON m.id = (SELECT MIN(id) FROM messages WHERE ticket_id = t.id)";

/// The tickets of `selection`, with deadlines judged as of `now`.
pub async fn ticket_list(db: &Db, selection: Selection, now: i64) -> Result<TicketList, sqlx::Error> {
    let rows = match &selection {
        Selection::Opened { from, to } => {
            let sql = format!(
                "{ROW_QUERY} WHERE t.opened_at >= $1 AND t.opened_at < $2 AND t.status <> 'closed' \
                 ORDER BY t.opened_at, t.id"
            );
            let rows = sqlx::query(&sql).bind(from).bind(to).fetch_all(db.pool()).await?;
            rows.iter().map(|row| ticket_row(row, now)).collect::<Result<_, _>>()?
        }
        Selection::Queue(filter) => {
            let order: HashMap<i64, usize> = desk::list(db, filter)
                .await?
                .iter()
                .enumerate()
                .map(|(i, t)| (t.id.0, i))
                .collect();
            let ids: Vec<i64> = order.keys().copied().collect();
            let mut rows = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(ROWS) {
                let sql = format!("{ROW_QUERY} WHERE t.id IN {}", values(1, chunk.len()));
                let mut query = sqlx::query(&sql);
                for id in chunk {
                    query = query.bind(*id);
                }
                for row in query.fetch_all(db.pool()).await? {
                    rows.push(ticket_row(&row, now)?);
                }
            }
            rows.sort_by_key(|r: &TicketRow| order[&r.id.0]);
            rows
        }
    };
    Ok(TicketList {
        selection,
        generated_at: now,
        rows,
    })
}

fn ticket_row(row: &AnyRow, now: i64) -> Result<TicketRow, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let closed = status == "closed";
    let sla = |done: Option<i64>, due: Option<i64>| {
        if closed || due.is_none() {
            return None;
        }
        // The report's own rule, so that the rows add up to its counts.
        let a = attainment(std::iter::once((done, due)), now);
        Some(if a.met > 0 {
            Sla::Met
        } else if a.missed > 0 {
            Sla::Missed
        } else {
            Sla::Pending
        })
    };
    let first_response_at = row.try_get("first_response_at")?;
    let resolved_at = row.try_get("resolved_at")?;
    Ok(TicketRow {
        id: TicketId(row.try_get("id")?),
        opened_at: row.try_get("opened_at")?,
        chat: row.try_get("chat")?,
        chat_title: row.try_get("chat_title")?,
        driver: row.try_get("driver")?,
        driver_name: row.try_get("driver_name")?,
        category: row.try_get("category")?,
        priority: row.try_get("priority")?,
        assignee_name: row.try_get("assignee_name")?,
        claimed_at: row.try_get("claimed_at")?,
        first_response_at,
        resolved_at,
        first_response_sla: sla(first_response_at, row.try_get("first_response_due")?),
        resolution_sla: sla(resolved_at, row.try_get("resolution_due")?),
        rating: row.try_get("rating")?,
        first_message: row.try_get::<Option<String>, _>("first_message")?.unwrap_or_default(),
        status,
    })
}

/// The ticket list as a file: one sheet (or table) with a row per ticket.
pub fn tickets(list: &TicketList, locale: Locale, format: Format) -> Result<ExportFile, ExportError> {
    let sheet = ticket_sheet(list, locale);
    let (name, ascii, stem) = match &list.selection {
        Selection::Opened { from, to } => ("工单", "tickets", days(*from, *to, locale.time_zone)),
        Selection::Queue(_) => ("工单队列", "queue", minute(list.generated_at, locale.time_zone)),
    };
    let bytes = match format {
        Format::Csv => csv_bytes(&sheet, locale.time_zone)?,
        Format::Xlsx => xlsx_bytes(&[sheet], list.generated_at, locale.time_zone)?,
    };
    Ok(file(
        bytes,
        format,
        &format!("{name}-{stem}"),
        &format!("{ascii}-{stem}"),
    ))
}

/// The response-time report of `period` as a file. The XLSX has the report on its first sheet, the period and
/// the backlog below it, and `tickets` (the list of [`Selection::Opened`] for the period) on a second sheet;
/// the CSV holds the report's table alone.
pub fn response_times(
    report: &Report,
    period: &Period,
    tickets: Option<&TicketList>,
    locale: Locale,
    format: Format,
) -> Result<ExportFile, ExportError> {
    let sheet = report_sheet(report, period, locale);
    let generated_at = parse_time(&report.generated_at).unwrap_or(period.to);
    let bytes = match format {
        Format::Csv => csv_bytes(&sheet, locale.time_zone)?,
        Format::Xlsx => {
            let mut sheets = vec![sheet];
            if let Some(list) = tickets {
                sheets.push(Sheet {
                    name: "工单明细",
                    ..ticket_sheet(list, locale)
                });
            }
            xlsx_bytes(&sheets, generated_at, locale.time_zone)?
        }
    };
    let stem = days(period.from, period.to, locale.time_zone);
    Ok(file(
        bytes,
        format,
        &format!("响应时效-{stem}"),
        &format!("response-times-{stem}"),
    ))
}

fn file(bytes: Vec<u8>, format: Format, name: &str, ascii: &str) -> ExportFile {
    let ext = format.extension();
    ExportFile {
        bytes,
        file_name: format!("suqiu-{name}.{ext}"),
        ascii_file_name: format!("suqiu-{ascii}.{ext}"),
        content_type: format.content_type(),
    }
}

/// One value of a table, typed so that a spreadsheet gets numbers and dates, not text.
#[derive(Debug)]
enum Cell {
    Text(String),
    Int(i64),
    /// A duration in minutes, to a tenth.
    Minutes(f64),
    /// A fraction, shown as a percentage.
    Rate(f64),
    /// Milliseconds since the epoch, shown in the export's zone.
    Time(i64),
    Empty,
}

/// A table under a header row; `notes` follow it after a blank row (XLSX only).
struct Sheet {
    name: &'static str,
    headers: Vec<String>,
    rows: Vec<Vec<Cell>>,
    /// The last row is a total, set in bold.
    total: bool,
    notes: Vec<Vec<Cell>>,
}

fn ticket_sheet(list: &TicketList, locale: Locale) -> Sheet {
    let headers = [
        "工单号",
        &format!("开单时间{}", zone_suffix(locale.time_zone)),
        "群聊",
        "司机",
        "类别",
        "类别代码",
        "优先级",
        "状态",
        "处理人",
        "认领用时（分钟）",
        "首次回复用时（分钟）",
        "办结用时（分钟）",
        "首次回复时效",
        "办结时效",
        "评分",
        "司机首条消息",
    ];
    let text = |s: &str| Cell::Text(s.to_owned());
    let optional = |s: &Option<String>| s.as_deref().map_or(Cell::Empty, text);
    let since_opening =
        |t: &TicketRow, at: Option<i64>| at.map_or(Cell::Empty, |at| Cell::Minutes(minutes(at - t.opened_at)));
    let rows = list
        .rows
        .iter()
        .map(|t| {
            vec![
                Cell::Int(t.id.0),
                Cell::Time(t.opened_at),
                text(t.chat_title.as_deref().unwrap_or(&t.chat)),
                text(t.driver_name.as_deref().unwrap_or(&t.driver)),
                text(category_name(locale.rules, &t.category)),
                text(&t.category),
                text(&t.priority),
                text(status_name(&t.status)),
                optional(&t.assignee_name),
                since_opening(t, t.claimed_at),
                since_opening(t, t.first_response_at),
                since_opening(t, t.resolved_at),
                t.first_response_sla.map_or(Cell::Empty, |s| text(sla_name(s))),
                t.resolution_sla.map_or(Cell::Empty, |s| text(sla_name(s))),
                t.rating.map_or(Cell::Empty, Cell::Int),
                text(&t.first_message),
            ]
        })
        .collect();
    Sheet {
        name: "工单",
        headers: headers.map(str::to_owned).to_vec(),
        rows,
        total: false,
        notes: Vec::new(),
    }
}

fn report_sheet(report: &Report, period: &Period, locale: Locale) -> Sheet {
    let key = match period.group_by {
        GroupBy::Category => "类别",
        GroupBy::Responder => "处理人",
        GroupBy::Chat => "群聊",
        GroupBy::Day => "日期",
    };
    let mut headers = vec![key.to_owned(), "工单数".to_owned()];
    for step in ["认领", "首次回复", "办结"] {
        headers.extend([
            format!("已{step}数"),
            format!("{step}用时中位数（分钟）"),
            format!("{step}用时P90（分钟）"),
        ]);
    }
    for deadline in ["首次回复", "办结"] {
        headers.extend([
            format!("{deadline}达标"),
            format!("{deadline}超时"),
            format!("{deadline}达标率"),
        ]);
    }
    let group_row = |g: &Group, name: String| {
        let mut row = vec![Cell::Text(name), Cell::Int(g.tickets as i64)];
        for d in [&g.to_claim, &g.to_first_response, &g.to_resolution] {
            row.extend(durations(d));
        }
        for a in [&g.first_response_sla, &g.resolution_sla] {
            row.extend(rate(a));
        }
        row
    };
    let mut rows: Vec<Vec<Cell>> = report
        .groups
        .iter()
        .map(|g| group_row(g, group_name(period.group_by, &g.key, locale.rules)))
        .collect();
    rows.push(group_row(&report.total, "合计".to_owned()));

    let text = |s: &str| Cell::Text(s.to_owned());
    let time = |s: Option<&str>| s.and_then(parse_time).map_or(Cell::Empty, Cell::Time);
    let b = &report.backlog;
    let mut notes = vec![
        vec![
            text("统计区间"),
            Cell::Time(period.from),
            text("至"),
            Cell::Time(period.to),
            text(&format!("开单时间在此区间内的工单{}", zone_suffix(locale.time_zone))),
        ],
        vec![text("生成时间"), time(Some(&report.generated_at))],
        vec![],
        vec![text("当前积压")],
        vec![text("待认领"), Cell::Int(b.open)],
        vec![text("处理中"), Cell::Int(b.claimed)],
        vec![text("已回复"), Cell::Int(b.responded)],
        vec![text("已超时"), Cell::Int(b.overdue)],
    ];
    for (priority, n) in &b.by_priority {
        notes.push(vec![text(&format!("优先级 {priority}")), Cell::Int(*n)]);
    }
    notes.push(vec![text("最早开单时间"), time(b.oldest_opened_at.as_deref())]);
    Sheet {
        name: "响应时效",
        headers,
        rows,
        total: true,
        notes,
    }
}

fn durations(d: &Durations) -> [Cell; 3] {
    let minutes = |s: Option<f64>| s.map_or(Cell::Empty, |s| Cell::Minutes(round_tenth(s / 60.0)));
    [
        Cell::Int(d.count as i64),
        minutes(d.median_seconds),
        minutes(d.p90_seconds),
    ]
}

fn rate(a: &Attainment) -> [Cell; 3] {
    [
        Cell::Int(a.met as i64),
        Cell::Int(a.missed as i64),
        a.rate.map_or(Cell::Empty, Cell::Rate),
    ]
}

fn group_name(group_by: GroupBy, key: &str, rules: &RuleSet) -> String {
    match group_by {
        GroupBy::Category => category_name(rules, key).to_owned(),
        GroupBy::Responder if key == "unassigned" => "未分配".to_owned(),
        _ => key.to_owned(),
    }
}

fn category_name<'a>(rules: &'a RuleSet, id: &'a str) -> &'a str {
    id.parse::<Category>().map_or(id, |c| rules.intent(c).name.as_str())
}

fn status_name(status: &str) -> &str {
    match status {
        "open" => "待认领",
        "claimed" => "处理中",
        "responded" => "已回复",
        "resolved" => "已办结",
        "closed" => "已关闭（非诉求）",
        other => other,
    }
}

fn sla_name(sla: Sla) -> &'static str {
    match sla {
        Sla::Met => "达标",
        Sla::Missed => "超时",
        Sla::Pending => "未到期",
    }
}

fn csv_bytes(sheet: &Sheet, zone: &TimeZone) -> Result<Vec<u8>, ExportError> {
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(b"\xEF\xBB\xBF".to_vec());
    out.write_record(sheet.headers.iter().map(|h| csv_text(h)))?;
    for row in &sheet.rows {
        out.write_record(row.iter().map(|cell| match cell {
            Cell::Text(s) => csv_text(s),
            Cell::Int(n) => n.to_string(),
            Cell::Minutes(m) => format!("{m:.1}"),
            Cell::Rate(r) => format!("{:.1}%", r * 100.0),
            Cell::Time(ms) => local(*ms, zone).strftime("%Y-%m-%d %H:%M").to_string(),
            Cell::Empty => String::new(),
        }))?;
    }
    out.into_inner().map_err(|e| ExportError::Csv(e.into_error().into()))
}

/// A text cell that a spreadsheet will not take for a formula: one that starts with `=`, `+`, `-`, `@` (or
/// their full-width forms, which Chinese input methods type), after any spaces, or with a tab, carriage return
/// or line feed, gets a leading `'` (OWASP's advice on CSV injection).
fn csv_text(s: &str) -> String {
    let risky =
        s.starts_with(['\t', '\r', '\n']) || s.trim_start().starts_with(['=', '+', '-', '@', '＝', '＋', '－', '＠']);
    if risky {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

fn xlsx_bytes(sheets: &[Sheet], generated_at: i64, zone: &TimeZone) -> Result<Vec<u8>, ExportError> {
    let mut workbook = Workbook::new();
    // Dated by the data, not the clock: the same export gives the same bytes.
    let created = ExcelDateTime::from_timestamp(generated_at.div_euclid(1000))?;
    workbook.set_properties(&DocProperties::new().set_author("suqiu").set_creation_datetime(&created));
    for sheet in sheets {
        write_sheet(workbook.add_worksheet(), sheet, zone)?;
    }
    Ok(workbook.save_to_buffer()?)
}

/// The cell formats of a row: plain, or bold for the header and a total.
struct Styles {
    text: Style,
    minutes: Style,
    percent: Style,
    time: Style,
}

impl Styles {
    fn new(bold: bool) -> Styles {
        let text = if bold { Style::new().set_bold() } else { Style::new() };
        Styles {
            minutes: text.clone().set_num_format("0.0"),
            percent: text.clone().set_num_format("0.0%"),
            time: text.clone().set_num_format("yyyy-mm-dd hh:mm"),
            text,
        }
    }
}

fn write_sheet(ws: &mut Worksheet, sheet: &Sheet, zone: &TimeZone) -> Result<(), XlsxError> {
    let (plain, bold) = (Styles::new(false), Styles::new(true));
    ws.set_name(sheet.name)?;
    let mut widths: Vec<usize> = sheet.headers.iter().map(|h| display_width(h)).collect();
    for (col, header) in sheet.headers.iter().enumerate() {
        ws.write_string_with_format(0, col as u16, header, &bold.text)?;
    }
    let notes_start = sheet.rows.len() + 2;
    let rows = sheet.rows.iter().enumerate().map(|(i, cells)| {
        let total = sheet.total && i + 1 == sheet.rows.len();
        (i + 1, cells, if total { &bold } else { &plain })
    });
    let notes = sheet
        .notes
        .iter()
        .enumerate()
        .map(|(i, cells)| (notes_start + i, cells, &plain));
    for (row, cells, style) in rows.chain(notes) {
        for (col, cell) in cells.iter().enumerate() {
            let (r, c) = (row as u32, col as u16);
            let width = match cell {
                Cell::Text(s) => {
                    let s = clip_for_excel(s);
                    ws.write_string_with_format(r, c, &*s, &style.text)?;
                    display_width(&s)
                }
                Cell::Int(n) => {
                    ws.write_number_with_format(r, c, *n as f64, &style.text)?;
                    n.to_string().len()
                }
                Cell::Minutes(m) => {
                    ws.write_number_with_format(r, c, *m, &style.minutes)?;
                    8
                }
                Cell::Rate(x) => {
                    ws.write_number_with_format(r, c, *x, &style.percent)?;
                    6
                }
                Cell::Time(ms) => {
                    ws.write_datetime_with_format(r, c, excel_time(*ms, zone)?, &style.time)?;
                    16
                }
                Cell::Empty => 0,
            };
            // Notes may run into the empty cells beside them; only the table sizes the columns.
            if row < notes_start {
                if let Some(w) = widths.get_mut(col) {
                    *w = (*w).max(width);
                }
            }
        }
    }
    for (col, width) in widths.into_iter().enumerate() {
        ws.set_column_width(col as u16, (width.clamp(6, 60) + 2) as f64)?;
    }
    ws.set_freeze_panes(1, 0)?;
    if !sheet.rows.is_empty() && !sheet.total {
        ws.autofilter(0, 0, sheet.rows.len() as u32, sheet.headers.len() as u16 - 1)?;
    }
    Ok(())
}

/// Excel keeps at most 32,767 UTF-16 units in a cell: longer texts are cut, with an ellipsis.
fn clip_for_excel(s: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 32_767;
    if s.encode_utf16().count() <= MAX {
        return s.into();
    }
    let mut units = 0;
    let cut = s
        .char_indices()
        .find(|(_, c)| {
            units += c.len_utf16();
            units > MAX - 1
        })
        .map_or(s.len(), |(i, _)| i);
    format!("{}…", &s[..cut]).into()
}

/// Columns widths count in narrow characters; a Chinese character takes two.
fn display_width(s: &str) -> usize {
    s.chars().map(|c| if c >= '\u{2E80}' { 2 } else { 1 }).sum()
}

fn excel_time(ms: i64, zone: &TimeZone) -> Result<ExcelDateTime, XlsxError> {
    let t = local(ms, zone);
    let seconds = f64::from(t.second()) + f64::from(t.millisecond()) / 1000.0;
    ExcelDateTime::from_ymd(t.year() as u16, t.month() as u8, t.day() as u8)?.and_hms(
        t.hour() as u16,
        t.minute() as u8,
        seconds,
    )
}

fn local(ms: i64, zone: &TimeZone) -> ZonedDateTime {
    Timestamp::from_millisecond(ms)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned_datetime(zone.clone())
}

/// `2026-11-01_2026-11-07` for `[from, to)`: the first and the last day, in `zone`; one date for one day.
fn days(from: i64, to: i64, zone: &TimeZone) -> String {
    let first = local(from, zone).date();
    let last = local((to - 1).max(from), zone).date();
    if first == last {
        first.to_string()
    } else {
        format!("{first}_{last}")
    }
}

fn minute(ms: i64, zone: &TimeZone) -> String {
    local(ms, zone).strftime("%Y-%m-%d-%H%M").to_string()
}

/// `（Asia/Shanghai）`: the zone a column's times are in, for its header.
fn zone_suffix(zone: &TimeZone) -> String {
    zone.iana_name().map_or_else(String::new, |name| format!("（{name}）"))
}

fn parse_time(s: &str) -> Option<i64> {
    s.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

fn minutes(ms: i64) -> f64 {
    round_tenth(ms as f64 / 60_000.0)
}

fn round_tenth(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// RFC 5987 encoding for `filename*`: every byte but the attribute characters as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use calamine::{Data, Reader};

    use super::*;
    use crate::classify::Classifier;

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn row(first_message: &str) -> TicketRow {
        let opened_at = ms("2026-11-02T08:00:00Z");
        TicketRow {
            id: TicketId(7),
            opened_at,
            chat: "group-1".into(),
            chat_title: None,
            driver: "d1".into(),
            driver_name: None,
            category: "breakdown".into(),
            priority: "P2".into(),
            status: "responded".into(),
            assignee_name: Some("王师傅".into()),
            claimed_at: Some(opened_at + 90_000),
            first_response_at: Some(opened_at + 20 * 60_000),
            resolved_at: None,
            first_response_sla: Some(Sla::Missed),
            resolution_sla: Some(Sla::Pending),
            rating: None,
            first_message: first_message.into(),
        }
    }

    fn list(rows: Vec<TicketRow>) -> TicketList {
        TicketList {
            selection: Selection::Opened {
                from: ms("2026-10-31T16:00:00Z"),
                to: ms("2026-11-07T16:00:00Z"),
            },
            generated_at: ms("2026-11-08T01:00:00Z"),
            rows,
        }
    }

    #[test]
    fn text_a_spreadsheet_would_take_for_a_formula_gets_a_quote() {
        for risky in [
            "=1+1", "+86 138", "-5", "@SUM(A1)", "\t=1", "\r=1", "  =1", "＝1+1", "－5",
        ] {
            assert_eq!(csv_text(risky), format!("'{risky}"), "{risky:?}");
        }
        for plain in ["车坏了", "P1", "2026-11-02 16:00", "a=b", "", "'已引用"] {
            assert_eq!(csv_text(plain), plain, "{plain:?}");
        }
    }

    #[test]
    fn file_names_name_the_local_days_and_the_header_carries_both_names() {
        let zone = shanghai();
        // A Shanghai week: 1 November 00:00 to 8 November 00:00 (local), so the last day is the 7th.
        assert_eq!(
            days(ms("2026-10-31T16:00:00Z"), ms("2026-11-07T16:00:00Z"), &zone),
            "2026-11-01_2026-11-07"
        );
        assert_eq!(
            days(ms("2026-11-01T16:00:00Z"), ms("2026-11-02T16:00:00Z"), &zone),
            "2026-11-02"
        );
        let file = file(Vec::new(), Format::Xlsx, "工单-2026-11-02", "tickets-2026-11-02");
        assert_eq!(file.file_name, "suqiu-工单-2026-11-02.xlsx");
        assert_eq!(
            file.content_disposition(),
            "attachment; filename=\"suqiu-tickets-2026-11-02.xlsx\"; \
             filename*=UTF-8''suqiu-%E5%B7%A5%E5%8D%95-2026-11-02.xlsx"
        );
    }

    #[test]
    fn the_csv_has_a_bom_chinese_headers_local_times_and_minutes() {
        let classifier = Classifier::builtin().unwrap();
        let zone = shanghai();
        let locale = Locale {
            time_zone: &zone,
            rules: classifier.rules(),
        };
        let file = tickets(&list(vec![row("=HYPERLINK(\"x\") 车坏了")]), locale, Format::Csv).unwrap();
        assert_eq!(file.file_name, "suqiu-工单-2026-11-01_2026-11-07.csv");
        let text = std::str::from_utf8(&file.bytes).unwrap();
        let text = text.strip_prefix('\u{feff}').expect("a byte-order mark");
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(
            lines[0].starts_with("工单号,开单时间（Asia/Shanghai）,群聊,司机,类别,类别代码"),
            "{}",
            lines[0]
        );
        assert_eq!(
            lines[1],
            "7,2026-11-02 16:00,group-1,d1,车辆故障/道路救援,breakdown,P2,已回复,王师傅,1.5,20.0,,超时,未到期,,\
             \"'=HYPERLINK(\"\"x\"\") 车坏了\""
        );
        assert_eq!(lines[2], "", "every record ends with CRLF");
    }

    #[test]
    fn a_text_longer_than_a_cell_holds_is_cut_not_refused() {
        let classifier = Classifier::builtin().unwrap();
        let zone = shanghai();
        let locale = Locale {
            time_zone: &zone,
            rules: classifier.rules(),
        };
        let long = "车".repeat(40_000);
        let file = tickets(&list(vec![row(&long)]), locale, Format::Xlsx).unwrap();
        let mut book: calamine::Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(file.bytes)).unwrap();
        let sheet = book.worksheet_range("工单").unwrap();
        let Some(Data::String(cell)) = sheet.get((1, 15)) else {
            panic!("the message is a string cell: {:?}", sheet.get((1, 15)));
        };
        assert_eq!(cell.encode_utf16().count(), 32_767);
        assert!(cell.ends_with("车…"));
    }
}
