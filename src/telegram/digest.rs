//! The supervisors' daily digest: yesterday's appeals and response times, and what is still open.
//!
//! At the configured local time, each instance tries to queue the day's digest; the one whose transaction
//! first records `digest:DATE` does, so it is sent once however many instances run.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Time;
use tokio::sync::Notify;

use super::cards::category_name;
use super::{Services, Settings};
use crate::classify::RuleSet;
use crate::reports::{self, GroupBy, Period, Report};
use crate::store::first_time;
use crate::tickets::records::{enqueue, Outgoing};

pub struct Digest {
    services: Services,
    settings: Arc<Settings>,
    at: Time,
}

impl Digest {
    pub fn new(services: Services, settings: Arc<Settings>, (hour, minute): (i8, i8)) -> Digest {
        Digest {
            services,
            settings,
            at: Time::constant(0, 0, 0, 0)
                .with()
                .hour(hour)
                .minute(minute)
                .build()
                .unwrap_or(Time::midnight()),
        }
    }

    pub async fn run(self, stop: Arc<Notify>) {
        loop {
            let at = match self.next_run() {
                Ok(at) => at,
                Err(e) => {
                    tracing::error!(error = %e, "telegram digest: cannot tell when to send; stopped");
                    return;
                }
            };
            tokio::select! {
                () = stop.notified() => return,
                () = self.services.clock.sleep_until(at) => {}
            }
            if let Err(e) = self.send(self.services.clock.now_ms()).await {
                tracing::error!(error = %e, "telegram digest: failed; trying again in a minute");
                tokio::select! {
                    () = stop.notified() => return,
                    () = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        }
    }

    /// The next time the digest is due, in milliseconds since the epoch.
    fn next_run(&self) -> Result<i64, jiff::Error> {
        let now = jiff::Timestamp::from_millisecond(self.services.clock.now_ms())?
            .to_zoned_datetime(self.settings.time_zone.clone());
        let today = now
            .date()
            .to_zoned_datetime(self.settings.time_zone.clone())?
            .with()
            .time(self.at)
            .build()?;
        let next = if today > now { today } else { today.tomorrow()? };
        Ok(next.timestamp().as_millisecond())
    }

    /// Queues the digest of the day before `now`'s local date, unless it already was.
    pub async fn send(&self, now: i64) -> anyhow::Result<bool> {
        let zone = &self.settings.time_zone;
        let today = jiff::Timestamp::from_millisecond(now)?
            .to_zoned_datetime(zone.clone())
            .start_of_day()?;
        let yesterday = today.yesterday()?;
        let period = Period {
            from: yesterday.timestamp().as_millisecond(),
            to: today.timestamp().as_millisecond(),
            group_by: GroupBy::Category,
            time_zone: zone.clone(),
        };
        let report = reports::response_times(&self.services.db, &period, now).await?;
        let failed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE failed_at >= $1 AND failed_at < $2")
            .bind(period.from)
            .bind(period.to)
            .fetch_one(self.services.db.pool())
            .await?;
        let day = yesterday.date().strftime("%-m月%-d日").to_string();
        let mut text = summary(&format!("{day}日报"), &report, self.services.classifier.rules());
        if failed > 0 {
            text.push_str(&format!("\n⚠️ 发送失败的消息 {failed} 条"));
        }
        let mut tx = self.services.db.pool().begin().await?;
        if !first_time(&mut tx, &format!("digest:{}", yesterday.date()), now).await? {
            return Ok(false);
        }
        let digest = Outgoing {
            ticket: None,
            audience: "supervisors",
            to: None,
            kind: "digest",
            text: &text,
        };
        enqueue(&mut tx, now, &[digest]).await?;
        tx.commit().await?;
        self.services.signals.outbox_changed.notify_waiters();
        tracing::info!(day = %yesterday.date(), "telegram digest: queued");
        Ok(true)
    }
}

/// A report as a few lines of text: volume by category, response times, attainment and backlog.
pub fn summary(title: &str, report: &Report, rules: &RuleSet) -> String {
    let total = &report.total;
    let mut lines = vec![format!("📊 {title}：新工单 {} 个", total.tickets)];
    if !report.groups.is_empty() {
        let by_category: Vec<String> = report
            .groups
            .iter()
            .map(|g| format!("{} {}", category_name(rules, &g.key), g.tickets))
            .collect();
        lines.push(format!("类别：{}", by_category.join("，")));
    }
    let minutes = |s: Option<f64>| s.map(|s| format!("{:.0} 分钟", s / 60.0)).unwrap_or_else(|| "—".into());
    lines.push(format!(
        "认领用时中位数 {}；首次响应中位数 {}，P90 {}",
        minutes(total.to_claim.median_seconds),
        minutes(total.to_first_response.median_seconds),
        minutes(total.to_first_response.p90_seconds)
    ));
    let rate = |r: Option<f64>| r.map(|r| format!("{:.0}%", r * 100.0)).unwrap_or_else(|| "—".into());
    lines.push(format!(
        "按时首次响应 {}（{} 个超时）；按时办结 {}（{} 个超时）",
        rate(total.first_response_sla.rate),
        total.first_response_sla.missed,
        rate(total.resolution_sla.rate),
        total.resolution_sla.missed
    ));
    let backlog = &report.backlog;
    lines.push(format!(
        "未办结：待认领 {}，处理中 {}，已回复 {}；已超时 {}",
        backlog.open, backlog.claimed, backlog.responded, backlog.overdue
    ));
    lines.join("\n")
}
