//! Intake: from a channel-neutral inbound message to a stored, classified message and its ticket.
//!
//! One writer task owns the writes. Requests queue on a channel; the writer takes all that are waiting (up
//! to a batch) and writes them in one transaction, each inside its own savepoint, so that many messages
//! share one commit (group commit) and one bad message cannot undo the others.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{Any, Connection, Row, Transaction};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::classify::{Category, Classification, Classifier, Label};
use crate::clock::{rfc3339, SharedClock};
use crate::config::Config;
use crate::sla::{SlaConfig, Target};
use crate::store::Db;

use super::records::{enqueue, preview, record, write_timers, Recipient, Timers};
use super::{EventKind, TicketId};

/// The longest id, chat or sender name accepted, in bytes.
const MAX_FIELD: usize = 256;
/// The longest message text accepted, in bytes; the classifier reads its first 4,096 characters.
pub const MAX_TEXT: usize = 64 * 1024;

/// A message from any channel (Telegram, the HTTP API, a replayed export), before suqiu has touched it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundMessage {
    pub channel: String,
    pub chat: String,
    /// The channel's id of the message: with `channel` and `chat` it makes the message unique.
    pub message_id: String,
    /// The driver's id on the channel.
    pub sender: String,
    #[serde(default)]
    pub sender_name: Option<String>,
    pub text: String,
    /// When the driver sent it; the time of receipt if absent.
    #[serde(default)]
    pub sent_at: Option<jiff::Timestamp>,
    /// The `message_id` this message answers, in the same chat.
    #[serde(default)]
    pub reply_to: Option<String>,
}

impl InboundMessage {
    /// Checks what the database cannot: ids present and bounded, text within [`MAX_TEXT`].
    pub fn validate(&self) -> Result<(), IntakeError> {
        for (field, value) in [
            ("channel", &self.channel),
            ("chat", &self.chat),
            ("message_id", &self.message_id),
            ("sender", &self.sender),
        ] {
            if value.trim().is_empty() {
                return Err(IntakeError::Invalid(format!("`{field}` is empty")));
            }
            if value.len() > MAX_FIELD {
                return Err(IntakeError::Invalid(format!(
                    "`{field}` is longer than {MAX_FIELD} bytes"
                )));
            }
        }
        for (field, value) in [("sender_name", &self.sender_name), ("reply_to", &self.reply_to)] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_FIELD) {
                return Err(IntakeError::Invalid(format!(
                    "`{field}` is longer than {MAX_FIELD} bytes"
                )));
            }
        }
        if self.text.len() > MAX_TEXT {
            return Err(IntakeError::Invalid(format!(
                "`text` is {} bytes, more than the {MAX_TEXT} accepted",
                self.text.len()
            )));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("failed to store the message: {0}")]
    Store(#[from] sqlx::Error),
    #[error("intake has stopped")]
    Stopped,
}

/// What intake did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// An appeal: a new ticket.
    Opened,
    /// A follow-up, a reply or a repeat: added to the driver's open ticket.
    Attached,
    /// Not an appeal: stored, nothing else.
    Chatter,
}

impl Disposition {
    fn id(self) -> &'static str {
        match self {
            Disposition::Opened => "opened",
            Disposition::Attached => "attached",
            Disposition::Chatter => "chatter",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredMessage {
    pub id: i64,
    pub channel: String,
    pub chat: String,
    pub message_id: String,
    pub sender: String,
    pub sender_name: Option<String>,
    pub text: String,
    pub sent_at: String,
    pub received_at: String,
    pub reply_to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketRef {
    pub id: TicketId,
    pub status: String,
    pub category: String,
    pub priority: String,
}

/// The answer to an inbound message: as stored, as classified, and its ticket.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub message: StoredMessage,
    pub classification: serde_json::Value,
    pub disposition: Disposition,
    pub ticket: Option<TicketRef>,
    /// The message had been received before: this is the first result, and nothing changed.
    pub duplicate: bool,
}

#[derive(Debug, Clone)]
pub struct IntakeSettings {
    pub follow_up_window: Duration,
    pub max_batch: usize,
    pub sla: SlaConfig,
    /// Notified after a batch that opened tickets: the SLA scheduler has new deadlines.
    pub deadlines_changed: Arc<Notify>,
}

impl IntakeSettings {
    pub fn from_config(config: &Config, deadlines_changed: Arc<Notify>) -> IntakeSettings {
        IntakeSettings {
            follow_up_window: config.intake.follow_up_window,
            max_batch: config.intake.max_batch,
            sla: config.sla.clone(),
            deadlines_changed,
        }
    }
}

struct Job {
    message: InboundMessage,
    reply: oneshot::Sender<Result<Outcome, IntakeError>>,
}

/// The handle that channels submit messages through; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    jobs: mpsc::Sender<Job>,
}

impl Intake {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn start(
        db: Db,
        classifier: Arc<Classifier>,
        clock: SharedClock,
        settings: IntakeSettings,
    ) -> (Intake, tokio::task::JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(settings.max_batch.max(1) * 4);
        let writer = Writer {
            db,
            classifier,
            clock,
            settings,
        };
        (Intake { jobs }, tokio::spawn(writer.run(rx)))
    }

    /// Stores, classifies and tickets one message; resolves once it is committed.
    pub async fn submit(&self, message: InboundMessage) -> Result<Outcome, IntakeError> {
        self.send(message).await?.outcome().await
    }

    /// Queues one message and returns at once: messages are written in the order they are sent, and many
    /// sent before their outcomes are awaited share a commit. The outcome comes from [`Pending::outcome`].
    pub async fn send(&self, message: InboundMessage) -> Result<Pending, IntakeError> {
        message.validate()?;
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { message, reply })
            .await
            .map_err(|_| IntakeError::Stopped)?;
        Ok(Pending(answer))
    }
}

/// A message queued for intake.
pub struct Pending(oneshot::Receiver<Result<Outcome, IntakeError>>);

impl Pending {
    pub async fn outcome(self) -> Result<Outcome, IntakeError> {
        self.0.await.map_err(|_| IntakeError::Stopped)?
    }
}

struct Writer {
    db: Db,
    classifier: Arc<Classifier>,
    clock: SharedClock,
    settings: IntakeSettings,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let max = self.settings.max_batch.max(1);
        let mut batch = Vec::with_capacity(max);
        while rx.recv_many(&mut batch, max).await > 0 {
            let (messages, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|j| (j.message, j.reply)).unzip();
            let results = self.write(messages).await;
            for (reply, result) in replies.into_iter().zip(results) {
                // The submitter may have gone (a client hung up): the message is stored all the same.
                let _ = reply.send(result);
            }
        }
    }

    /// Writes a batch in one transaction; the results are in the batch's order.
    async fn write(&self, messages: Vec<InboundMessage>) -> Vec<Result<Outcome, IntakeError>> {
        let classifier = self.classifier.clone();
        let (messages, classified) = tokio::task::spawn_blocking(move || {
            let classified: Vec<_> = messages.iter().map(|m| classifier.classify(&m.text)).collect();
            (messages, classified)
        })
        .await
        .expect("classification does not panic");

        // sqlx errors are not `Clone`: a batch that fails as a whole gives each message the same message.
        let fail_all = |e: sqlx::Error| {
            let text = e.to_string();
            messages
                .iter()
                .map(|_| Err(IntakeError::Store(sqlx::Error::Protocol(text.clone()))))
                .collect()
        };
        let now = self.clock.now_ms();
        let mut tx = match self.db.pool().begin().await {
            Ok(tx) => tx,
            Err(e) => return fail_all(e),
        };
        let mut results = Vec::with_capacity(messages.len());
        for (message, classification) in messages.iter().zip(&classified) {
            results.push(self.write_one(&mut tx, message, classification, now).await);
        }
        if let Err(e) = tx.commit().await {
            tracing::error!(error = %e, batch = messages.len(), "intake commit failed");
            return fail_all(e);
        }
        let opened = results.iter().any(|r| {
            r.as_ref()
                .is_ok_and(|o| o.disposition == Disposition::Opened && !o.duplicate)
        });
        if opened {
            self.settings.deadlines_changed.notify_waiters();
        }
        results
    }

    /// One message inside its own savepoint.
    async fn write_one(
        &self,
        tx: &mut Transaction<'static, Any>,
        message: &InboundMessage,
        classification: &Classification,
        now: i64,
    ) -> Result<Outcome, IntakeError> {
        let mut savepoint = tx.begin().await?;
        match self.intake(&mut savepoint, message, classification, now).await {
            Ok(outcome) => {
                savepoint.commit().await?;
                Ok(outcome)
            }
            Err(e) => {
                tracing::warn!(error = %e, chat = %message.chat, message_id = %message.message_id, "intake failed");
                savepoint.rollback().await?;
                Err(e)
            }
        }
    }

    async fn intake(
        &self,
        tx: &mut Transaction<'_, Any>,
        m: &InboundMessage,
        c: &Classification,
        now: i64,
    ) -> Result<Outcome, IntakeError> {
        let sent_at = m.sent_at.map_or(now, |t| t.as_millisecond());
        let json = serde_json::to_string(c).expect("a classification serializes");
        let inserted = sqlx::query(
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
        .bind(&json)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = inserted else {
            let id: i64 =
                sqlx::query_scalar("SELECT id FROM messages WHERE channel = $1 AND chat = $2 AND external_id = $3")
                    .bind(&m.channel)
                    .bind(&m.chat)
                    .bind(&m.message_id)
                    .fetch_one(&mut **tx)
                    .await?;
            return load_outcome(tx, id, true).await;
        };
        let id: i64 = row.try_get(0)?;

        let disposition = match self.thread(tx, m, c.label, sent_at).await? {
            Some(ticket) => {
                attach(tx, ticket, id, m, c, sent_at, now).await?;
                Some((ticket, Disposition::Attached))
            }
            None => match c.label {
                Label::Appeal(category) => {
                    let ack = &self.classifier.rules().intent(category).ack;
                    let times = (sent_at, now);
                    let ticket = open(tx, &self.settings.sla, id, m, c, category, ack, times).await?;
                    Some((ticket, Disposition::Opened))
                }
                Label::None => None,
            },
        };
        if let Some((ticket, disposition)) = disposition {
            sqlx::query("UPDATE messages SET ticket_id = $1, disposition = $2 WHERE id = $3")
                .bind(ticket.0)
                .bind(disposition.id())
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        load_outcome(tx, id, false).await
    }

    /// The driver's open ticket this message belongs to, if any: the ticket of the message it replies to,
    /// else one they wrote to within the follow-up window, else an open one of the same category.
    async fn thread(
        &self,
        tx: &mut Transaction<'_, Any>,
        m: &InboundMessage,
        label: Label,
        sent_at: i64,
    ) -> Result<Option<TicketId>, sqlx::Error> {
        const UNFINISHED: &str = "t.status IN ('open', 'claimed', 'responded')";
        if let Some(reply_to) = &m.reply_to {
            let replied: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT t.id FROM messages m JOIN tickets t ON t.id = m.ticket_id \
                 WHERE m.channel = $1 AND m.chat = $2 AND m.external_id = $3 AND t.driver = $4 AND {UNFINISHED}"
            ))
            .bind(&m.channel)
            .bind(&m.chat)
            .bind(reply_to)
            .bind(&m.sender)
            .fetch_optional(&mut **tx)
            .await?;
            if let Some(id) = replied {
                return Ok(Some(TicketId(id)));
            }
        }
        let window = self.settings.follow_up_window.as_millis() as i64;
        let recent: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT t.id FROM tickets t WHERE t.channel = $1 AND t.chat = $2 AND t.driver = $3 AND {UNFINISHED} \
             AND t.last_message_at >= $4 ORDER BY t.last_message_at DESC, t.id DESC LIMIT 1"
        ))
        .bind(&m.channel)
        .bind(&m.chat)
        .bind(&m.sender)
        .bind(sent_at - window)
        .fetch_optional(&mut **tx)
        .await?;
        if recent.is_some() {
            return Ok(recent.map(TicketId));
        }
        let Label::Appeal(category) = label else {
            return Ok(None);
        };
        let repeat: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT t.id FROM tickets t WHERE t.channel = $1 AND t.chat = $2 AND t.driver = $3 AND {UNFINISHED} \
             AND t.category = $4 ORDER BY t.id DESC LIMIT 1"
        ))
        .bind(&m.channel)
        .bind(&m.chat)
        .bind(&m.sender)
        .bind(category.id())
        .fetch_optional(&mut **tx)
        .await?;
        Ok(repeat.map(TicketId))
    }
}

#[allow(clippy::too_many_arguments)]
async fn open(
    tx: &mut Transaction<'_, Any>,
    sla: &SlaConfig,
    message: i64,
    m: &InboundMessage,
    c: &Classification,
    category: Category,
    ack: &str,
    (sent_at, now): (i64, i64),
) -> Result<TicketId, sqlx::Error> {
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
    let created = serde_json::json!({ "message": message });
    record(tx, ticket, now, EventKind::Created, None, created).await?;
    let classified = serde_json::json!({
        "message": message,
        "label": c.label.id(),
        "priority": priority.to_string(),
        "score": c.score,
        "evidence": c.evidence,
    });
    record(tx, ticket, now, EventKind::Classified, None, classified).await?;
    for timers in [response, resolution] {
        write_timers(tx, ticket, timers, Timers::Schedule).await?;
    }
    // The bot's acknowledgement: it tells the driver their appeal is in, and is not a first response.
    let driver = Recipient {
        channel: &m.channel,
        chat: &m.chat,
        reply_to: Some(&m.message_id),
    };
    enqueue(tx, Some(ticket), "driver", Some(driver), "ack", ack, now).await?;
    let alert = format!(
        "新诉求 {ticket} [{priority} {}] {}：{}",
        category.id(),
        m.sender_name.as_deref().unwrap_or(&m.sender),
        preview(&m.text)
    );
    enqueue(tx, Some(ticket), "responders", None, "new_ticket", &alert, now).await?;
    Ok(ticket)
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

/// Reads back what is stored for message `id`.
async fn load_outcome(tx: &mut Transaction<'_, Any>, id: i64, duplicate: bool) -> Result<Outcome, IntakeError> {
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
        duplicate,
    })
}
