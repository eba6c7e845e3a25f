//! Supervisors' exports read back as a supervisor's spreadsheet would read them: CSV with the `csv` crate, XLSX
//! with calamine, on a real SQLite file and a real PostgreSQL server.

mod support;

use std::io::{Cursor, Read};

use calamine::{Data, Reader, Xlsx};
use jiff::tz::TimeZone;
use support::{classifier, desk, intake, message, ticket_of, TestDb, MINUTE, T0};
use suqiu::auth::{self, Role};
use suqiu::reports::export::{self, ExportFile, Format, Locale, Selection, TicketList};
use suqiu::reports::{self, GroupBy, Period};
use suqiu::tickets::desk::Filter;
use suqiu::tickets::state::{Action, Actor};
use suqiu::tickets::TicketId;

const ACCIDENT: &str = "我的车在京昆高速侧翻了，人受伤了，快来人";
const BREAKDOWN: &str = "车坏在半路了，发动机打不着火，需要拖车";
const FORMULA: &str = "=HYPERLINK(\"http://example.invalid\",\"点我\") 老板拖欠运费三个月了，八千多块一直不给";
const HOUR: i64 = 60 * MINUTE;
/// 2026-11-02 00:00 in Shanghai (16:00 UTC the day before): the day the tickets below are opened, there.
const DAY_START: i64 = T0 - 16 * HOUR;
const NOW: i64 = T0 + 2 * HOUR;

on_both_backends!(
    the_ticket_list_csv_has_chinese_headers_local_times_and_the_tickets_of_the_day,
    the_ticket_list_xlsx_has_typed_cells_under_a_bold_frozen_header,
    a_drivers_formula_stays_text_in_csv_and_xlsx,
    the_queue_export_lists_the_queue_in_its_order,
    the_report_exports_carry_the_reports_figures,
);

struct Tickets {
    accident: TicketId,
    breakdown: TicketId,
    formula: TicketId,
    next_day: TicketId,
}

/// Four appeals and some chatter, worked at the desk. Shanghai times: the accident at 16:00 (answered in 4
/// minutes, resolved in an hour, rated 5), the breakdown at 16:10 (answered late, at 16:50), a driver's
/// "formula" at 16:20 (untouched), and one at 01:00 the next day.
async fn arrange(t: &TestDb) -> Tickets {
    // A ticket opens at the intake's clock: each message arrives as it is sent.
    let (intake, clock) = intake(&t.db);
    let wang = responder(t, "王师傅").await;
    let li = responder(t, "李师傅").await;
    let desk = desk(&t.db);

    let accident = ticket_of(&intake, message("1", "d1", ACCIDENT, T0)).await;
    desk.act(T0 + 2 * MINUTE, accident, wang, Action::Claim, None)
        .await
        .unwrap();
    desk.act(
        T0 + 4 * MINUTE,
        accident,
        wang,
        Action::Reply,
        Some("已报警，救援车马上到"),
    )
    .await
    .unwrap();
    desk.act(T0 + HOUR, accident, wang, Action::Resolve, None)
        .await
        .unwrap();
    sqlx::query("INSERT INTO ratings (ticket_id, score, rated_at) VALUES ($1, 5, $2)")
        .bind(accident.0)
        .bind(T0 + HOUR + MINUTE)
        .execute(t.db.pool())
        .await
        .unwrap();

    clock.set(T0 + 10 * MINUTE);
    let breakdown = ticket_of(&intake, message("2", "d2", BREAKDOWN, T0 + 10 * MINUTE)).await;
    desk.act(T0 + 30 * MINUTE, breakdown, li, Action::Claim, None)
        .await
        .unwrap();
    desk.act(T0 + 50 * MINUTE, breakdown, li, Action::Reply, Some("拖车在路上"))
        .await
        .unwrap();

    clock.set(T0 + 20 * MINUTE);
    let mut formula = message("3", "d3", FORMULA, T0 + 20 * MINUTE);
    formula.sender_name = Some("@张三".into());
    let formula = ticket_of(&intake, formula).await;
    clock.set(T0 + 25 * MINUTE);
    intake
        .submit(message("4", "d4", "师傅们早上好", T0 + 25 * MINUTE))
        .await
        .unwrap();
    clock.set(T0 + 9 * HOUR);
    let next_day = ticket_of(&intake, message("5", "d5", BREAKDOWN, T0 + 9 * HOUR)).await;
    sqlx::query("INSERT INTO chats (channel, chat, title) VALUES ('telegram', 'group-1', '晋中货运司机群')")
        .execute(t.db.pool())
        .await
        .unwrap();
    Tickets {
        accident,
        breakdown,
        formula,
        next_day,
    }
}

async fn responder(t: &TestDb, name: &str) -> Actor {
    let (r, _) = auth::add_responder(&t.db, name, Role::Responder, T0).await.unwrap();
    Actor::Responder(r.id)
}

fn shanghai() -> TimeZone {
    TimeZone::get("Asia/Shanghai").unwrap()
}

async fn day_list(t: &TestDb) -> TicketList {
    let day = Selection::Opened {
        from: DAY_START,
        to: DAY_START + 24 * HOUR,
    };
    export::ticket_list(&t.db, day, NOW).await.unwrap()
}

fn export_tickets(list: &TicketList, format: Format) -> ExportFile {
    let zone = shanghai();
    let classifier = classifier();
    let locale = Locale {
        time_zone: &zone,
        rules: classifier.rules(),
    };
    export::tickets(list, locale, format).unwrap()
}

/// The CSV's header and records, after checking the byte-order mark that Excel needs.
fn read_csv(file: &ExportFile) -> (Vec<String>, Vec<Vec<String>>) {
    let body = file
        .bytes
        .strip_prefix(b"\xEF\xBB\xBF")
        .expect("the csv starts with a UTF-8 BOM");
    let mut reader = csv::Reader::from_reader(body);
    let headers = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let records = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (headers, records)
}

fn column(headers: &[String], name: &str) -> usize {
    headers
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name:?} in {headers:?}"))
}

async fn the_ticket_list_csv_has_chinese_headers_local_times_and_the_tickets_of_the_day(t: TestDb) {
    let tickets = arrange(&t).await;
    let file = export_tickets(&day_list(&t).await, Format::Csv);

    assert_eq!(file.file_name, "suqiu-工单-2026-11-02.csv");
    assert_eq!(file.ascii_file_name, "suqiu-tickets-2026-11-02.csv");
    assert_eq!(file.content_type, "text/csv; charset=utf-8");
    let (headers, rows) = read_csv(&file);
    assert_eq!(headers[..4], ["工单号", "开单时间（Asia/Shanghai）", "群聊", "司机"]);
    let col = |name| column(&headers, name);
    let ids: Vec<&str> = rows.iter().map(|r| r[col("工单号")].as_str()).collect();
    let expected = [tickets.accident, tickets.breakdown, tickets.formula].map(|id| id.0.to_string());
    assert_eq!(
        ids, expected,
        "the day's tickets, oldest first; not the next day's #{}",
        tickets.next_day.0
    );

    let accident = &rows[0];
    assert_eq!(accident[col("开单时间（Asia/Shanghai）")], "2026-11-02 16:00");
    assert_eq!(accident[col("群聊")], "晋中货运司机群");
    assert_eq!(accident[col("司机")], "司机d1");
    assert_eq!(accident[col("类别")], "交通事故/人身伤亡");
    assert_eq!(accident[col("类别代码")], "accident");
    assert_eq!(accident[col("优先级")], "P1");
    assert_eq!(accident[col("状态")], "已办结");
    assert_eq!(accident[col("处理人")], "王师傅");
    assert_eq!(accident[col("认领用时（分钟）")], "2.0");
    assert_eq!(accident[col("首次回复用时（分钟）")], "4.0");
    assert_eq!(accident[col("办结用时（分钟）")], "60.0");
    assert_eq!(accident[col("首次回复时效")], "达标");
    assert_eq!(accident[col("办结时效")], "达标");
    assert_eq!(accident[col("评分")], "5");
    assert_eq!(accident[col("司机首条消息")], ACCIDENT);

    let breakdown = &rows[1];
    assert_eq!(breakdown[col("开单时间（Asia/Shanghai）")], "2026-11-02 16:10");
    assert_eq!(breakdown[col("状态")], "已回复");
    assert_eq!(breakdown[col("首次回复用时（分钟）")], "40.0");
    assert_eq!(breakdown[col("首次回复时效")], "超时", "15 minutes allowed, 40 taken");
    assert_eq!(breakdown[col("办结时效")], "未到期", "8 hours allowed, 1 h 50 passed");
    assert_eq!(breakdown[col("办结用时（分钟）")], "");
    assert_eq!(breakdown[col("评分")], "");
    t.finish().await;
}

fn open_xlsx(file: &ExportFile) -> Xlsx<Cursor<Vec<u8>>> {
    calamine::open_workbook_from_rs(Cursor::new(file.bytes.clone())).expect("the xlsx opens")
}

/// A cell's value: text, number, or a date as `YYYY-MM-DD HH:MM` (its Excel serial read back).
fn show(cell: &Data) -> String {
    match cell {
        Data::String(s) => format!("text:{s}"),
        Data::Float(f) => format!("number:{f}"),
        Data::Int(i) => format!("number:{i}"),
        Data::DateTime(d) if d.is_datetime() => {
            let seconds = (d.as_f64() * 86_400.0).round() as i64;
            let epoch = jiff::civil::date(1899, 12, 30).at(0, 0, 0, 0);
            let at = epoch.checked_add(jiff::SignedDuration::from_secs(seconds)).unwrap();
            format!("date:{}", at.strftime("%Y-%m-%d %H:%M"))
        }
        Data::Empty => "empty".into(),
        other => format!("other:{other:?}"),
    }
}

/// One part of the XLSX package, as XML text.
fn part(file: &ExportFile, name: &str) -> String {
    let mut zip = zip::ZipArchive::new(Cursor::new(file.bytes.clone())).unwrap();
    let mut xml = String::new();
    zip.by_name(name).unwrap().read_to_string(&mut xml).unwrap();
    xml
}

/// The `n`-th (from 0) element `<tag …>` after `within` in `xml`.
fn nth_element<'a>(xml: &'a str, within: &str, tag: &str, n: usize) -> &'a str {
    let start = xml.find(within).unwrap_or_else(|| panic!("no {within} in {xml}"));
    let rest = &xml[start..];
    let open = format!("<{tag}");
    let at = rest
        .match_indices(&open)
        .filter(|(i, _)| matches!(rest.as_bytes()[i + open.len()], b' ' | b'>' | b'/'))
        .nth(n)
        .unwrap_or_else(|| panic!("no <{tag}> #{n} after {within}"))
        .0;
    let end = rest[at..]
        .find(&format!("</{tag}>"))
        .map_or(rest[at..].find("/>").unwrap() + 2, |e| e + tag.len() + 3);
    &rest[at..at + end]
}

/// The width of the column `index` (from 0) in a sheet's XML: the `<col>` whose `min`–`max` holds it.
fn column_width(xml: &str, index: usize) -> f64 {
    let number = index + 1;
    (0..)
        .map(|n| nth_element(xml, "<cols", "col", n))
        .find(|col| {
            let (min, max): (usize, usize) = (
                attribute(col, "min").parse().unwrap(),
                attribute(col, "max").parse().unwrap(),
            );
            (min..=max).contains(&number)
        })
        .map(|col| attribute(col, "width").parse().unwrap())
        .unwrap()
}

fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let start = element.find(&key).unwrap_or_else(|| panic!("no {name} in {element}")) + key.len();
    &element[start..start + element[start..].find('"').unwrap()]
}

async fn the_ticket_list_xlsx_has_typed_cells_under_a_bold_frozen_header(t: TestDb) {
    let tickets = arrange(&t).await;
    let file = export_tickets(&day_list(&t).await, Format::Xlsx);
    assert_eq!(file.file_name, "suqiu-工单-2026-11-02.xlsx");
    assert_eq!(
        file.content_disposition(),
        "attachment; filename=\"suqiu-tickets-2026-11-02.xlsx\"; \
         filename*=UTF-8''suqiu-%E5%B7%A5%E5%8D%95-2026-11-02.xlsx"
    );

    let mut book = open_xlsx(&file);
    assert_eq!(book.sheet_names(), ["工单"]);
    let sheet = book.worksheet_range("工单").unwrap();
    assert_eq!(sheet.height(), 4, "a header and three tickets");
    let row = |r: usize| {
        (0..sheet.width())
            .map(|c| show(sheet.get((r, c)).unwrap()))
            .collect::<Vec<_>>()
    };
    let header = row(0);
    assert_eq!(header[1], "text:开单时间（Asia/Shanghai）");
    let col = |name: &str| header.iter().position(|h| h == &format!("text:{name}")).unwrap();
    let accident = row(1);
    assert_eq!(accident[col("工单号")], format!("number:{}", tickets.accident.0));
    assert_eq!(accident[1], "date:2026-11-02 16:00");
    assert_eq!(accident[col("认领用时（分钟）")], "number:2");
    assert_eq!(accident[col("办结用时（分钟）")], "number:60");
    assert_eq!(accident[col("评分")], "number:5");
    assert_eq!(accident[col("类别")], "text:交通事故/人身伤亡");
    let breakdown = row(2);
    assert_eq!(breakdown[1], "date:2026-11-02 16:10");
    assert_eq!(breakdown[col("首次回复用时（分钟）")], "number:40");
    assert_eq!(breakdown[col("办结用时（分钟）")], "empty");
    assert_eq!(breakdown[col("首次回复时效")], "text:超时");

    let xml = part(&file, "xl/worksheets/sheet1.xml");
    let pane = nth_element(&xml, "<sheetView", "pane", 0);
    assert_eq!((attribute(pane, "ySplit"), attribute(pane, "state")), ("1", "frozen"));
    let first_cell = nth_element(&xml, "<sheetData", "c", 0);
    let style: usize = attribute(first_cell, "s").parse().unwrap();
    let styles = part(&file, "xl/styles.xml");
    let font: usize = attribute(nth_element(&styles, "<cellXfs", "xf", style), "fontId")
        .parse()
        .unwrap();
    assert!(
        nth_element(&styles, "<fonts", "font", font).contains("<b/>"),
        "the header's font is bold"
    );
    let message_width = column_width(&xml, col("司机首条消息"));
    let id_width = column_width(&xml, col("工单号"));
    assert!(
        message_width > 3.0 * id_width,
        "the message column is wide: {message_width} vs {id_width}"
    );
    t.finish().await;
}

async fn a_drivers_formula_stays_text_in_csv_and_xlsx(t: TestDb) {
    let tickets = arrange(&t).await;
    let list = day_list(&t).await;
    let formula_row = list.rows.iter().position(|r| r.id == tickets.formula).unwrap();

    let (headers, rows) = read_csv(&export_tickets(&list, Format::Csv));
    assert_eq!(
        rows[formula_row][column(&headers, "司机首条消息")],
        format!("'{FORMULA}")
    );
    assert_eq!(rows[formula_row][column(&headers, "司机")], "'@张三");

    let file = export_tickets(&list, Format::Xlsx);
    let mut book = open_xlsx(&file);
    let sheet = book.worksheet_range("工单").unwrap();
    let message = column(&headers, "司机首条消息");
    assert_eq!(
        sheet.get((formula_row + 1, message)),
        Some(&Data::String(FORMULA.into())),
        "the text as the driver wrote it, in a string cell"
    );
    assert_eq!(
        sheet.get((formula_row + 1, column(&headers, "司机"))),
        Some(&Data::String("@张三".into()))
    );
    let formulas = book.worksheet_formula("工单").unwrap();
    assert!(
        formulas.used_cells().all(|(_, _, f)| f.is_empty()),
        "no cell holds a formula: {formulas:?}"
    );
    assert!(!part(&file, "xl/worksheets/sheet1.xml").contains("<f>"));
    t.finish().await;
}

async fn the_queue_export_lists_the_queue_in_its_order(t: TestDb) {
    let tickets = arrange(&t).await;
    let list = export::ticket_list(&t.db, Selection::Queue(Filter::default()), NOW)
        .await
        .unwrap();
    let file = export_tickets(&list, Format::Csv);
    assert_eq!(file.file_name, "suqiu-工单队列-2026-11-02-1800.csv");
    let (headers, rows) = read_csv(&file);
    let ids: Vec<String> = rows.iter().map(|r| r[column(&headers, "工单号")].clone()).collect();
    // All three unfinished tickets are P2: the nearest deadline first, the formula's first response (16:50),
    // then the breakdown's resolution (00:10) and the next day's first response (01:15).
    let expected = [tickets.formula, tickets.breakdown, tickets.next_day].map(|id| id.0.to_string());
    assert_eq!(ids, expected);
    let queue: Vec<String> = suqiu::tickets::desk::list(&t.db, &Filter::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.id.0.to_string())
        .collect();
    assert_eq!(ids, queue);
    assert!(
        !ids.contains(&tickets.accident.0.to_string()),
        "the resolved accident has left the queue"
    );
    t.finish().await;
}

async fn the_report_exports_carry_the_reports_figures(t: TestDb) {
    arrange(&t).await;
    let zone = shanghai();
    let period = Period {
        from: DAY_START,
        to: DAY_START + 24 * HOUR,
        group_by: GroupBy::Category,
        time_zone: zone.clone(),
    };
    let report = reports::response_times(&t.db, &period, NOW).await.unwrap();
    let list = day_list(&t).await;
    let classifier = classifier();
    let locale = Locale {
        time_zone: &zone,
        rules: classifier.rules(),
    };

    let csv = export::response_times(&report, &period, None, locale, Format::Csv).unwrap();
    assert_eq!(csv.file_name, "suqiu-响应时效-2026-11-02.csv");
    assert_eq!(csv.ascii_file_name, "suqiu-response-times-2026-11-02.csv");
    let (headers, rows) = read_csv(&csv);
    assert_eq!(headers[..2], ["类别", "工单数"]);
    let keys: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        keys,
        ["交通事故/人身伤亡", "车辆故障/道路救援", "运费/工资拖欠", "合计"]
    );
    let total = &rows[3];
    let col = |name| column(&headers, name);
    assert_eq!(total[col("工单数")], "3");
    assert_eq!(total[col("已首次回复数")], "2");
    assert_eq!(total[col("首次回复用时中位数（分钟）")], "4.0");
    assert_eq!(total[col("首次回复用时P90（分钟）")], "40.0");
    // The accident was answered in time; the breakdown late; the formula's 30 minutes ran out at 16:50.
    assert_eq!(total[col("首次回复达标")], "1");
    assert_eq!(total[col("首次回复超时")], "2");
    assert_eq!(total[col("首次回复达标率")], "33.3%");
    assert_eq!(rows[0][col("办结达标率")], "100.0%");

    let xlsx = export::response_times(&report, &period, Some(&list), locale, Format::Xlsx).unwrap();
    assert_eq!(xlsx.file_name, "suqiu-响应时效-2026-11-02.xlsx");
    let mut book = open_xlsx(&xlsx);
    assert_eq!(book.sheet_names(), ["响应时效", "工单明细"]);
    let sheet = book.worksheet_range("响应时效").unwrap();
    let cell = |r: usize, c: usize| show(sheet.get((r, c)).unwrap_or(&Data::Empty));
    assert_eq!(cell(4, 0), "text:合计");
    assert_eq!(cell(4, col("工单数")), "number:3");
    assert_eq!(cell(4, col("首次回复用时P90（分钟）")), "number:40");
    match sheet.get((4, col("首次回复达标率"))) {
        Some(Data::Float(rate)) => assert!((rate - 1.0 / 3.0).abs() < 1e-9, "{rate}"),
        other => panic!("the rate is a number: {other:?}"),
    }
    let notes: Vec<(String, String)> = (5..sheet.height()).map(|r| (cell(r, 0), cell(r, 1))).collect();
    assert!(
        notes.contains(&("text:统计区间".into(), "date:2026-11-02 00:00".into())),
        "{notes:?}"
    );
    assert!(
        notes.contains(&("text:生成时间".into(), "date:2026-11-02 18:00".into())),
        "{notes:?}"
    );
    // Open now: the breakdown (responded), the formula and the next day's breakdown (open).
    assert!(notes.contains(&("text:待认领".into(), "number:2".into())), "{notes:?}");
    assert!(notes.contains(&("text:已回复".into(), "number:1".into())), "{notes:?}");
    assert!(
        notes.contains(&("text:优先级 P2".into(), "number:3".into())),
        "{notes:?}"
    );
    let details = book.worksheet_range("工单明细").unwrap();
    assert_eq!(details.height(), 1 + list.rows.len());
    assert_eq!(details.get((0, 0)), Some(&Data::String("工单号".into())));
    t.finish().await;
}
