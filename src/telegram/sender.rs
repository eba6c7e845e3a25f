//! Delivers the outbox to Telegram.
//!
//! A round leases what is due, at most a few entries per chat, and hands each chat's entries to a task that
//! sends them in order. Rounds do not wait for those tasks: a chat held back by Telegram's per-group limit
//! (about 20 messages a minute) never holds back another chat, so a driver's acknowledgement does not queue
//! behind the responders' cards. teloxide's [`Throttle`] keeps within Telegram's limits and waits out a 429's
//! `retry_after`. A lease is a conditional update, and a chat's entries are not leased while an earlier one is,
//! so two senders (tasks or instances) never send one entry. What fails is retried with backoff; a chat's later
//! entries wait behind it, so that a driver never reads "resolved" before the answer. After `max_attempts` an
//! entry is marked failed and the supervisors are told.
//!
//! An entry is sent at most once when the outcome is known. The one gap is Telegram's: a request whose answer
//! is lost (the connection drops after Telegram acted) cannot be told from one that never arrived, and the
//! Bot API has no idempotency key, so such an entry is sent again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row;
use teloxide::adaptors::Throttle;
use teloxide::payloads::{EditMessageTextSetters, SendMessageSetters};
use teloxide::requests::Requester;
use teloxide::types::{ChatId, InlineKeyboardMarkup, MessageId, ReplyParameters};
use teloxide::{ApiError, Bot, RequestError};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::cards::{clip, Card, MAX_TEXT};
use super::Settings;
use crate::classify::Classifier;
use crate::clock::SharedClock;
use crate::store::Db;
use crate::tickets::desk::CARD_UPDATE;
use crate::tickets::records::{enqueue, preview, Outgoing};
use crate::tickets::TicketId;

/// Entries leased per round.
const ROUND: i64 = 200;
/// Entries leased per chat per round: Telegram lets a bot post about 20 messages a minute in a group, so a
/// lease of this many is never outlived by its sending.
const PER_CHAT: usize = 10;
/// How long a lease lasts; an instance that dies mid-round frees its entries after this.
const LEASE_MS: i64 = 5 * 60 * 1000;
/// How often the outbox is looked at when nothing wakes the sender (another instance queued something).
const POLL: Duration = Duration::from_secs(2);
/// The longest wait between tries.
const MAX_BACKOFF_MS: i64 = 5 * 60 * 1000;
/// How long stopping waits for the sends in hand; entries not yet begun are released at once.
const GRACE: Duration = Duration::from_secs(5);

/// One leased outbox entry.
#[derive(Debug)]
struct Entry {
    id: i64,
    audience: String,
    chat: Option<String>,
    reply_to: Option<String>,
    ticket: Option<TicketId>,
    kind: String,
    text: String,
    attempts: i32,
}

/// What became of one try.
enum Sent {
    /// Delivered: the message id Telegram gave it, if it made a new message.
    Delivered(Option<MessageId>),
    /// Nothing to deliver any more (the card to redraw was never sent): done, and why.
    Moot(&'static str),
}

enum Failure {
    /// Worth another try: network errors, 5xx, flood control.
    Transient { error: String, after_ms: Option<i64> },
    /// Telegram refused it for good (chat not found, bot blocked): retrying cannot help.
    Permanent(String),
    /// The group became a supergroup: the same message goes to the new chat.
    Moved(ChatId),
}

/// The outbox's sender to Telegram.
#[derive(Clone)]
pub struct Delivery {
    db: Db,
    bot: Throttle<Bot>,
    classifier: Arc<Classifier>,
    clock: SharedClock,
    settings: Arc<Settings>,
    /// Entries leased by this sender and not yet begun: released when it stops.
    waiting: Arc<Mutex<BTreeSet<i64>>>,
    /// Set when the sender stops: chats' tasks begin no further entries.
    halted: Arc<AtomicBool>,
}

impl Delivery {
    pub fn new(
        db: Db,
        bot: Throttle<Bot>,
        classifier: Arc<Classifier>,
        clock: SharedClock,
        settings: Arc<Settings>,
    ) -> Delivery {
        Delivery {
            db,
            bot,
            classifier,
            clock,
            settings,
            waiting: Arc::default(),
            halted: Arc::default(),
        }
    }

    /// Sends what is due, leasing again whenever woken by `changed`, a chat's task finishing, the next retry or
    /// the poll. On `stop` it lets the sends in hand finish (for a while) and releases what it had not begun.
    pub async fn run(self, changed: Arc<Notify>, stop: Arc<Notify>) {
        let mut chats = JoinSet::new();
        loop {
            let woken = changed.notified();
            let stopped = stop.notified();
            tokio::pin!(woken, stopped);
            woken.as_mut().enable();
            stopped.as_mut().enable();
            let wait = match self.round(&mut chats).await {
                Ok(0) => POLL,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    tracing::error!(error = %e, "telegram sender: database error; retrying shortly");
                    POLL
                }
            };
            tokio::select! {
                () = &mut stopped => break,
                () = &mut woken => {}
                Some(done) = chats.join_next() => log_chat(done),
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.halted.store(true, Ordering::SeqCst);
        let finished = tokio::time::timeout(GRACE, async {
            while let Some(done) = chats.join_next().await {
                log_chat(done);
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                sends = chats.len(),
                "telegram sender: stopping without waiting for the sends in hand"
            );
            chats.shutdown().await;
        }
        let waiting: Vec<i64> = std::mem::take(&mut *self.waiting.lock().unwrap()).into_iter().collect();
        if let Err(e) = self.release(&waiting).await {
            tracing::warn!(error = %e, "telegram sender: could not release its leases; they lapse by themselves");
        }
    }

    /// One round: leases what is due and starts sending it, one task per chat. Returns how many entries it
    /// leased.
    async fn round(&self, chats: &mut JoinSet<Result<(), sqlx::Error>>) -> Result<usize, sqlx::Error> {
        let now = self.clock.now_ms();
        let entries = self.lease(now).await?;
        let leased = entries.len();
        self.waiting.lock().unwrap().extend(entries.iter().map(|e| e.id));
        let mut by_chat: BTreeMap<(String, String), Vec<Entry>> = BTreeMap::new();
        for entry in entries {
            let key = (entry.audience.clone(), entry.chat.clone().unwrap_or_default());
            by_chat.entry(key).or_default().push(entry);
        }
        for (_, entries) in by_chat {
            let delivery = self.clone();
            chats.spawn(async move { delivery.send_in_order(entries).await });
        }
        Ok(leased)
    }

    /// Leases due entries: those not sent, not failed, due, not leased by a live sender, and with nothing
    /// earlier for their chat still waiting; at most [`PER_CHAT`] per chat.
    async fn lease(&self, now: i64) -> Result<Vec<Entry>, sqlx::Error> {
        let due = sqlx::query(
            "SELECT id, audience, COALESCE(chat, '') AS chat FROM outbox o \
             WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
             AND (leased_until IS NULL OR leased_until <= $1) \
             AND ((audience = 'driver' AND channel = $2) OR (audience = 'responders' AND $3 = 1) \
                  OR (audience = 'supervisors' AND $4 = 1)) \
             AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.audience = o.audience \
                  AND COALESCE(e.chat, '') = COALESCE(o.chat, '') AND e.id < o.id \
                  AND e.sent_at IS NULL AND e.failed_at IS NULL \
                  AND (e.next_attempt_at > $1 OR e.leased_until > $1)) \
             ORDER BY id LIMIT $5",
        )
        .bind(now)
        .bind(super::CHANNEL)
        .bind(i64::from(self.settings.responders_chat.is_some()))
        .bind(i64::from(self.settings.supervisors_chat.is_some()))
        .bind(ROUND)
        .fetch_all(self.db.pool())
        .await?;
        let mut per_chat: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut ids = Vec::new();
        for row in &due {
            let count = per_chat
                .entry((row.try_get("audience")?, row.try_get("chat")?))
                .or_default();
            if *count < PER_CHAT {
                *count += 1;
                ids.push(row.try_get::<i64, _>("id")?);
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE outbox SET leased_until = $1 \
             WHERE id IN ({}) AND sent_at IS NULL AND failed_at IS NULL AND (leased_until IS NULL OR leased_until <= $2) \
             RETURNING id, audience, chat, reply_to, ticket_id, kind, text, attempts",
            placeholders(3, ids.len())
        );
        let mut query = sqlx::query(&sql).bind(now + LEASE_MS).bind(now);
        for id in &ids {
            query = query.bind(*id);
        }
        let mut entries = query
            .fetch_all(self.db.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(Entry {
                    id: row.try_get("id")?,
                    audience: row.try_get("audience")?,
                    chat: row.try_get("chat")?,
                    reply_to: row.try_get("reply_to")?,
                    ticket: row.try_get::<Option<i64>, _>("ticket_id")?.map(TicketId),
                    kind: row.try_get("kind")?,
                    text: row.try_get("text")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        entries.sort_by_key(|e| e.id);
        Ok(entries)
    }

    /// Sends one chat's entries in order; at the first that must wait, the rest of the chat waits too.
    async fn send_in_order(&self, entries: Vec<Entry>) -> Result<(), sqlx::Error> {
        let mut entries = entries.into_iter();
        while let Some(mut entry) = entries.next() {
            if self.halted.load(Ordering::SeqCst) {
                return Ok(());
            }
            self.waiting.lock().unwrap().remove(&entry.id);
            let outcome = loop {
                match self.send(&entry).await {
                    Err(Failure::Moved(to)) => {
                        tracing::info!(entry = entry.id, to = to.0, "telegram: the group moved to a supergroup");
                        sqlx::query("UPDATE outbox SET chat = $1 WHERE id = $2")
                            .bind(to.0.to_string())
                            .bind(entry.id)
                            .execute(self.db.pool())
                            .await?;
                        entry.chat = Some(to.0.to_string());
                    }
                    outcome => break outcome,
                }
            };
            let now = self.clock.now_ms();
            match outcome {
                Ok(sent) => self.delivered(&entry, sent, now).await?,
                Err(Failure::Permanent(error)) => self.failed(&entry, &error, now).await?,
                Err(Failure::Transient { error, after_ms }) => {
                    let attempts = entry.attempts + 1;
                    if attempts as u32 >= self.settings.max_attempts {
                        self.failed(&entry, &error, now).await?;
                        continue;
                    }
                    let backoff = after_ms.unwrap_or_else(|| backoff_ms(attempts));
                    tracing::warn!(entry = entry.id, attempts, error = %error, retry_in_ms = backoff, "telegram: delivery failed; will retry");
                    sqlx::query(
                        "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, leased_until = NULL \
                         WHERE id = $4",
                    )
                    .bind(attempts)
                    .bind(now + backoff)
                    .bind(&error)
                    .bind(entry.id)
                    .execute(self.db.pool())
                    .await?;
                    let rest: Vec<i64> = entries.map(|e| e.id).collect();
                    self.waiting.lock().unwrap().retain(|id| !rest.contains(id));
                    self.release(&rest).await?;
                    return Ok(());
                }
                Err(Failure::Moved(_)) => unreachable!("a move is retried above"),
            }
        }
        Ok(())
    }

    async fn send(&self, entry: &Entry) -> Result<Sent, Failure> {
        let chat = match (&entry.chat, self.settings.team_chat(&entry.audience)) {
            (_, Some(team)) => team,
            (Some(chat), None) => ChatId(
                chat.parse()
                    .map_err(|_| Failure::Permanent(format!("chat {chat:?} is not a Telegram chat id")))?,
            ),
            (None, None) => return Err(Failure::Permanent("no chat to send to".into())),
        };
        let reply = entry
            .reply_to
            .as_deref()
            .and_then(|r| r.parse::<i32>().ok())
            .map(|r| ReplyParameters::new(MessageId(r)).allow_sending_without_reply());
        match (entry.kind.as_str(), entry.ticket) {
            ("new_ticket", Some(ticket)) => {
                let card = Card::load(&self.db, ticket).await?;
                let Some(card) = card else {
                    return Ok(Sent::Moot("the ticket is gone"));
                };
                let text = card.text(self.classifier.rules(), &self.settings.time_zone);
                self.send_message(chat, text, None, Some(card.buttons())).await
            }
            (CARD_UPDATE, Some(ticket)) => self.redraw(ticket).await,
            ("resolved", Some(ticket)) => {
                self.send_message(
                    chat,
                    entry.text.clone(),
                    reply,
                    Some(super::cards::rating_buttons(ticket)),
                )
                .await
            }
            _ => self.send_message(chat, entry.text.clone(), reply, None).await,
        }
    }

    async fn send_message(
        &self,
        chat: ChatId,
        text: String,
        reply: Option<ReplyParameters>,
        buttons: Option<InlineKeyboardMarkup>,
    ) -> Result<Sent, Failure> {
        let mut request = self.bot.send_message(chat, clip(&text, MAX_TEXT));
        if let Some(reply) = reply {
            request = request.reply_parameters(reply);
        }
        if let Some(buttons) = buttons {
            request = request.reply_markup(buttons);
        }
        match request.await {
            Ok(message) => Ok(Sent::Delivered(Some(message.id))),
            Err(e) => Err(classify(e)),
        }
    }

    /// Redraws a ticket's card where it was sent, as the ticket is now.
    async fn redraw(&self, ticket: TicketId) -> Result<Sent, Failure> {
        let sent: Option<(String, String)> = sqlx::query_as(
            "SELECT chat, sent_message_id FROM outbox WHERE ticket_id = $1 AND kind = 'new_ticket' \
             AND sent_message_id IS NOT NULL ORDER BY id LIMIT 1",
        )
        .bind(ticket.0)
        .fetch_optional(self.db.pool())
        .await?;
        let Some((chat, message)) = sent else {
            return Ok(Sent::Moot("the card was never sent"));
        };
        let (Ok(chat), Ok(message)) = (chat.parse::<i64>(), message.parse::<i32>()) else {
            return Ok(Sent::Moot("the card's chat is not a Telegram chat"));
        };
        let Some(card) = Card::load(&self.db, ticket).await? else {
            return Ok(Sent::Moot("the ticket is gone"));
        };
        let text = card.text(self.classifier.rules(), &self.settings.time_zone);
        let edit = self
            .bot
            .edit_message_text(ChatId(chat), MessageId(message), text)
            .reply_markup(card.buttons())
            .await;
        match edit {
            Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(Sent::Delivered(None)),
            Err(RequestError::Api(ApiError::MessageToEditNotFound)) => Ok(Sent::Moot("the card was deleted")),
            Err(e) => Err(classify(e)),
        }
    }

    async fn delivered(&self, entry: &Entry, sent: Sent, now: i64) -> Result<(), sqlx::Error> {
        let (message, note) = match sent {
            Sent::Delivered(message) => (message.map(|m| m.0.to_string()), None),
            Sent::Moot(why) => (None, Some(why)),
        };
        let chat = self
            .settings
            .team_chat(&entry.audience)
            .map(|c| c.0.to_string())
            .or_else(|| entry.chat.clone());
        sqlx::query(
            "UPDATE outbox SET sent_at = $1, sent_message_id = $2, chat = $3, attempts = attempts + 1, \
             leased_until = NULL, last_error = $4 WHERE id = $5",
        )
        .bind(now)
        .bind(message)
        .bind(chat)
        .bind(note)
        .bind(entry.id)
        .execute(self.db.pool())
        .await?;
        tracing::debug!(entry = entry.id, kind = %entry.kind, "telegram: delivered");
        Ok(())
    }

    /// Gives up on an entry, and tells the supervisors unless it was theirs.
    async fn failed(&self, entry: &Entry, error: &str, now: i64) -> Result<(), sqlx::Error> {
        tracing::error!(entry = entry.id, kind = %entry.kind, error, "telegram: delivery failed for good");
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "UPDATE outbox SET failed_at = $1, attempts = attempts + 1, last_error = $2, leased_until = NULL \
             WHERE id = $3",
        )
        .bind(now)
        .bind(error)
        .bind(entry.id)
        .execute(&mut *tx)
        .await?;
        if entry.audience != "supervisors" {
            let ticket = entry.ticket.map(|t| format!("工单 {t} 的")).unwrap_or_default();
            let alert = format!(
                "⚠️ {ticket}消息发送失败（第 {} 次尝试后放弃，发给 {}）：{}\n错误：{error}",
                entry.attempts + 1,
                entry.chat.as_deref().unwrap_or(&entry.audience),
                preview(&entry.text)
            );
            let alert = Outgoing {
                ticket: entry.ticket,
                audience: "supervisors",
                to: None,
                kind: "delivery_failed",
                text: &alert,
            };
            enqueue(&mut tx, now, &[alert]).await?;
        }
        tx.commit().await
    }

    /// Frees leased entries without trying them: they go in a later round, after the one that must wait.
    async fn release(&self, ids: &[i64]) -> Result<(), sqlx::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE outbox SET leased_until = NULL WHERE id IN ({})",
            placeholders(1, ids.len())
        );
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        query.execute(self.db.pool()).await?;
        Ok(())
    }
}

fn log_chat(done: Result<Result<(), sqlx::Error>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "telegram sender: failed to record a delivery"),
        Err(e) => tracing::error!(error = %e, "telegram sender: a chat's delivery task failed"),
    }
}

/// `$first, $first+1, …`: `count` placeholders for an `IN` list.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The database was away while a message was prepared: it is tried again.
impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Failure {
        Failure::Transient {
            error: format!("database: {e}"),
            after_ms: None,
        }
    }
}

fn backoff_ms(attempts: i32) -> i64 {
    (1_000i64 << attempts.clamp(0, 20)).min(MAX_BACKOFF_MS)
}

fn classify(error: RequestError) -> Failure {
    match error {
        RequestError::RetryAfter(after) => Failure::Transient {
            error: format!("flood control: retry after {after}"),
            after_ms: Some(after.duration().as_millis() as i64),
        },
        RequestError::MigrateToChatId(to) => Failure::Moved(to),
        RequestError::Network(e) => Failure::Transient {
            error: format!("network: {e}"),
            after_ms: None,
        },
        RequestError::InvalidJson { raw, .. } => Failure::Transient {
            error: format!("unreadable answer: {}", preview(&raw)),
            after_ms: None,
        },
        RequestError::Io(e) => Failure::Transient {
            error: format!("i/o: {e}"),
            after_ms: None,
        },
        // A description teloxide does not know: a server error, unless it says the request was at fault.
        RequestError::Api(ApiError::Unknown(description))
            if !["Bad Request", "Forbidden", "Unauthorized"]
                .iter()
                .any(|p| description.starts_with(p)) =>
        {
            Failure::Transient {
                error: description,
                after_ms: None,
            }
        }
        RequestError::Api(e) => Failure::Permanent(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_five_minutes() {
        assert_eq!(backoff_ms(1), 2_000);
        assert_eq!(backoff_ms(3), 8_000);
        assert_eq!(backoff_ms(30), MAX_BACKOFF_MS);
    }

    #[test]
    fn server_errors_are_retried_and_refusals_are_not() {
        let server = classify(RequestError::Api(ApiError::Unknown("Internal Server Error".into())));
        assert!(matches!(server, Failure::Transient { .. }));
        let refused = classify(RequestError::Api(ApiError::Unknown(
            "Bad Request: something new".into(),
        )));
        assert!(matches!(refused, Failure::Permanent(_)));
        assert!(matches!(
            classify(RequestError::Api(ApiError::ChatNotFound)),
            Failure::Permanent(_)
        ));
    }
}
