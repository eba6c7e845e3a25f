//! The responders' desk: the queue, a ticket's timeline, and the actions that work a ticket.
//!
//! Every action runs [`state::transition`] on the ticket as locked inside one transaction, then writes the
//! new state, the event, the deadline changes and any message to the driver together.

use std::sync::Arc;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use tokio::sync::Notify;

use crate::classify::{Category, Priority};
use crate::clock::rfc3339;
use crate::sla::{SlaConfig, Target};
use crate::store::{first_time, Db};
use crate::Signals;

use super::records::{enqueue, record, write_timers, Outgoing, Recipient, Timers};
use super::state::{self, Action, Actor, Refusal, State};
use super::{EventKind, ResponderId, Status, TicketId};

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("ticket {0} not found")]
    NotFound(TicketId),
    #[error("cannot {action} ticket {ticket}: {refusal}")]
    Refused {
        ticket: TicketId,
        action: &'static str,
        refusal: Refusal,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// One ticket as the queue shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TicketSummary {
    pub id: TicketId,
    pub channel: String,
    pub chat: String,
    pub driver: String,
    pub driver_name: Option<String>,
    pub category: String,
    pub priority: String,
    pub status: String,
    pub assignee: Option<ResponderId>,
    pub assignee_name: Option<String>,
    pub opened_at: String,
    pub claimed_at: Option<String>,
    pub first_response_at: Option<String>,
    pub resolved_at: Option<String>,
    pub last_message_at: String,
    pub first_response_due: Option<String>,
    pub resolution_due: Option<String>,
    /// The deadline that comes next: the first response until there is one, then the resolution.
    pub next_due: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketMessage {
    pub id: i64,
    pub message_id: String,
    pub sender: String,
    pub text: String,
    pub sent_at: String,
    pub label: String,
    pub disposition: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketEvent {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub actor: Option<ResponderId>,
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketDetail {
    #[serde(flatten)]
    pub ticket: TicketSummary,
    pub messages: Vec<TicketMessage>,
    pub events: Vec<TicketEvent>,
}

/// Which tickets to list. Without a status, the unfinished ones.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub status: Option<Status>,
    pub category: Option<Category>,
    pub priority: Option<Priority>,
    pub chat: Option<String>,
    /// Only the tickets this responder holds.
    pub assignee: Option<ResponderId>,
    /// Only tickets whose next deadline is before this (milliseconds since the epoch).
    pub due_before: Option<i64>,
    /// Only tickets at risk as of this time (milliseconds since the epoch): a deadline's warning has fired and
    /// its breach has not yet, or a deadline is already past.
    pub at_risk: Option<i64>,
    pub order: Order,
    pub limit: Option<u32>,
}

/// The order of the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// Most urgent first, then the nearest deadline.
    #[default]
    Urgency,
    /// The nearest deadline first, whatever the priority; tickets without one last.
    Deadline,
    /// The newest first.
    Newest,
}

impl std::str::FromStr for Order {
    type Err = String;

    fn from_str(s: &str) -> Result<Order, String> {
        match s {
            "urgency" => Ok(Order::Urgency),
            "deadline" => Ok(Order::Deadline),
            "newest" => Ok(Order::Newest),
            other => Err(format!("order {other:?} is not one of urgency, deadline, newest")),
        }
    }
}

impl Order {
    fn sql(self) -> String {
        match self {
            Order::Urgency => format!("t.priority, {NEXT_DUE}, t.id"),
            // NULLs sort first in SQLite and last in PostgreSQL: say where they go.
            Order::Deadline => format!("CASE WHEN {NEXT_DUE} IS NULL THEN 1 ELSE 0 END, {NEXT_DUE}, t.id"),
            Order::Newest => "t.opened_at DESC, t.id DESC".to_owned(),
        }
    }
}

const NEXT_DUE: &str = "COALESCE(CASE WHEN t.first_response_at IS NULL THEN t.first_response_due END, \
                        CASE WHEN t.resolved_at IS NULL THEN t.resolution_due END)";

fn summary_columns() -> String {
    format!(
        "t.id, t.channel, t.chat, t.driver, t.driver_name, t.category, t.priority, t.status, t.assignee, \
         r.name AS assignee_name, t.opened_at, t.claimed_at, t.first_response_at, t.resolved_at, \
         t.last_message_at, t.first_response_due, t.resolution_due, {NEXT_DUE} AS next_due"
    )
}

fn summary(row: &AnyRow) -> Result<TicketSummary, sqlx::Error> {
    let time =
        |col: &str| -> Result<Option<String>, sqlx::Error> { Ok(row.try_get::<Option<i64>, _>(col)?.map(rfc3339)) };
    Ok(TicketSummary {
        id: TicketId(row.try_get("id")?),
        channel: row.try_get("channel")?,
        chat: row.try_get("chat")?,
        driver: row.try_get("driver")?,
        driver_name: row.try_get("driver_name")?,
        category: row.try_get("category")?,
        priority: row.try_get("priority")?,
        status: row.try_get("status")?,
        assignee: row.try_get::<Option<i64>, _>("assignee")?.map(ResponderId),
        assignee_name: row.try_get("assignee_name")?,
        opened_at: rfc3339(row.try_get("opened_at")?),
        claimed_at: time("claimed_at")?,
        first_response_at: time("first_response_at")?,
        resolved_at: time("resolved_at")?,
        last_message_at: rfc3339(row.try_get("last_message_at")?),
        first_response_due: time("first_response_due")?,
        resolution_due: time("resolution_due")?,
        next_due: time("next_due")?,
    })
}

/// The queue, in the filter's order.
pub async fn list(db: &Db, filter: &Filter) -> Result<Vec<TicketSummary>, sqlx::Error> {
    enum Bind {
        Text(String),
        Int(i64),
    }
    let mut conditions = vec![match filter.status {
        Some(_) => String::new(),
        None => "t.status IN ('open', 'claimed', 'responded')".to_owned(),
    }];
    let mut binds = Vec::new();
    let mut bind = |condition: &str, value: Bind| {
        binds.push(value);
        conditions.push(condition.replace('?', &format!("${}", binds.len())));
    };
    if let Some(status) = filter.status {
        bind("t.status = ?", Bind::Text(status.id().into()));
    }
    if let Some(category) = filter.category {
        bind("t.category = ?", Bind::Text(category.id().into()));
    }
    if let Some(priority) = filter.priority {
        bind("t.priority = ?", Bind::Text(priority.to_string()));
    }
    if let Some(chat) = &filter.chat {
        bind("t.chat = ?", Bind::Text(chat.clone()));
    }
    if let Some(assignee) = filter.assignee {
        bind("t.assignee = ?", Bind::Int(assignee.0));
    }
    if let Some(before) = filter.due_before {
        bind(&format!("{NEXT_DUE} < ?"), Bind::Int(before));
    }
    if let Some(now) = filter.at_risk {
        // Firing a timer deletes its row: a breach still pending without its warning is in the warning window.
        bind(
            &format!(
                "({NEXT_DUE} <= ? OR EXISTS (SELECT 1 FROM deadlines b WHERE b.ticket_id = t.id \
                 AND b.stage = 'breach' AND NOT EXISTS (SELECT 1 FROM deadlines w \
                 WHERE w.ticket_id = b.ticket_id AND w.target = b.target AND w.stage = 'warning')))"
            ),
            Bind::Int(now),
        );
    }
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
    let sql = format!(
        "SELECT {} FROM tickets t LEFT JOIN responders r ON r.id = t.assignee WHERE {} \
         ORDER BY {} LIMIT {limit}",
        summary_columns(),
        conditions
            .into_iter()
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join(" AND "),
        filter.order.sql(),
    );
    let mut query = sqlx::query(&sql);
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s),
            Bind::Int(i) => query.bind(i),
        };
    }
    query.fetch_all(db.pool()).await?.iter().map(summary).collect()
}

/// What the classifier found in the message that opened ticket `id` (its evidence and entities), as indented
/// JSON for people to read.
pub async fn classification(db: &Db, id: TicketId) -> Result<Option<String>, sqlx::Error> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT classification FROM messages WHERE ticket_id = $1 ORDER BY id LIMIT 1")
            .bind(id.0)
            .fetch_optional(db.pool())
            .await?;
    Ok(stored.map(|json| {
        serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .map(|v| {
                let shown = serde_json::json!({ "evidence": v["evidence"], "entities": v["entities"] });
                serde_json::to_string_pretty(&shown).unwrap_or(json.clone())
            })
            .unwrap_or(json)
    }))
}

pub async fn summary_of(db: &Db, id: TicketId) -> Result<TicketSummary, DeskError> {
    let sql = format!(
        "SELECT {} FROM tickets t LEFT JOIN responders r ON r.id = t.assignee WHERE t.id = $1",
        summary_columns()
    );
    let row = sqlx::query(&sql).bind(id.0).fetch_optional(db.pool()).await?;
    row.as_ref().map(summary).transpose()?.ok_or(DeskError::NotFound(id))
}

/// A ticket with its messages and its event log, in order.
pub async fn detail(db: &Db, id: TicketId) -> Result<TicketDetail, DeskError> {
    let ticket = summary_of(db, id).await?;
    let messages = sqlx::query(
        "SELECT id, external_id, sender, text, sent_at, label, disposition FROM messages WHERE ticket_id = $1 ORDER BY id",
    )
    .bind(id.0)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|row| {
        Ok(TicketMessage {
            id: row.try_get("id")?,
            message_id: row.try_get("external_id")?,
            sender: row.try_get("sender")?,
            text: row.try_get("text")?,
            sent_at: rfc3339(row.try_get("sent_at")?),
            label: row.try_get("label")?,
            disposition: row.try_get("disposition")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let events = sqlx::query("SELECT id, at, kind, actor, data FROM ticket_events WHERE ticket_id = $1 ORDER BY id")
        .bind(id.0)
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|row| {
            let data: String = row.try_get("data")?;
            Ok(TicketEvent {
                id: row.try_get("id")?,
                at: rfc3339(row.try_get("at")?),
                kind: row.try_get("kind")?,
                actor: row.try_get::<Option<i64>, _>("actor")?.map(ResponderId),
                data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(TicketDetail {
        ticket,
        messages,
        events,
    })
}

/// Where responders' actions are carried out: the database, the SLA policies for the deadlines that actions
/// move, and the scheduler's wake-up for when they do. Cheap to clone.
#[derive(Clone)]
pub struct Desk {
    db: Db,
    sla: Arc<SlaConfig>,
    deadlines_changed: Arc<Notify>,
    outbox_changed: Arc<Notify>,
}

impl Desk {
    pub fn new(db: Db, sla: Arc<SlaConfig>, signals: Signals) -> Desk {
        Desk {
            db,
            sla,
            deadlines_changed: signals.deadlines_changed,
            outbox_changed: signals.outbox_changed,
        }
    }

    /// Wakes the outbox's sender: call after queueing messages outside the desk's own actions.
    pub fn outbox_changed(&self) {
        self.outbox_changed.notify_waiters();
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Does `action` to ticket `id` as `actor`; `text` is the reply or note. Returns the ticket afterwards.
    pub async fn act(
        &self,
        now: i64,
        id: TicketId,
        actor: Actor,
        action: Action,
        text: Option<&str>,
    ) -> Result<TicketSummary, DeskError> {
        let summary = self.act_once(None, now, id, actor, action, text).await?;
        Ok(summary.expect("an action without a key is never a repeat"))
    }

    /// [`Desk::act`] for a request its channel may deliver again: `key` names it, and a second delivery changes
    /// nothing and returns `None`.
    pub async fn act_once(
        &self,
        key: Option<&str>,
        now: i64,
        id: TicketId,
        actor: Actor,
        action: Action,
        text: Option<&str>,
    ) -> Result<Option<TicketSummary>, DeskError> {
        let mut tx = self.db.pool().begin().await?;
        if let Some(key) = key {
            if !first_time(&mut tx, key, now).await? {
                return Ok(None);
            }
        }
        let applied = apply(&mut tx, &self.sla, now, id, actor, action, text).await?;
        tx.commit().await?;
        if applied.timers_moved {
            self.deadlines_changed.notify_waiters();
        }
        self.outbox_changed.notify_waiters();
        summary_of(&self.db, id).await.map(Some)
    }
}

/// The outbox kind that asks for a ticket's card in the responders' chat to be redrawn; its text names the event.
pub const CARD_UPDATE: &str = "card";

/// What [`apply`] did.
pub(crate) struct Applied {
    pub state: State,
    /// Deadlines were set or moved (not only met): the scheduler may have a nearer one to wait for.
    pub timers_moved: bool,
}

/// [`Desk::act`] inside the caller's transaction; a refusal leaves the transaction for the caller to roll back.
pub(crate) async fn apply(
    tx: &mut Transaction<'_, Any>,
    sla: &SlaConfig,
    now: i64,
    id: TicketId,
    actor: Actor,
    action: Action,
    text: Option<&str>,
) -> Result<Applied, DeskError> {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    if matches!(action, Action::Reply | Action::Note) && text.is_none() {
        return Err(DeskError::Invalid(format!(
            "a {} needs a non-empty `text`",
            action.name()
        )));
    }
    // This no-op write locks the ticket (its row on PostgreSQL, the database on SQLite) until commit, so
    // concurrent actions on one ticket run one after another and each sees what the previous one left.
    let row = sqlx::query(
        "UPDATE tickets SET version = version + 1 WHERE id = $1 \
         RETURNING status, assignee, category, priority, first_response_at, opened_at, channel, chat",
    )
    .bind(id.0)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(DeskError::NotFound(id))?;
    let before = State {
        status: parse(row.try_get::<String, _>("status")?.parse::<Status>())?,
        assignee: row.try_get::<Option<i64>, _>("assignee")?.map(ResponderId),
        category: parse(row.try_get::<String, _>("category")?.parse::<Category>())?,
        priority: parse(row.try_get::<String, _>("priority")?.parse::<Priority>())?,
        responded: row.try_get::<Option<i64>, _>("first_response_at")?.is_some(),
    };
    let opened_at: i64 = row.try_get("opened_at")?;
    let change = state::transition(before, actor, action).map_err(|refusal| DeskError::Refused {
        ticket: id,
        action: action.name(),
        refusal,
    })?;
    let after = change.state;

    let finished = after.status.is_finished();
    let reopened = change.event == EventKind::Reopened;
    sqlx::query(
        "UPDATE tickets SET status = $1, assignee = $2, category = $3, priority = $4, \
         claimed_at = CASE WHEN $5 = 1 THEN $6 ELSE claimed_at END, \
         first_response_at = CASE WHEN $7 = 1 THEN $6 ELSE first_response_at END, \
         resolved_at = CASE WHEN $8 = 1 THEN $6 WHEN $9 = 1 THEN NULL ELSE resolved_at END \
         WHERE id = $10",
    )
    .bind(after.status.id())
    .bind(after.assignee.map(|r| r.0))
    .bind(after.category.id())
    .bind(after.priority.to_string())
    .bind(i64::from(before.assignee.is_none() && after.assignee.is_some()))
    .bind(now)
    .bind(i64::from(change.first_response))
    .bind(i64::from(finished))
    .bind(i64::from(reopened))
    .bind(id.0)
    .execute(&mut **tx)
    .await?;

    // Deadlines: met ones go, a reopened ticket gets new ones, a new category moves the pending ones.
    if change.first_response {
        delete_deadlines(tx, id, Some(Target::FirstResponse)).await?;
    }
    if finished {
        delete_deadlines(tx, id, None).await?;
    }
    let reclassified = change.event == EventKind::Reclassified && !finished;
    if reopened {
        let targets: &[Target] = if after.responded {
            &[Target::Resolution]
        } else {
            &[Target::FirstResponse, Target::Resolution]
        };
        for &target in targets {
            set_deadlines(tx, sla, id, after, target, now, Timers::Schedule).await?;
        }
    } else if reclassified {
        for target in [Target::FirstResponse, Target::Resolution] {
            set_deadlines(tx, sla, id, after, target, opened_at, Timers::MovePending).await?;
        }
    }

    let data = match action {
        Action::Reply | Action::Note => serde_json::json!({ "text": text }),
        Action::Transfer { to } => serde_json::json!({ "from": before.assignee, "to": to }),
        Action::Reclassify { category } => serde_json::json!({ "from": before.category.id(), "to": category.id() }),
        Action::NotAnAppeal => serde_json::json!({ "from": before.category.id(), "to": "none" }),
        Action::Escalate => serde_json::json!({ "from": before.priority, "to": after.priority }),
        _ => serde_json::json!({}),
    };
    record(tx, id, now, change.event, actor.responder().map(|r| r.0), data).await?;

    // The driver hears what the team does for them, where they wrote; the responders' card follows the ticket.
    let notice = match (action, change.event) {
        (Action::Reply, _) => text.map(|text| ("reply", text.to_owned())),
        (_, EventKind::Claimed) => {
            let name: String = sqlx::query_scalar("SELECT name FROM responders WHERE id = $1")
                .bind(after.assignee.map(|r| r.0))
                .fetch_optional(&mut **tx)
                .await?
                .unwrap_or_default();
            Some((
                "claimed",
                format!("您的诉求（工单 {id}）已由工会的{name}受理，我们会尽快联系您。"),
            ))
        }
        (_, EventKind::Resolved) => Some((
            "resolved",
            format!("您的诉求（工单 {id}）已办结。请为这次帮助打个分：1 分最差，5 分最好。"),
        )),
        _ => None,
    };
    let mut outgoing = Vec::with_capacity(2);
    let (channel, chat): (String, String) = (row.try_get("channel")?, row.try_get("chat")?);
    // The notice answers the driver's latest message.
    let last: Option<String> = match notice {
        Some(_) => sqlx::query_scalar(
            "SELECT external_id FROM messages WHERE ticket_id = $1 AND disposition <> 'chatter' ORDER BY id DESC LIMIT 1",
        )
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await?,
        None => None,
    };
    if let Some((kind, text)) = &notice {
        outgoing.push(Outgoing {
            ticket: Some(id),
            audience: "driver",
            to: Some(Recipient {
                channel: &channel,
                chat: &chat,
                reply_to: last.as_deref(),
            }),
            kind,
            text,
        });
    }
    if action != Action::Note {
        outgoing.push(Outgoing {
            ticket: Some(id),
            audience: "responders",
            to: None,
            kind: CARD_UPDATE,
            text: change.event.id(),
        });
    }
    enqueue(tx, now, &outgoing).await?;
    Ok(Applied {
        state: after,
        timers_moved: reopened || reclassified,
    })
}

/// Deletes the ticket's timers for `target`, or all of them.
async fn delete_deadlines(
    tx: &mut Transaction<'_, Any>,
    id: TicketId,
    target: Option<Target>,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM deadlines WHERE ticket_id = $1 AND ($2 IS NULL OR target = $2)")
        .bind(id.0)
        .bind(target.map(Target::id))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Sets the ticket's `target` timers counted from `from`, and the due time the queue shows.
async fn set_deadlines(
    tx: &mut Transaction<'_, Any>,
    sla: &SlaConfig,
    id: TicketId,
    state: State,
    target: Target,
    from: i64,
    how: Timers,
) -> Result<(), sqlx::Error> {
    let deadlines = sla.deadlines(state.category, state.priority, target, from);
    write_timers(tx, &deadlines.map(|d| (id, d)), how).await?;
    // A first response already given keeps the deadline it was measured against.
    if target == Target::FirstResponse && state.responded && how == Timers::MovePending {
        return Ok(());
    }
    let column = match target {
        Target::FirstResponse => "first_response_due",
        Target::Resolution => "resolution_due",
    };
    let [_, breach] = deadlines;
    sqlx::query(&format!("UPDATE tickets SET {column} = $1 WHERE id = $2"))
        .bind(breach.due_at)
        .bind(id.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

fn parse<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, DeskError> {
    r.map_err(|e| DeskError::Sql(sqlx::Error::Decode(e.to_string().into())))
}
