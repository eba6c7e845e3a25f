//! Intake: from a channel-neutral inbound message to a stored, classified message and its ticket.
//!
//! Callers classify on their own tasks, in parallel; one writer task owns the writes. Requests queue on a
//! channel; the writer takes all that are waiting (up to a batch) and writes them in one transaction, so that
//! many messages share one commit (group commit). Should one of them fail, the batch is written again one
//! message at a time, so that a bad message cannot undo the others.

mod write;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::classify::{Classification, Classifier};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::sla::SlaConfig;
use crate::store::Db;
use crate::Signals;

use super::TicketId;

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
        let fields = [&self.channel, &self.chat, &self.message_id, &self.sender, &self.text];
        let optional = [&self.sender_name, &self.reply_to].into_iter().flatten();
        if fields.into_iter().chain(optional).any(|v| v.contains('\0')) {
            // PostgreSQL cannot store it in text; refused on both backends alike.
            return Err(IntakeError::Invalid("a field contains a NUL character".into()));
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
    /// Notified after a batch that opened tickets: the SLA scheduler has new deadlines, the sender new messages.
    pub signals: Signals,
}

impl IntakeSettings {
    pub fn from_config(config: &Config, signals: Signals) -> IntakeSettings {
        IntakeSettings {
            follow_up_window: config.intake.follow_up_window,
            max_batch: config.intake.max_batch,
            sla: config.sla.clone(),
            signals,
        }
    }
}

/// Texts up to this many bytes (nearly all) are classified on the caller's task: a few microseconds. Longer
/// ones go to the blocking pool, so as not to stall the runtime.
const CLASSIFY_INLINE: usize = 2 * 1024;

/// A message queued for the writer, already classified.
struct Job {
    message: InboundMessage,
    classification: Classification,
    reply: oneshot::Sender<Result<Outcome, IntakeError>>,
}

/// The handle that channels submit messages through; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    jobs: mpsc::Sender<Job>,
    classifier: Arc<Classifier>,
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
            classifier: classifier.clone(),
            clock,
            settings,
        };
        (Intake { jobs, classifier }, tokio::spawn(writer.run(rx)))
    }

    /// Stores, classifies and tickets one message; resolves once it is committed.
    pub async fn submit(&self, message: InboundMessage) -> Result<Outcome, IntakeError> {
        self.send(message).await?.outcome().await
    }

    /// Classifies and queues one message and returns: messages are written in the order they are sent, and many
    /// sent before their outcomes are awaited share a commit. The outcome comes from [`Pending::outcome`].
    pub async fn send(&self, message: InboundMessage) -> Result<Pending, IntakeError> {
        message.validate()?;
        let classification = if message.text.len() <= CLASSIFY_INLINE {
            self.classifier.classify(&message.text)
        } else {
            let (classifier, text) = (self.classifier.clone(), message.text.clone());
            tokio::task::spawn_blocking(move || classifier.classify(&text))
                .await
                .expect("classification does not panic")
        };
        let (reply, answer) = oneshot::channel();
        let job = Job {
            message,
            classification,
            reply,
        };
        self.jobs.send(job).await.map_err(|_| IntakeError::Stopped)?;
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
            let results = self.write(&batch).await;
            for (job, result) in batch.drain(..).zip(results) {
                // The submitter may have gone (a client hung up): the message is stored all the same.
                let _ = job.reply.send(result);
            }
        }
    }

    /// Writes a batch; the results are in the batch's order.
    async fn write(&self, batch: &[Job]) -> Vec<Result<Outcome, IntakeError>> {
        let now = self.clock.now_ms();
        let results = match self.write_together(batch, now).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(e) if batch.len() == 1 => {
                tracing::warn!(error = %e, "intake failed");
                vec![Err(e)]
            }
            Err(e) => {
                tracing::warn!(error = %e, batch = batch.len(), "intake batch failed; writing its messages one by one");
                let mut results = Vec::with_capacity(batch.len());
                for job in batch {
                    results.push(self.write_alone(job, now).await);
                }
                results
            }
        };
        for outcome in results.iter().flatten().filter(|o| !o.duplicate) {
            let label = outcome.classification["label"].as_str().unwrap_or("none").to_owned();
            metrics::counter!(crate::metrics::MESSAGES, "label" => label).increment(1);
            if let (Disposition::Opened, Some(ticket)) = (outcome.disposition, &outcome.ticket) {
                metrics::counter!(crate::metrics::TICKETS_OPENED, "category" => ticket.category.clone(), "priority" => ticket.priority.clone())
                    .increment(1);
            }
        }
        let opened = results.iter().any(|r| {
            r.as_ref()
                .is_ok_and(|o| o.disposition == Disposition::Opened && !o.duplicate)
        });
        if opened {
            self.settings.signals.deadlines_changed.notify_waiters();
            self.settings.signals.outbox_changed.notify_waiters();
        }
        results
    }

    /// The whole batch in one transaction: all of it is stored, or none.
    async fn write_together(&self, batch: &[Job], now: i64) -> Result<Vec<Outcome>, IntakeError> {
        let mut tx = self.db.pool().begin().await?;
        let outcomes = self.write_batch(&mut tx, batch, now).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn write_alone(&self, job: &Job, now: i64) -> Result<Outcome, IntakeError> {
        let m = &job.message;
        let mut tx = self.db.pool().begin().await?;
        match self.write_batch(&mut tx, std::slice::from_ref(job), now).await {
            Ok(mut outcomes) => {
                tx.commit().await?;
                Ok(outcomes.remove(0))
            }
            Err(e) => {
                tracing::warn!(error = %e, chat = %m.chat, message_id = %m.message_id, "intake failed");
                Err(e)
            }
        }
    }
}
