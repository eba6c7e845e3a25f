//! What the team sees of a ticket in its chat: a card that follows the ticket, with buttons to work it.

use jiff::tz::TimeZone;
use serde::Deserialize;
use sqlx::Row;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::classify::{Category, Entity, Evidence, RuleSet as Rules};
use crate::store::Db;
use crate::tickets::TicketId;

/// A ticket as its card shows it.
pub struct Card {
    pub id: TicketId,
    pub chat: String,
    pub chat_title: Option<String>,
    pub driver: String,
    pub category: String,
    pub priority: String,
    pub status: String,
    pub assignee: Option<String>,
    pub opened_at: i64,
    pub claimed_at: Option<i64>,
    pub first_response_due: Option<i64>,
    pub resolution_due: Option<i64>,
    pub first_response_at: Option<i64>,
    pub text: String,
    pub evidence: Vec<Evidence>,
    pub entities: Vec<Entity>,
}

#[derive(Deserialize)]
struct Classified {
    #[serde(default)]
    evidence: Vec<Evidence>,
    #[serde(default)]
    entities: Vec<Entity>,
}

impl Card {
    pub async fn load(db: &Db, id: TicketId) -> Result<Option<Card>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT t.chat, c.title, COALESCE(t.driver_name, t.driver) AS driver, t.category, t.priority, \
             t.status, r.name, t.opened_at, t.claimed_at, t.first_response_due, t.resolution_due, \
             t.first_response_at, m.text, m.classification \
             FROM tickets t \
             LEFT JOIN responders r ON r.id = t.assignee \
             LEFT JOIN chats c ON c.channel = t.channel AND c.chat = t.chat \
             LEFT JOIN messages m ON m.id = (SELECT MIN(id) FROM messages WHERE ticket_id = t.id) \
             WHERE t.id = $1",
        )
        .bind(id.0)
        .fetch_optional(db.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let classified: Option<String> = row.try_get("classification")?;
        let classified = classified
            .and_then(|c| serde_json::from_str::<Classified>(&c).ok())
            .unwrap_or(Classified {
                evidence: Vec::new(),
                entities: Vec::new(),
            });
        Ok(Some(Card {
            id,
            chat: row.try_get("chat")?,
            chat_title: row.try_get("title")?,
            driver: row.try_get("driver")?,
            category: row.try_get("category")?,
            priority: row.try_get("priority")?,
            status: row.try_get("status")?,
            assignee: row.try_get("name")?,
            opened_at: row.try_get("opened_at")?,
            claimed_at: row.try_get("claimed_at")?,
            first_response_due: row.try_get("first_response_due")?,
            resolution_due: row.try_get("resolution_due")?,
            first_response_at: row.try_get("first_response_at")?,
            text: row.try_get::<Option<String>, _>("text")?.unwrap_or_default(),
            evidence: classified.evidence,
            entities: classified.entities,
        }))
    }

    pub fn text(&self, rules: &Rules, zone: &TimeZone) -> String {
        let mark = match self.priority.as_str() {
            "P1" => "🔴",
            "P2" => "🟠",
            _ => "🟡",
        };
        let mut lines = vec![format!(
            "{mark} 工单 {} · {} · {}",
            self.id,
            self.priority,
            category_name(rules, &self.category)
        )];
        let status = match (self.status.as_str(), &self.assignee, self.claimed_at) {
            ("open", _, _) => "待认领".to_owned(),
            ("claimed" | "responded", Some(name), Some(claimed_at)) => format!(
                "{name} 已认领（等了 {}）{}",
                waited(claimed_at - self.opened_at),
                if self.status == "responded" {
                    "，已回复司机"
                } else {
                    ""
                }
            ),
            ("resolved", name, _) => format!(
                "已办结{}",
                name.as_ref().map(|n| format!("（{n}）")).unwrap_or_default()
            ),
            ("closed", _, _) => "已关闭：不是诉求".to_owned(),
            (other, _, _) => status_name(other).to_owned(),
        };
        lines.push(format!("状态：{status}"));
        let mut due = Vec::new();
        if let (Some(at), None) = (self.first_response_due, self.first_response_at) {
            due.push(format!("首次响应 {}", local(at, zone)));
        }
        if let Some(at) = self.resolution_due {
            due.push(format!("办结 {}", local(at, zone)));
        }
        if !due.is_empty() && !matches!(self.status.as_str(), "resolved" | "closed") {
            lines.push(format!("截止：{}", due.join(" · ")));
        }
        let chat = match &self.chat_title {
            Some(title) => format!("{title}（{}）", self.chat),
            None => self.chat.clone(),
        };
        lines.push(format!("来自：{chat} · {}", self.driver));
        lines.push(format!("“{}”", clip(&self.text, 1500)));
        if !self.evidence.is_empty() {
            let evidence: Vec<String> = self
                .evidence
                .iter()
                .map(|e| format!("{}（{} {:+}）", e.rule, e.words.join("、"), e.weight))
                .collect();
            lines.push(format!("依据：{}", evidence.join("；")));
        }
        if !self.entities.is_empty() {
            let entities: Vec<String> = self.entities.iter().map(entity).collect();
            lines.push(format!("信息：{}", entities.join("；")));
        }
        lines.push("回复这条消息即回复司机。".into());
        clip(&lines.join("\n"), MAX_TEXT)
    }

    pub fn buttons(&self) -> InlineKeyboardMarkup {
        let id = self.id.0;
        let mut row = Vec::new();
        match self.status.as_str() {
            "resolved" | "closed" => return InlineKeyboardMarkup::new(Vec::<Vec<_>>::new()),
            "open" => row.push(InlineKeyboardButton::callback("认领", format!("claim:{id}"))),
            _ => {}
        }
        row.push(InlineKeyboardButton::callback("不是诉求", format!("none:{id}")));
        row.push(InlineKeyboardButton::callback("改类别", format!("cats:{id}")));
        InlineKeyboardMarkup::new([row])
    }
}

/// The category picker that "改类别" opens on a card.
pub fn category_buttons(rules: &Rules, id: TicketId) -> InlineKeyboardMarkup {
    let mut rows: Vec<Vec<InlineKeyboardButton>> = Category::ALL
        .chunks(2)
        .map(|pair| {
            pair.iter()
                .map(|c| InlineKeyboardButton::callback(short_name(rules, *c), format!("cat:{}:{}", id.0, c.id())))
                .collect()
        })
        .collect();
    rows.push(vec![InlineKeyboardButton::callback("返回", format!("back:{}", id.0))]);
    InlineKeyboardMarkup::new(rows)
}

/// The buttons a driver rates the help with.
pub fn rating_buttons(id: TicketId) -> InlineKeyboardMarkup {
    let row =
        (1..=5).map(|score| InlineKeyboardButton::callback(format!("{score} 分"), format!("rate:{}:{score}", id.0)));
    InlineKeyboardMarkup::new([row])
}

/// The longest text Telegram accepts in a message, in characters.
pub const MAX_TEXT: usize = 4096;

/// At most `max` characters of `text`, with an ellipsis if it was cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((cut, _)) if text[cut..].chars().nth(1).is_some() => format!("{}…", &text[..cut]),
        _ => text.to_owned(),
    }
}

pub fn category_name<'a>(rules: &'a Rules, id: &'a str) -> &'a str {
    match id.parse::<Category>() {
        Ok(category) => &rules.intent(category).name,
        Err(_) => id,
    }
}

/// The category's name up to its first slash: `交通事故/人身伤亡` → `交通事故`, for buttons.
fn short_name(rules: &Rules, category: Category) -> String {
    let name = &rules.intent(category).name;
    name.split('/').next().unwrap_or(name).to_owned()
}

pub fn status_name(status: &str) -> &str {
    match status {
        "open" => "待认领",
        "claimed" => "处理中",
        "responded" => "已回复",
        "resolved" => "已办结",
        "closed" => "已关闭",
        other => other,
    }
}

/// A time as people in `zone` read it: `11-24 14:35`.
pub fn local(ms: i64, zone: &TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned_datetime(zone.clone()).strftime("%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// How long something waited: `45 秒`, `3 分 12 秒`, `2 小时 5 分`.
pub fn waited(ms: i64) -> String {
    let seconds = (ms / 1000).max(0);
    match (seconds / 3600, seconds / 60 % 60, seconds % 60) {
        (0, 0, s) => format!("{s} 秒"),
        (0, m, s) => format!("{m} 分 {s} 秒"),
        (h, m, _) => format!("{h} 小时 {m} 分"),
    }
}

fn entity(entity: &Entity) -> String {
    match entity {
        Entity::Plate { plate, .. } => format!("车牌 {plate}"),
        Entity::Phone { number, .. } => format!("电话 {number}"),
        Entity::Amount { yuan, approximate, .. } => {
            format!("金额 {}{yuan} 元", if *approximate { "约 " } else { "" })
        }
        Entity::Highway { text } => format!("道路 {text}"),
        Entity::Platform { text } => format!("平台 {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_clipped_with_an_ellipsis() {
        assert_eq!(clip("一二三四五", 5), "一二三四五");
        assert_eq!(clip("一二三四五六", 5), "一二三四…");
        assert_eq!(clip("", 5), "");
    }

    #[test]
    fn waits_read_as_people_say_them() {
        assert_eq!(waited(45_000), "45 秒");
        assert_eq!(waited(192_000), "3 分 12 秒");
        assert_eq!(waited(7_500_000), "2 小时 5 分");
    }
}
