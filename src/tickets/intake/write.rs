//! One message inside the writer's transaction: store it, thread it onto the driver's open ticket or open a
//! new one, and answer what was done, built from what was written rather than read back.
//!
//! Every statement is a round trip to the database, and the writer makes them one after another, so each
//! step is one statement: one lookup finds the ticket a message threads onto, and a new ticket's events,
//! timers and outgoing messages are each one multi-row insert.

use sqlx::{Any, Row, Transaction};

use crate::classify::{Category, Classification, Label, Priority};
use crate::clock::rfc3339;
use crate::sla::Target;
use crate::tickets::records::{enqueue, preview, record, record_all, write_timers, Outgoing, Recipient, Timers};
use crate::tickets::{EventKind, TicketId};

use super::{Disposition, InboundMessage, IntakeError, Outcome, StoredMessage, TicketRef, Writer};

impl Writer {
    pub(super) async fn intake(
        &self,
        tx: &mut Transaction<'_, Any>,
        m: &InboundMessage,
        c: &Classification,
        now: i64,
    ) -> Result<Outcome, IntakeError> {
        let sent_at = m.sent_at.map_or(now, |t| t.as_millisecond());
        let classification = serde_json::to_value(c).expect("a classification serializes");
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO messages (channel, chat, external_id, sender, sender_name, text, sent_at, reply_to, \
             received_at, label, priority, score, classification, disposition) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'chatter') \
             ON CONFLICT (channel, chat, external_id) DO NOTHING RETURNING id",
        )
        .bind(&m.channel)
        .bind(&m.chat)
        .bind(&m.message_id)
        .bind(&m.sender)
        .bind(&m.sender_name)
        .bind(&m.text)
        .bind(sent_at)
        .bind(&m.reply_to)
        .bind(now)
        .bind(c.label.id())
        .bind(c.priority.map(|p| p.to_string()))
        .bind(f64::from(c.score))
        .bind(classification.to_string())
        .fetch_optional(&mut **tx)
        .await?;
        let Some(id) = inserted else {
            let id: i64 =
                sqlx::query_scalar("SELECT id FROM messages WHERE channel = $1 AND chat = $2 AND external_id = $3")
                    .bind(&m.channel)
                    .bind(&m.chat)
                    .bind(&m.message_id)
                    .fetch_one(&mut **tx)
                    .await?;
            return load_outcome(tx, id).await;
        };

        let ticket = match self.thread(tx, m, c.label, sent_at).await? {
            Some(ticket) => {
                attach(tx, ticket.id, id, m, c, sent_at, now).await?;
                Some((ticket, Disposition::Attached))
            }
            None => match c.label {
                Label::Appeal(category) => {
                    let ticket = self.open(tx, id, m, c, category, (sent_at, now)).await?;
                    Some((ticket, Disposition::Opened))
                }
                Label::None => None,
            },
        };
        if let Some((ticket, disposition)) = &ticket {
            sqlx::query("UPDATE messages SET ticket_id = $1, disposition = $2 WHERE id = $3")
                .bind(ticket.id.0)
                .bind(disposition.id())
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        let (ticket, disposition) = ticket.map_or((None, Disposition::Chatter), |(t, d)| (Some(t), d));
        Ok(Outcome {
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
        })
    }

    /// The driver's open ticket this message belongs to, if any: the ticket of the message it replies to,
    /// else the one they last wrote to within the follow-up window, else an open one of the same category
    /// (the same appeal repeated).
    async fn thread(
        &self,
        tx: &mut Transaction<'_, Any>,
        m: &InboundMessage,
        label: Label,
        sent_at: i64,
    ) -> Result<Option<TicketRef>, sqlx::Error> {
        let window = self.settings.follow_up_window.as_millis() as i64;
        let category = match label {
            Label::Appeal(category) => Some(category.id()),
            Label::None => None,
        };
        let row = sqlx::query(
            "WITH replied AS (SELECT ticket_id FROM messages WHERE channel = $1 AND chat = $2 AND external_id = $4) \
             SELECT t.id, t.status, t.category, t.priority, \
                 CASE WHEN t.id IN (SELECT ticket_id FROM replied) THEN 0 \
                      WHEN t.last_message_at >= $5 THEN 1 ELSE 2 END AS rank \
             FROM tickets t \
             WHERE t.channel = $1 AND t.chat = $2 AND t.driver = $3 AND t.status IN ('open', 'claimed', 'responded') \
               AND (t.id IN (SELECT ticket_id FROM replied) OR t.last_message_at >= $5 OR t.category = $6) \
             ORDER BY rank, t.last_message_at DESC, t.id DESC LIMIT 1",
        )
        .bind(&m.channel)
        .bind(&m.chat)
        .bind(&m.sender)
        .bind(&m.reply_to)
        .bind(sent_at - window)
        .bind(category)
        .fetch_optional(&mut **tx)
        .await?;
        row.map(|row| {
            Ok(TicketRef {
                id: TicketId(row.try_get("id")?),
                status: row.try_get("status")?,
                category: row.try_get("category")?,
                priority: row.try_get("priority")?,
            })
        })
        .transpose()
    }

    /// A new ticket for appeal `message`, with its events, timers, the driver's acknowledgement and the
    /// responders' alert.
    async fn open(
        &self,
        tx: &mut Transaction<'_, Any>,
        message: i64,
        m: &InboundMessage,
        c: &Classification,
        category: Category,
        (sent_at, now): (i64, i64),
    ) -> Result<TicketRef, sqlx::Error> {
        let sla = &self.settings.sla;
        let priority: Priority = c.priority.unwrap_or_else(|| category.default_priority());
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
        let events = [
            (EventKind::Created, serde_json::json!({ "message": message })),
            (EventKind::Classified, classified),
        ];
        record_all(tx, ticket, now, None, &events).await?;
        let timers = [response, resolution].concat();
        write_timers(tx, ticket, &timers, Timers::Schedule).await?;
        let alert = format!(
            "新诉求 {ticket} [{priority} {}] {}：{}",
            category.id(),
            m.sender_name.as_deref().unwrap_or(&m.sender),
            preview(&m.text)
        );
        let outgoing = [
            // The bot's acknowledgement: it tells the driver their appeal is in, and is not a first response.
            Outgoing {
                ticket: Some(ticket),
                audience: "driver",
                to: Some(Recipient {
                    channel: &m.channel,
                    chat: &m.chat,
                    reply_to: Some(&m.message_id),
                }),
                kind: "ack",
                text: &self.classifier.rules().intent(category).ack,
            },
            Outgoing {
                ticket: Some(ticket),
                audience: "responders",
                to: None,
                kind: "new_ticket",
                text: &alert,
            },
        ];
        enqueue(tx, now, &outgoing).await?;
        Ok(TicketRef {
            id: ticket,
            status: "open".into(),
            category: category.id().into(),
            priority: priority.to_string(),
        })
    }
}

async fn attach(
    tx: &mut Transaction<'_, Any>,
    ticket: TicketId,
    message: i64,
    m: &InboundMessage,
    c: &Classification,
    sent_at: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE tickets SET last_message_at = CASE WHEN last_message_at > $1 THEN last_message_at ELSE $1 END, \
         version = version + 1 WHERE id = $2",
    )
    .bind(sent_at)
    .bind(ticket.0)
    .execute(&mut **tx)
    .await?;
    let data = serde_json::json!({ "message": message, "label": c.label.id(), "reply_to": m.reply_to });
    record(tx, ticket, now, EventKind::Attached, None, data).await
}

/// Reads back what is stored for message `id`: the answer to a message delivered again.
async fn load_outcome(tx: &mut Transaction<'_, Any>, id: i64) -> Result<Outcome, IntakeError> {
    let row = sqlx::query(
        "SELECT m.id, m.channel, m.chat, m.external_id, m.sender, m.sender_name, m.text, m.sent_at, m.received_at, \
         m.reply_to, m.classification, m.disposition, t.id AS ticket, t.status, t.category, t.priority \
         FROM messages m LEFT JOIN tickets t ON t.id = m.ticket_id WHERE m.id = $1",
    )
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    let classification: String = row.try_get("classification")?;
    let disposition = match row.try_get::<String, _>("disposition")?.as_str() {
        "opened" => Disposition::Opened,
        "attached" => Disposition::Attached,
        _ => Disposition::Chatter,
    };
    let ticket = match row.try_get::<Option<i64>, _>("ticket")? {
        Some(ticket) => Some(TicketRef {
            id: TicketId(ticket),
            status: row.try_get::<String, _>("status")?,
            category: row.try_get("category")?,
            priority: row.try_get("priority")?,
        }),
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
