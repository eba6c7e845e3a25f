//! The rows that go with every change to a ticket, written inside the caller's transaction: events in its
//! log, messages in the outbox, and SLA timers.

use sqlx::{Any, Transaction};

use crate::sla::Deadline;

use super::{EventKind, TicketId};

/// Appends an event to a ticket's log; `actor` is the responder, `None` for suqiu itself.
pub(crate) async fn record(
    tx: &mut Transaction<'_, Any>,
    ticket: TicketId,
    at: i64,
    kind: EventKind,
    actor: Option<i64>,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ticket_events (ticket_id, at, kind, actor, data) VALUES ($1, $2, $3, $4, $5)")
        .bind(ticket.0)
        .bind(at)
        .bind(kind.id())
        .bind(actor)
        .bind(data.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Where a message to a driver goes.
pub(crate) struct Recipient<'a> {
    pub channel: &'a str,
    pub chat: &'a str,
    pub reply_to: Option<&'a str>,
}

/// Queues a message to send: to a driver, or to the responders' or supervisors' chat (`to` is `None`).
pub(crate) async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    ticket: Option<TicketId>,
    audience: &str,
    to: Option<Recipient<'_>>,
    kind: &str,
    text: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (audience, channel, chat, reply_to, ticket_id, kind, text, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(audience)
    .bind(to.as_ref().map(|r| r.channel.to_owned()))
    .bind(to.as_ref().map(|r| r.chat.to_owned()))
    .bind(to.as_ref().and_then(|r| r.reply_to.map(str::to_owned)))
    .bind(ticket.map(|t| t.0))
    .bind(kind)
    .bind(text)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How [`write_timers`] treats timers already in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timers {
    /// Insert them, or reset ones that exist.
    Schedule,
    /// Move only those still pending: a timer that has fired does not fire again.
    MovePending,
}

/// Writes a ticket's warning and breach timers for one target.
pub(crate) async fn write_timers(
    tx: &mut Transaction<'_, Any>,
    ticket: TicketId,
    deadlines: [Deadline; 2],
    how: Timers,
) -> Result<(), sqlx::Error> {
    let sql = match how {
        Timers::Schedule => {
            "INSERT INTO deadlines (ticket_id, target, stage, due_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (ticket_id, target, stage) DO UPDATE SET due_at = excluded.due_at"
        }
        Timers::MovePending => "UPDATE deadlines SET due_at = $4 WHERE ticket_id = $1 AND target = $2 AND stage = $3",
    };
    for d in deadlines {
        sqlx::query(sql)
            .bind(ticket.0)
            .bind(d.target.id())
            .bind(d.stage.id())
            .bind(d.due_at)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The first 60 characters of a message, for alerts.
pub(crate) fn preview(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(60).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}
