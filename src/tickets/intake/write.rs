//! A batch of messages inside the writer's transaction: store them, thread each onto its driver's open ticket
//! or open a new one, and answer what was done, built from what was written rather than read back.
//!
//! Every statement is a round trip to the database, and the writer makes them one after another, so the batch
//! is written a table at a time: one insert stores every message, one lookup finds the drivers' open tickets,
//! threading is decided in memory in the batch's order, and the events, timers, outgoing messages and links
//! that follow are one multi-row statement each. Only a new ticket is one statement of its own, for its id.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::classify::{Category, Label};
use crate::clock::rfc3339;
use crate::sla::{Deadline, Target};
use crate::store::{values, ROWS};
use crate::tickets::records::{enqueue, preview, record_all, write_timers, Outgoing, Recipient, Timers};
use crate::tickets::{EventKind, TicketId};

use super::{Disposition, InboundMessage, IntakeError, Job, Outcome, StoredMessage, TicketRef, Writer};

/// (channel, chat, an id within the chat: a driver or a message).
type Key<'a> = (&'a str, &'a str, &'a str);

/// A driver's unfinished ticket, as the batch sees it.
struct Open {
    ticket: TicketRef,
    channel: String,
    chat: String,
    driver: String,
    last_message_at: i64,
}

/// A new ticket's announcements.
struct Alert {
    ticket: TicketId,
    /// The index of its message in the batch.
    index: usize,
    /// The category's acknowledgement for the driver, with the ticket's number and promised time filled in.
    ack: String,
    /// The one-line alert for the responders.
    alert: String,
}

/// What the batch writes once its messages are threaded.
#[derive(Default)]
struct Writes {
    events: Vec<(TicketId, EventKind, serde_json::Value)>,
    timers: Vec<(TicketId, Deadline)>,
    /// New tickets to announce: to the driver and to the responders.
    alerts: Vec<Alert>,
    /// Tickets a message attached to, with their latest message time.
    touched: HashMap<TicketId, i64>,
    /// (message, ticket, disposition).
    links: Vec<(i64, TicketId, Disposition)>,
}

impl Writer {
    pub(super) async fn write_batch(
        &self,
        tx: &mut Transaction<'_, Any>,
        jobs: &[Job],
        now: i64,
    ) -> Result<Vec<Outcome>, IntakeError> {
        let classifications: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| serde_json::to_value(&j.classification).expect("a classification serializes"))
            .collect();
        let stored = insert_messages(tx, jobs, &classifications, now).await?;
        let mut open = open_tickets(tx, jobs, &stored).await?;
        let mut replied = replied_tickets(tx, jobs).await?;
        let window = self.settings.follow_up_window.as_millis() as i64;

        let mut writes = Writes::default();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for (index, (job, classification)) in jobs.iter().zip(classifications).enumerate() {
            let m = &job.message;
            let Some(id) = stored[index] else {
                // Delivered before, or earlier in this batch: answered once the batch's writes are in.
                outcomes.push(None);
                continue;
            };
            let sent_at = m.sent_at.map_or(now, |t| t.as_millisecond());
            let label = job.classification.label;
            let reply = m
                .reply_to
                .as_ref()
                .and_then(|r| replied.get(&(m.channel.clone(), m.chat.clone(), r.clone())));
            let reply = reply.copied();
            let ticket = match thread(&open, m, label, sent_at - window, reply) {
                Some(i) => {
                    let t = &mut open[i];
                    t.last_message_at = t.last_message_at.max(sent_at);
                    writes.touched.insert(t.ticket.id, t.last_message_at);
                    let data = serde_json::json!({ "message": id, "label": label.id(), "reply_to": m.reply_to });
                    writes.events.push((t.ticket.id, EventKind::Attached, data));
                    Some((t.ticket.clone(), Disposition::Attached))
                }
                None => match label {
                    Label::Appeal(category) => {
                        let t = self
                            .open(tx, &mut writes, index, id, job, category, (sent_at, now))
                            .await?;
                        open.push(t);
                        Some((open[open.len() - 1].ticket.clone(), Disposition::Opened))
                    }
                    Label::None => None,
                },
            };
            if let Some((ticket, disposition)) = &ticket {
                writes.links.push((id, ticket.id, *disposition));
                replied.insert((m.channel.clone(), m.chat.clone(), m.message_id.clone()), ticket.id);
            }
            let (ticket, disposition) = ticket.map_or((None, Disposition::Chatter), |(t, d)| (Some(t), d));
            outcomes.push(Some(Outcome {
                message: StoredMessage {
                    id,
                    channel: m.channel.clone(),
                    chat: m.chat.clone(),
                    message_id: m.message_id.clone(),
                    sender: m.sender.clone(),
                    sender_name: m.sender_name.clone(),
                    text: m.text.clone(),
                    sent_at: rfc3339(sent_at),
                    received_at: rfc3339(now),
                    reply_to: m.reply_to.clone(),
                },
                classification,
                disposition,
                ticket,
                duplicate: false,
            }));
        }
        self.flush(tx, jobs, writes, now).await?;

        let mut answers = Vec::with_capacity(jobs.len());
        for (job, outcome) in jobs.iter().zip(outcomes) {
            answers.push(match outcome {
                Some(outcome) => outcome,
                None => load_outcome(tx, &job.message).await?,
            });
        }
        Ok(answers)
    }

    /// A new ticket for appeal `message` (the batch's `index`-th), with its events, timers, the driver's
    /// acknowledgement and the responders' alert queued in `writes`.
    #[allow(clippy::too_many_arguments)]
    async fn open(
        &self,
        tx: &mut Transaction<'_, Any>,
        writes: &mut Writes,
        index: usize,
        message: i64,
        job: &Job,
        category: Category,
        (sent_at, now): (i64, i64),
    ) -> Result<Open, sqlx::Error> {
        let (m, c) = (&job.message, &job.classification);
        let sla = &self.settings.sla;
        let priority = c.priority.unwrap_or_else(|| category.default_priority());
        let [response, resolution] =
            [Target::FirstResponse, Target::Resolution].map(|t| sla.deadlines(category, priority, t, now));
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tickets (channel, chat, driver, driver_name, category, priority, status, opened_at, \
             last_message_at, first_response_due, resolution_due) \
             VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $9, $10) RETURNING id",
        )
        .bind(&m.channel)
        .bind(&m.chat)
        .bind(&m.sender)
        .bind(&m.sender_name)
        .bind(category.id())
        .bind(priority.to_string())
        .bind(now)
        .bind(sent_at)
        .bind(response[1].due_at)
        .bind(resolution[1].due_at)
        .fetch_one(&mut **tx)
        .await?;
        let ticket = TicketId(id);
        let classified = serde_json::json!({
            "message": message,
            "label": c.label.id(),
            "priority": priority.to_string(),
            "score": c.score,
            "evidence": c.evidence,
        });
        writes
            .events
            .push((ticket, EventKind::Created, serde_json::json!({ "message": message })));
        writes.events.push((ticket, EventKind::Classified, classified));
        writes
            .timers
            .extend(response.into_iter().chain(resolution).map(|d| (ticket, d)));
        let alert = format!(
            "新诉求 {ticket} [{priority} {}] {}：{}",
            category.id(),
            m.sender_name.as_deref().unwrap_or(&m.sender),
            preview(&m.text)
        );
        let ack = self
            .classifier
            .rules()
            .intent(category)
            .ack
            .replace("{ticket}", &ticket.to_string())
            .replace("{first_response}", &sla.promise(category, priority, now));
        writes.alerts.push(Alert {
            ticket,
            index,
            ack,
            alert,
        });
        Ok(Open {
            ticket: TicketRef {
                id: ticket,
                status: "open".into(),
                category: category.id().into(),
                priority: priority.to_string(),
            },
            channel: m.channel.clone(),
            chat: m.chat.clone(),
            driver: m.sender.clone(),
            last_message_at: sent_at,
        })
    }

    /// Writes what threading decided: events, timers, outgoing messages, attached tickets and message links.
    async fn flush(
        &self,
        tx: &mut Transaction<'_, Any>,
        jobs: &[Job],
        writes: Writes,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        if !writes.events.is_empty() {
            record_all(tx, now, None, &writes.events).await?;
        }
        if !writes.timers.is_empty() {
            write_timers(tx, &writes.timers, Timers::Schedule).await?;
        }
        let mut outgoing = Vec::with_capacity(writes.alerts.len() * 2);
        for Alert {
            ticket,
            index,
            ack,
            alert,
        } in &writes.alerts
        {
            let m = &jobs[*index].message;
            // The bot's acknowledgement: it tells the driver their appeal is in, and is not a first response.
            outgoing.push(Outgoing {
                ticket: Some(*ticket),
                audience: "driver",
                to: Some(Recipient {
                    channel: &m.channel,
                    chat: &m.chat,
                    reply_to: Some(&m.message_id),
                }),
                kind: "ack",
                text: ack,
            });
            outgoing.push(Outgoing {
                ticket: Some(*ticket),
                audience: "responders",
                to: None,
                kind: "new_ticket",
                text: alert,
            });
        }
        if !outgoing.is_empty() {
            enqueue(tx, now, &outgoing).await?;
        }
        let touched: Vec<_> = writes.touched.into_iter().collect();
        for touched in touched.chunks(ROWS) {
            let sql = format!(
                "WITH v (id, at) AS (VALUES {}) \
                 UPDATE tickets SET version = version + 1, \
                 last_message_at = CASE WHEN last_message_at > v.at THEN last_message_at ELSE v.at END \
                 FROM v WHERE tickets.id = v.id",
                values(touched.len(), 2)
            );
            let mut query = sqlx::query(&sql);
            for (ticket, at) in touched {
                query = query.bind(ticket.0).bind(*at);
            }
            query.execute(&mut **tx).await?;
        }
        for links in writes.links.chunks(ROWS) {
            let sql = format!(
                "WITH v (id, ticket, disposition) AS (VALUES {}) \
                 UPDATE messages SET ticket_id = v.ticket, disposition = v.disposition \
                 FROM v WHERE messages.id = v.id",
                values(links.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (message, ticket, disposition) in links {
                query = query.bind(*message).bind(ticket.0).bind(disposition.id());
            }
            query.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// The ticket a message threads onto, as an index into `open`: the ticket of the message it replies to,
/// else the one the driver last wrote to since `window_start`, else one of the same category (the same appeal
/// repeated). Only the driver's own unfinished tickets in the same chat qualify.
fn thread(
    open: &[Open],
    m: &InboundMessage,
    label: Label,
    window_start: i64,
    reply: Option<TicketId>,
) -> Option<usize> {
    let mine = || {
        open.iter()
            .enumerate()
            .filter(|(_, t)| t.driver == m.sender && t.chat == m.chat && t.channel == m.channel)
    };
    let latest = |(_, t): &(usize, &Open)| (t.last_message_at, t.ticket.id.0);
    if let Some(reply) = reply {
        if let Some((i, _)) = mine().find(|(_, t)| t.ticket.id == reply) {
            return Some(i);
        }
    }
    if let Some((i, _)) = mine()
        .filter(|(_, t)| t.last_message_at >= window_start)
        .max_by_key(latest)
    {
        return Some(i);
    }
    let Label::Appeal(category) = label else { return None };
    mine()
        .filter(|(_, t)| t.ticket.category == category.id())
        .max_by_key(latest)
        .map(|(i, _)| i)
}

/// Inserts the batch's messages; the id of each one stored, `None` for one already there.
async fn insert_messages(
    tx: &mut Transaction<'_, Any>,
    jobs: &[Job],
    classifications: &[serde_json::Value],
    now: i64,
) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let mut ids: HashMap<(String, String, String), i64> = HashMap::with_capacity(jobs.len());
    let rows: Vec<_> = jobs.iter().zip(classifications).collect();
    for rows in rows.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO messages (channel, chat, external_id, sender, sender_name, text, sent_at, reply_to, \
             received_at, label, priority, score, classification, disposition) VALUES {} \
             ON CONFLICT (channel, chat, external_id) DO NOTHING RETURNING id, channel, chat, external_id",
            values(rows.len(), 14)
        );
        let mut query = sqlx::query(&sql);
        for (job, classification) in rows {
            let (m, c) = (&job.message, &job.classification);
            query = query
                .bind(&m.channel)
                .bind(&m.chat)
                .bind(&m.message_id)
                .bind(&m.sender)
                .bind(&m.sender_name)
                .bind(&m.text)
                .bind(m.sent_at.map_or(now, |t| t.as_millisecond()))
                .bind(&m.reply_to)
                .bind(now)
                .bind(c.label.id())
                .bind(c.priority.map(|p| p.to_string()))
                .bind(f64::from(c.score))
                .bind(classification.to_string())
                .bind(Disposition::Chatter.id());
        }
        for row in query.fetch_all(&mut **tx).await? {
            let key = (
                row.try_get("channel")?,
                row.try_get("chat")?,
                row.try_get("external_id")?,
            );
            ids.insert(key, row.try_get("id")?);
        }
    }
    // The same message twice in one batch is stored once: the first of them is the one stored.
    let mut stored = Vec::with_capacity(jobs.len());
    for job in jobs {
        let m = &job.message;
        let key = (m.channel.clone(), m.chat.clone(), m.message_id.clone());
        stored.push(ids.remove(&key));
    }
    Ok(stored)
}

/// The rows of `select` (a query ending in `(a, b, c) IN (VALUES `) for each of `keys`, in chunks.
async fn select_by_keys(
    tx: &mut Transaction<'_, Any>,
    select: &str,
    keys: &[Key<'_>],
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let mut rows = Vec::new();
    for keys in keys.chunks(ROWS) {
        let sql = format!("{select}{})", values(keys.len(), 3));
        let mut query = sqlx::query(&sql);
        for (a, b, c) in keys {
            query = query.bind(*a).bind(*b).bind(*c);
        }
        rows.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(rows)
}

/// The unfinished tickets of the drivers of the batch's new messages.
async fn open_tickets(
    tx: &mut Transaction<'_, Any>,
    jobs: &[Job],
    stored: &[Option<i64>],
) -> Result<Vec<Open>, sqlx::Error> {
    let mut drivers: Vec<Key> = jobs
        .iter()
        .zip(stored)
        .filter(|(_, id)| id.is_some())
        .map(|(j, _)| (&*j.message.channel, &*j.message.chat, &*j.message.sender))
        .collect();
    drivers.sort_unstable();
    drivers.dedup();
    let select = "SELECT id, channel, chat, driver, status, category, priority, last_message_at FROM tickets \
                  WHERE status IN ('open', 'claimed', 'responded') AND (channel, chat, driver) IN (VALUES ";
    let rows = select_by_keys(tx, select, &drivers).await?;
    rows.iter()
        .map(|row| {
            Ok(Open {
                ticket: ticket_ref(row, TicketId(row.try_get("id")?))?,
                channel: row.try_get("channel")?,
                chat: row.try_get("chat")?,
                driver: row.try_get("driver")?,
                last_message_at: row.try_get("last_message_at")?,
            })
        })
        .collect()
}

/// The tickets of the messages the batch replies to, by (channel, chat, message id).
async fn replied_tickets(
    tx: &mut Transaction<'_, Any>,
    jobs: &[Job],
) -> Result<HashMap<(String, String, String), TicketId>, sqlx::Error> {
    let targets: Vec<Key> = jobs
        .iter()
        .filter_map(|j| {
            let m = &j.message;
            m.reply_to.as_deref().map(|r| (&*m.channel, &*m.chat, r))
        })
        .collect();
    let select = "SELECT channel, chat, external_id, ticket_id FROM messages \
                  WHERE ticket_id IS NOT NULL AND (channel, chat, external_id) IN (VALUES ";
    let rows = select_by_keys(tx, select, &targets).await?;
    rows.iter()
        .map(|row| {
            Ok((
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
                TicketId(row.try_get(3)?),
            ))
        })
        .collect()
}

/// Ticket `id` as an answer shows it, from a row with its `status`, `category` and `priority`.
fn ticket_ref(row: &AnyRow, id: TicketId) -> Result<TicketRef, sqlx::Error> {
    Ok(TicketRef {
        id,
        status: row.try_get("status")?,
        category: row.try_get("category")?,
        priority: row.try_get("priority")?,
    })
}

/// Reads back what is stored for a message delivered again.
async fn load_outcome(tx: &mut Transaction<'_, Any>, m: &InboundMessage) -> Result<Outcome, IntakeError> {
    let row = sqlx::query(
        "SELECT m.id, m.channel, m.chat, m.external_id, m.sender, m.sender_name, m.text, m.sent_at, m.received_at, \
         m.reply_to, m.classification, m.disposition, t.id AS ticket, t.status, t.category, t.priority \
         FROM messages m LEFT JOIN tickets t ON t.id = m.ticket_id \
         WHERE m.channel = $1 AND m.chat = $2 AND m.external_id = $3",
    )
    .bind(&m.channel)
    .bind(&m.chat)
    .bind(&m.message_id)
    .fetch_one(&mut **tx)
    .await?;
    let classification: String = row.try_get("classification")?;
    let disposition = match row.try_get::<String, _>("disposition")?.as_str() {
        "opened" => Disposition::Opened,
        "attached" => Disposition::Attached,
        _ => Disposition::Chatter,
    };
    let ticket = match row.try_get::<Option<i64>, _>("ticket")? {
        Some(id) => Some(ticket_ref(&row, TicketId(id))?),
        None => None,
    };
    Ok(Outcome {
        message: StoredMessage {
            id: row.try_get("id")?,
            channel: row.try_get("channel")?,
            chat: row.try_get("chat")?,
            message_id: row.try_get("external_id")?,
            sender: row.try_get("sender")?,
            sender_name: row.try_get("sender_name")?,
            text: row.try_get("text")?,
            sent_at: rfc3339(row.try_get("sent_at")?),
            received_at: rfc3339(row.try_get("received_at")?),
            reply_to: row.try_get("reply_to")?,
        },
        classification: serde_json::from_str(&classification).unwrap_or(serde_json::Value::Null),
        disposition,
        ticket,
        duplicate: true,
    })
}
