//! The pages: the overview, the queue, a ticket, and the actions on a ticket.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::charts::{self, Chart};
use super::error::{page, PageError};
use super::session::Member;
use super::DashState;
use crate::auth::{self, Role};
use crate::classify::{Category, Priority};
use crate::reports::{self, activity, Durations, GroupBy, Period, Report};
use crate::telegram::cards::{category_name, status_name};
use crate::tickets::desk::{self, Filter, Order, TicketDetail, TicketSummary};
use crate::tickets::state::Action;
use crate::tickets::{ResponderId, Status, TicketId};

const DAY_MS: i64 = 24 * 3_600_000;

/// What every page shows around its content: who is logged in, and the token for its forms.
pub struct Frame {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    pub supervisor: bool,
}

impl Frame {
    pub(super) fn of(member: &Member) -> Frame {
        let responder = &member.0.responder;
        Frame {
            name: responder.name.clone(),
            role: match responder.role {
                Role::Responder => "干事",
                Role::Supervisor => "主管",
                Role::Admin => "管理员",
            },
            csrf: member.0.csrf.clone(),
            supervisor: responder.role.includes(Role::Supervisor),
        }
    }
}

/// A ticket as a row of the queue.
pub struct Row {
    pub id: i64,
    pub priority: String,
    pub category: String,
    pub status: String,
    pub open: bool,
    pub driver: String,
    pub chat: String,
    pub assignee: String,
    pub opened: String,
    pub due: String,
    pub overdue: bool,
}

impl DashState {
    pub(super) fn local(&self, rfc3339: &str) -> String {
        rfc3339
            .parse::<jiff::Timestamp>()
            .map(|t| {
                t.to_zoned_datetime(self.time_zone.clone())
                    .strftime("%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    }

    fn row(&self, t: &TicketSummary, now: i64) -> Row {
        let due_ms = t.next_due.as_deref().and_then(|d| d.parse::<jiff::Timestamp>().ok());
        Row {
            id: t.id.0,
            priority: t.priority.clone(),
            category: category_name(self.classifier.rules(), &t.category).to_owned(),
            status: status_name(&t.status).to_owned(),
            open: t.status == "open",
            driver: t.driver_name.clone().unwrap_or_else(|| t.driver.clone()),
            chat: t.chat.clone(),
            assignee: t.assignee_name.clone().unwrap_or_default(),
            opened: self.local(&t.opened_at),
            due: t.next_due.as_deref().map(|d| self.local(d)).unwrap_or_default(),
            overdue: due_ms.is_some_and(|d| d.as_millisecond() < now),
        }
    }
}

// ---- overview ----

pub struct Figure {
    pub label: &'static str,
    pub median: String,
    pub p90: String,
    pub count: usize,
}

fn figure(label: &'static str, d: &Durations) -> Figure {
    let minutes = |s: Option<f64>| s.map(|s| format!("{:.1} 分钟", s / 60.0)).unwrap_or_else(|| "—".into());
    Figure {
        label,
        median: minutes(d.median_seconds),
        p90: minutes(d.p90_seconds),
        count: d.count,
    }
}

fn percent(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_else(|| "—".into())
}

/// A share of a whole, for a bar drawn by CSS width.
pub struct Share {
    pub label: String,
    pub count: i64,
    pub percent: u32,
}

fn shares(items: impl IntoIterator<Item = (String, i64)>) -> Vec<Share> {
    let items: Vec<(String, i64)> = items.into_iter().collect();
    let total: i64 = items.iter().map(|(_, n)| n).sum();
    items
        .into_iter()
        .map(|(label, count)| Share {
            label,
            count,
            percent: match total {
                0 => 0,
                total => (count * 100 / total) as u32,
            },
        })
        .collect()
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    frame: Frame,
    days: i64,
    report: Report,
    today: i64,
    /// Tickets in a deadline's warning window, not yet past it.
    warned: usize,
    figures: Vec<Figure>,
    first_response_rate: String,
    resolution_rate: String,
    open_by_category: Vec<Share>,
    by_category: Vec<Share>,
    rating: String,
    rated: u32,
    ratings: Vec<Share>,
    at_risk: Vec<Row>,
    /// SVGs drawn by charts-rs from numbers and fixed labels.
    /// Daily volume by category, daily response times, the heat map: the ones with something to show.
    charts: Vec<Chart>,
}

#[derive(Deserialize)]
pub struct OverviewQuery {
    days: Option<i64>,
}

pub async fn overview(
    State(state): State<DashState>,
    member: Member,
    Query(query): Query<OverviewQuery>,
) -> Result<Response, PageError> {
    let now = state.clock.now_ms();
    let days = query.days.unwrap_or(7).clamp(1, 366);
    let period = Period {
        from: now - days * DAY_MS,
        // The period ends after this millisecond, so that a ticket opened just now counts.
        to: now + 1,
        group_by: GroupBy::Category,
        time_zone: state.time_zone.clone(),
    };
    let db = state.desk.db();
    let report = reports::response_times(db, &period, now).await?;
    let by_day = reports::response_times(
        db,
        &Period {
            group_by: GroupBy::Day,
            ..period.clone()
        },
        now,
    )
    .await?;
    let activity = activity::activity(db, &period).await?;
    let today = activity::opened_today(db, now, &state.time_zone).await?;
    let name = |category: &str| category_name(state.classifier.rules(), category).to_owned();
    let charts: Vec<Chart> = [
        charts::volume(&activity, name),
        charts::response_times(&by_day),
        charts::heat_map(&activity),
    ]
    .into_iter()
    .filter(|chart| !chart.as_ref().is_ok_and(Chart::is_empty))
    .collect::<Result<_, _>>()
    .map_err(PageError::Internal)?;

    let figures = vec![
        figure("认领", &report.total.to_claim),
        figure("首次回复", &report.total.to_first_response),
        figure("办结", &report.total.to_resolution),
    ];
    let by_category = shares(report.groups.iter().map(|g| (name(&g.key), g.tickets as i64)));
    let open_by_category = shares(report.backlog.by_category.iter().map(|(c, n)| (name(c), *n)));
    let ratings = &activity.ratings;
    let rated = ratings.count;
    let rating = ratings
        .average
        .map(|a| format!("{a:.1} / 5"))
        .unwrap_or_else(|| "—".into());
    let ratings = shares(
        (1..=5)
            .rev()
            .map(|score| ("★".repeat(score), i64::from(ratings.by_score[score - 1]))),
    );
    let at_risk: Vec<Row> = desk::list(
        db,
        &Filter {
            at_risk: Some(now),
            order: Order::Deadline,
            limit: Some(200),
            ..Filter::default()
        },
    )
    .await?
    .iter()
    .map(|t| state.row(t, now))
    .collect();
    let warned = at_risk.iter().filter(|r| !r.overdue).count();
    page(OverviewPage {
        frame: Frame::of(&member),
        days,
        today,
        warned,
        first_response_rate: percent(report.total.first_response_sla.rate),
        resolution_rate: percent(report.total.resolution_sla.rate),
        figures,
        open_by_category,
        by_category,
        rating,
        rated,
        ratings,
        at_risk,
        report,
        charts,
    })
}

// ---- queue ----

/// An option of a filter's list.
pub struct Choice {
    pub value: String,
    pub name: String,
    pub selected: bool,
}

pub(super) fn choices<V: Into<String>>(options: impl IntoIterator<Item = (V, String)>, chosen: &str) -> Vec<Choice> {
    options
        .into_iter()
        .map(|(value, name)| {
            let value = value.into();
            Choice {
                selected: value == chosen.trim(),
                value,
                name,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    frame: Frame,
    rows: Vec<Row>,
    statuses: Vec<Choice>,
    categories: Vec<Choice>,
    priorities: Vec<Choice>,
    responders: Vec<Choice>,
    orders: Vec<Choice>,
    chat: String,
    mine: bool,
}

#[derive(Deserialize, Default)]
pub struct QueueQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    chat: String,
    /// A responder's id.
    #[serde(default)]
    responder: String,
    #[serde(default)]
    order: String,
    #[serde(default)]
    mine: Option<String>,
}

/// An optional filter value: empty means any; anything else must parse.
pub(super) fn chosen<T: std::str::FromStr>(what: &str, value: &str) -> Result<Option<T>, PageError> {
    match value.trim() {
        "" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| PageError::BadRequest(format!("{what} “{v}” 不存在"))),
    }
}

pub async fn queue(
    State(state): State<DashState>,
    member: Member,
    Query(query): Query<QueueQuery>,
) -> Result<Response, PageError> {
    let now = state.clock.now_ms();
    let mine = query.mine.is_some();
    let responder = match mine {
        true => Some(member.0.responder.id),
        false => chosen::<i64>("干事", &query.responder)?.map(ResponderId),
    };
    let filter = Filter {
        status: chosen::<Status>("状态", &query.status)?,
        category: chosen::<Category>("类别", &query.category)?,
        priority: chosen::<Priority>("优先级", &query.priority)?,
        chat: Some(query.chat.trim().to_owned()).filter(|c| !c.is_empty()),
        assignee: responder,
        order: chosen::<Order>("排序", &query.order)?.unwrap_or_default(),
        limit: Some(200),
        ..Filter::default()
    };
    let rows = desk::list(state.desk.db(), &filter)
        .await?
        .iter()
        .map(|t| state.row(t, now))
        .collect();
    let statuses = ["open", "claimed", "responded", "resolved", "closed"].map(|s| (s, status_name(s).to_owned()));
    let priorities = ["P1", "P2", "P3"].map(|p| (p, p.to_owned()));
    page(QueuePage {
        frame: Frame::of(&member),
        rows,
        statuses: choices(statuses, &query.status),
        categories: choices(category_names(&state), &query.category),
        priorities: choices(priorities, &query.priority),
        responders: choices(
            auth::team(state.desk.db())
                .await?
                .into_iter()
                .map(|r| (r.id.0.to_string(), r.name)),
            &query.responder,
        ),
        orders: choices(
            [("deadline", "时限最近".to_owned()), ("newest", "最新开单".to_owned())],
            &query.order,
        ),
        chat: query.chat,
        mine,
    })
}

pub(super) fn category_names(state: &DashState) -> Vec<(&'static str, String)> {
    Category::ALL
        .iter()
        .map(|c| (c.id(), category_name(state.classifier.rules(), c.id()).to_owned()))
        .collect()
}

// ---- a ticket ----

pub struct Line {
    pub at: String,
    pub who: String,
    pub text: String,
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    frame: Frame,
    ticket: Row,
    messages: Vec<Line>,
    events: Vec<Line>,
    evidence: String,
    categories: Vec<(&'static str, String)>,
    similar: Vec<Row>,
}

pub async fn ticket(
    State(state): State<DashState>,
    member: Member,
    Path(id): Path<i64>,
) -> Result<Response, PageError> {
    let now = state.clock.now_ms();
    let TicketDetail {
        ticket,
        messages,
        events,
    } = desk::detail(state.desk.db(), TicketId(id)).await?;
    let driver = ticket.driver_name.clone().unwrap_or_else(|| ticket.driver.clone());
    let messages = messages
        .iter()
        .map(|m| Line {
            at: state.local(&m.sent_at),
            who: driver.clone(),
            text: m.text.clone(),
        })
        .collect();
    let events = events
        .iter()
        .map(|e| Line {
            at: state.local(&e.at),
            who: e.actor.map(|a| format!("#{}", a.0)).unwrap_or_default(),
            text: match e.data.get("text").and_then(|t| t.as_str()) {
                Some(text) => format!("{}：{text}", e.kind),
                None => e.kind.clone(),
            },
        })
        .collect();
    let evidence = desk::classification(state.desk.db(), TicketId(id))
        .await?
        .unwrap_or_default();
    let categories = category_names(&state);
    // Similar past cases, with how far each got; a search that fails leaves the list empty, not the page.
    let similar = match state.search.similar(TicketId(id), 5).await {
        Ok(cases) => cases,
        Err(e) => {
            tracing::warn!(ticket = id, error = %e, "dashboard: similar cases unavailable");
            Vec::new()
        }
    };
    let mut similar_rows = Vec::new();
    for case in similar {
        if let Ok(t) = desk::summary_of(state.desk.db(), case.ticket).await {
            similar_rows.push(state.row(&t, now));
        }
    }
    page(TicketPage {
        frame: Frame::of(&member),
        ticket: state.row(&ticket, now),
        messages,
        events,
        evidence,
        categories,
        similar: similar_rows,
    })
}

#[derive(Deserialize)]
pub struct ActionForm {
    csrf: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    to: String,
}

pub async fn act(
    State(state): State<DashState>,
    member: Member,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, PageError> {
    member.check(&form.csrf)?;
    let text = Some(form.text.trim()).filter(|t| !t.is_empty());
    let action = match action.as_str() {
        "claim" => Action::Claim,
        "reply" => Action::Reply,
        "note" => Action::Note,
        "resolve" => Action::Resolve,
        "reopen" => Action::Reopen,
        "not-an-appeal" => Action::NotAnAppeal,
        "reclassify" => Action::Reclassify {
            category: chosen::<Category>("类别", &form.category)?
                .ok_or_else(|| PageError::BadRequest("请选择类别".into()))?,
        },
        "transfer" => Action::Transfer {
            to: form
                .to
                .trim()
                .parse()
                .map(ResponderId)
                .map_err(|_| PageError::BadRequest(format!("“{}”不是干事编号", form.to.trim())))?,
        },
        other => return Err(PageError::NotFound(format!("没有“{other}”这个操作"))),
    };
    if matches!(action, Action::Reply | Action::Note) && text.is_none() {
        return Err(PageError::BadRequest("请填写内容".into()));
    }
    let actor = member.0.responder.actor();
    let now = state.clock.now_ms();
    state.desk.act(now, TicketId(id), actor, action, text).await?;
    tracing::info!(
        ticket = id,
        action = action.name(),
        member = member.0.responder.id.0,
        "dashboard: acted"
    );
    Ok(Redirect::to(&format!("/tickets/{id}")).into_response())
}

// ---- responders (supervisors) ----

pub struct Load {
    pub name: String,
    pub tickets: usize,
    pub first_response: String,
    pub attainment: String,
    pub resolution_attainment: String,
    /// Unresolved tickets held now.
    pub open: i64,
}

#[derive(Template)]
#[template(path = "responders.html")]
struct RespondersPage {
    frame: Frame,
    days: i64,
    loads: Vec<Load>,
}

pub async fn responders(
    State(state): State<DashState>,
    member: Member,
    Query(query): Query<OverviewQuery>,
) -> Result<Response, PageError> {
    member.require(Role::Supervisor, "只有主管能看干事的工作量。")?;
    let now = state.clock.now_ms();
    let days = query.days.unwrap_or(7).clamp(1, 366);
    let period = Period {
        from: now - days * DAY_MS,
        // The period ends after this millisecond, so that a ticket opened just now counts.
        to: now + 1,
        group_by: GroupBy::Responder,
        time_zone: state.time_zone.clone(),
    };
    let report = reports::response_times(state.desk.db(), &period, now).await?;
    let mut open = reports::open_load(state.desk.db()).await?;
    let mut loads: Vec<Load> = report
        .groups
        .iter()
        .map(|g| Load {
            name: g.key.clone(),
            tickets: g.tickets,
            first_response: figure("", &g.to_first_response).median,
            attainment: percent(g.first_response_sla.rate),
            resolution_attainment: percent(g.resolution_sla.rate),
            open: open.remove(&g.key).unwrap_or(0),
        })
        .collect();
    // Who holds tickets opened before the period.
    loads.extend(open.into_iter().map(|(name, open)| Load {
        name,
        tickets: 0,
        first_response: percent(None),
        attainment: percent(None),
        resolution_attainment: percent(None),
        open,
    }));
    loads.sort_by(|a, b| (a.name == "unassigned", &a.name).cmp(&(b.name == "unassigned", &b.name)));
    for load in &mut loads {
        if load.name == "unassigned" {
            load.name = "（未分配）".to_owned();
        }
    }
    page(RespondersPage {
        frame: Frame::of(&member),
        days,
        loads,
    })
}

// ---- exports (supervisors) ----

#[derive(Deserialize)]
pub struct ExportQuery {
    days: Option<i64>,
}

/// `/exports/tickets.xlsx`, `/exports/report.csv`, …: the period's tickets, or its response-time report.
pub async fn export(
    State(state): State<DashState>,
    member: Member,
    Path(file): Path<String>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, PageError> {
    use crate::reports::export::{self, Format, Locale, Selection};
    member.require(Role::Supervisor, "只有主管能导出报表。")?;
    let (what, format) = file
        .rsplit_once('.')
        .and_then(|(what, ext)| Some((what, ext.parse::<Format>().ok()?)))
        .ok_or_else(|| PageError::NotFound(format!("没有“{file}”这个导出")))?;
    let now = state.clock.now_ms();
    let days = query.days.unwrap_or(7).clamp(1, 366);
    let (from, to) = (now - days * DAY_MS, now + 1);
    let locale = Locale {
        time_zone: &state.time_zone,
        rules: state.classifier.rules(),
    };
    let db = state.desk.db();
    let list = export::ticket_list(db, Selection::Opened { from, to }, now).await?;
    let made = match what {
        "tickets" => export::tickets(&list, locale, format),
        "report" => {
            let period = Period {
                from,
                to,
                group_by: GroupBy::Category,
                time_zone: state.time_zone.clone(),
            };
            let report = reports::response_times(db, &period, now).await?;
            export::response_times(&report, &period, Some(&list), locale, format)
        }
        _ => return Err(PageError::NotFound(format!("没有“{file}”这个导出"))),
    };
    let file = made.map_err(|e| PageError::Internal(format!("export: {e}")))?;
    tracing::info!(
        member = member.0.responder.id.0,
        export = what,
        days,
        "dashboard: exported"
    );
    use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
    Ok((
        [
            (CONTENT_TYPE, file.content_type.to_owned()),
            (CONTENT_DISPOSITION, file.content_disposition()),
        ],
        file.bytes,
    )
        .into_response())
}
