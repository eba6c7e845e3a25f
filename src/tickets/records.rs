//! The rows that go with every change to a ticket, written inside the caller's transaction: events in its
//! log, messages in the outbox, and SLA timers.

use sqlx::{Any, Transaction};

use crate::sla::Deadline;
use crate::store::{values, ROWS};

use super::{EventKind, TicketId};

/// Appends events to tickets' logs, in order; `actor` is the responder, `None` for suqiu itself.
pub(crate) async fn record_all(
    tx: &mut Transaction<'_, Any>,
    at: i64,
    actor: Option<i64>,
    events: &[(TicketId, EventKind, serde_json::Value)],
) -> Result<(), sqlx::Error> {
    for events in events.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO ticket_events (ticket_id, at, kind, actor, data) VALUES {}",
            values(events.len(), 5)
        );
        let mut query = sqlx::query(&sql);
        for (ticket, kind, data) in events {
            query = query
                .bind(ticket.0)
                .bind(at)
                .bind(kind.id())
                .bind(actor)
                .bind(data.to_string());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Appends one event to a ticket's log.
pub(crate) async fn record(
    tx: &mut Transaction<'_, Any>,
    ticket: TicketId,
    at: i64,
    kind: EventKind,
    actor: Option<i64>,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    record_all(tx, at, actor, &[(ticket, kind, data)]).await
}

/// Where a message to a driver goes.
pub(crate) struct Recipient<'a> {
    pub channel: &'a str,
    pub chat: &'a str,
    pub reply_to: Option<&'a str>,
}

/// A message to send: to a driver, or to the responders' or supervisors' chat (`to` is `None`).
pub(crate) struct Outgoing<'a> {
    pub ticket: Option<TicketId>,
    pub audience: &'a str,
    pub to: Option<Recipient<'a>>,
    pub kind: &'a str,
    pub text: &'a str,
}

/// Queues messages to send.
pub(crate) async fn enqueue(
    tx: &mut Transaction<'_, Any>,
    now: i64,
    messages: &[Outgoing<'_>],
) -> Result<(), sqlx::Error> {
    for messages in messages.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO outbox (audience, channel, chat, reply_to, ticket_id, kind, text, created_at, \
             next_attempt_at) VALUES {}",
            values(messages.len(), 9)
        );
        let mut query = sqlx::query(&sql);
        for m in messages {
            query = query
                .bind(m.audience)
                .bind(m.to.as_ref().map(|r| r.channel.to_owned()))
                .bind(m.to.as_ref().map(|r| r.chat.to_owned()))
                .bind(m.to.as_ref().and_then(|r| r.reply_to.map(str::to_owned)))
                .bind(m.ticket.map(|t| t.0))
                .bind(m.kind)
                .bind(m.text)
                .bind(now)
                .bind(now);
        }
        query.execute(&mut **tx).await?;
    }
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

/// Writes tickets' timers.
pub(crate) async fn write_timers(
    tx: &mut Transaction<'_, Any>,
    timers: &[(TicketId, Deadline)],
    how: Timers,
) -> Result<(), sqlx::Error> {
    match how {
        Timers::Schedule => {
            for timers in timers.chunks(ROWS) {
                let sql = format!(
                    "INSERT INTO deadlines (ticket_id, target, stage, due_at) VALUES {} \
                     ON CONFLICT (ticket_id, target, stage) DO UPDATE SET due_at = excluded.due_at",
                    values(timers.len(), 4)
                );
                let mut query = sqlx::query(&sql);
                for (ticket, d) in timers {
                    query = query
                        .bind(ticket.0)
                        .bind(d.target.id())
                        .bind(d.stage.id())
                        .bind(d.due_at);
                }
                query.execute(&mut **tx).await?;
            }
        }
        Timers::MovePending => {
            for (ticket, d) in timers {
                sqlx::query("UPDATE deadlines SET due_at = $4 WHERE ticket_id = $1 AND target = $2 AND stage = $3")
                    .bind(ticket.0)
                    .bind(d.target.id())
                    .bind(d.stage.id())
                    .bind(d.due_at)
                    .execute(&mut **tx)
                    .await?;
            }
        }
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
