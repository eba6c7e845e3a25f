//! The SLA scheduler: sleeps until the next pending deadline, then fires every one that is due.
//!
//! Deadlines live in the `deadlines` table, so a restart loses none: on start the scheduler fires whatever
//! came due while the service was down. Firing a deadline deletes its row in the same transaction as the
//! event, the escalation and the supervisors' alert; only the instance whose delete removed the row goes on,
//! so with several instances on one database each warning and breach fires exactly once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;

use crate::clock::{rfc3339, SharedClock};
use crate::store::Db;
use crate::tickets::desk::{self, DeskError};
use crate::tickets::records::{enqueue, preview, record, Outgoing};
use crate::tickets::state::{Action, Actor};
use crate::tickets::{EventKind, TicketId};
use crate::Signals;

use super::{SlaConfig, Stage, Target};

/// How long the scheduler sleeps at most without a wake-up: deadlines another instance created are
/// noticed within this, should that instance stop before firing them.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Deadlines fired per transaction round.
const BATCH: i64 = 100;

#[derive(Clone)]
pub struct Scheduler {
    db: Db,
    clock: SharedClock,
    sla: Arc<SlaConfig>,
    /// `deadlines_changed` wakes it when deadlines are added or moved, so that a nearer one is not slept
    /// through; it notifies `outbox_changed` when it has queued alerts.
    signals: Signals,
}

impl Scheduler {
    pub fn new(db: Db, clock: SharedClock, sla: Arc<SlaConfig>, signals: Signals) -> Scheduler {
        Scheduler {
            db,
            clock,
            sla,
            signals,
        }
    }

    /// Fires deadlines as they come due until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let changed = self.signals.deadlines_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next = match self.fire_due().await.and(self.next_due().await) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "sla scheduler: database error; retrying in a second");
                    Some(self.clock.now_ms() + 1_000)
                }
            };
            let now = self.clock.now_ms();
            let until = next.map_or(now + MAX_SLEEP.as_millis() as i64, |due| {
                due.min(now + MAX_SLEEP.as_millis() as i64)
            });
            tokio::select! {
                () = self.clock.sleep_until(until) => {}
                () = &mut changed => {}
                () = &mut shutdown => return,
            }
        }
    }

    /// The earliest pending deadline.
    pub async fn next_due(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT MIN(due_at) FROM deadlines")
            .fetch_one(self.db.pool())
            .await
    }

    /// Fires every deadline due by now; returns how many this instance fired.
    pub async fn fire_due(&self) -> Result<usize, sqlx::Error> {
        let mut fired = 0;
        loop {
            let now = self.clock.now_ms();
            let due = sqlx::query(
                "SELECT id, ticket_id, target, stage, due_at FROM deadlines WHERE due_at <= $1 ORDER BY due_at, id LIMIT $2",
            )
            .bind(now)
            .bind(BATCH)
            .fetch_all(self.db.pool())
            .await?;
            if due.is_empty() {
                break;
            }
            for row in &due {
                let deadline = PendingDeadline {
                    id: row.try_get("id")?,
                    ticket: TicketId(row.try_get("ticket_id")?),
                    target: Target::parse(&row.try_get::<String, _>("target")?).unwrap_or(Target::Resolution),
                    stage: Stage::parse(&row.try_get::<String, _>("stage")?).unwrap_or(Stage::Breach),
                    due_at: row.try_get("due_at")?,
                };
                if self.fire(&deadline, now).await? {
                    fired += 1;
                }
            }
            if (due.len() as i64) < BATCH {
                break;
            }
        }
        if fired > 0 {
            self.signals.outbox_changed.notify_waiters();
        }
        Ok(fired)
    }

    /// Fires one deadline unless another instance got there first.
    async fn fire(&self, d: &PendingDeadline, now: i64) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        // The ticket first, then its deadline: the order the desk takes them in, so that the two never wait
        // for each other.
        sqlx::query("UPDATE tickets SET version = version WHERE id = $1")
            .bind(d.ticket.0)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query("DELETE FROM deadlines WHERE id = $1")
            .bind(d.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(false);
        }
        let kind = match d.stage {
            Stage::Warning => EventKind::SlaWarning,
            Stage::Breach => EventKind::SlaBreached,
        };
        let late = now - d.due_at;
        let data = serde_json::json!({ "target": d.target.id(), "due_at": rfc3339(d.due_at), "late_ms": late });
        record(&mut tx, d.ticket, now, kind, None, data).await?;
        let escalated =
            match desk::apply(&mut tx, &self.sla, now, d.ticket, Actor::System, Action::Escalate, None).await {
                Ok(applied) => applied.state,
                Err(DeskError::Sql(e)) => return Err(e),
                Err(e) => {
                    // A deadline of a finished ticket: its row is gone now, and there is nothing to escalate.
                    tracing::warn!(ticket = %d.ticket, error = %e, "sla deadline of a ticket that cannot escalate");
                    tx.commit().await?;
                    return Ok(true);
                }
            };
        let (chat, driver, first): (String, String, Option<String>) = sqlx::query_as(
            "SELECT t.chat, COALESCE(t.driver_name, t.driver), \
             (SELECT m.text FROM messages m WHERE m.ticket_id = t.id ORDER BY m.id LIMIT 1) \
             FROM tickets t WHERE t.id = $1",
        )
        .bind(d.ticket.0)
        .fetch_one(&mut *tx)
        .await?;
        let what = match (d.target, d.stage) {
            (Target::FirstResponse, Stage::Warning) => "首次响应即将超时",
            (Target::FirstResponse, Stage::Breach) => "首次响应已超时",
            (Target::Resolution, Stage::Warning) => "办结即将超时",
            (Target::Resolution, Stage::Breach) => "办结已超时",
        };
        let alert = format!(
            "{what} {} [{} {}] 群 {chat} · {driver}：{}",
            d.ticket,
            escalated.priority,
            escalated.category.id(),
            preview(first.as_deref().unwrap_or_default())
        );
        let alert = Outgoing {
            ticket: Some(d.ticket),
            audience: "supervisors",
            to: None,
            kind: kind.id(),
            text: &alert,
        };
        enqueue(&mut tx, now, &[alert]).await?;
        tx.commit().await?;
        metrics::counter!(crate::metrics::SLA_EVENTS, "target" => d.target.id(), "stage" => d.stage.id()).increment(1);
        tracing::info!(ticket = %d.ticket, target = d.target.id(), stage = d.stage.id(), late_ms = late, "sla deadline fired");
        Ok(true)
    }
}

struct PendingDeadline {
    id: i64,
    ticket: TicketId,
    target: Target,
    stage: Stage,
    due_at: i64,
}
