//! What the bot does with each update.
//!
//! Where a message comes from decides what it is: the responders' and supervisors' chats are the team at work
//! (commands, replies to ticket cards, buttons); a private chat is a driver talking to the bot; every other group
//! is a driver group, whose messages all go through intake. Anything else (channel posts, other bots, edits) is
//! left alone on purpose.
//!
//! Redelivery changes nothing: a driver's message is unique by chat and message id in intake, and everything
//! the team does is carried out in one transaction with the update's key (`telegram:update:ID`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use sqlx::Row;
use teloxide::payloads::{AnswerCallbackQuerySetters, EditMessageReplyMarkupSetters};
use teloxide::requests::Requester;
use teloxide::types::{CallbackQuery, Me, Message, Update, UpdateKind, User};
use teloxide::utils::command::{BotCommands, ParseError};
use teloxide::Bot;

use super::cards::{category_buttons, category_name, local, status_name, Card};
use super::commands::{explain, DriverCommand, TeamCommand};
use super::{Services, Settings, CHANNEL};
use crate::auth::{self, Responder, Role};
use crate::classify::Category;
use crate::reports::{self, GroupBy, Period};
use crate::store::first_time;
use crate::tickets::desk::{self, DeskError, Filter};
use crate::tickets::intake::{InboundMessage, IntakeError};
use crate::tickets::records::{enqueue, preview, record, Outgoing, Recipient};
use crate::tickets::state::{Action, Refusal};
use crate::tickets::{EventKind, ResponderId, Status, TicketId};

pub struct Handler {
    services: Services,
    settings: Arc<Settings>,
    /// Chats whose title is stored as this process last saw it.
    titles: Mutex<HashMap<i64, String>>,
}

/// The dispatcher's endpoint for every update.
pub async fn handle(update: Update, bot: Bot, me: Me, handler: Arc<Handler>) -> Result<()> {
    let key = format!("telegram:update:{}", update.id.0);
    match update.kind {
        UpdateKind::Message(message) => handler.message(&key, &bot, &message, &me).await,
        UpdateKind::CallbackQuery(query) => handler.callback(&key, &bot, &query).await,
        UpdateKind::EditedMessage(message) => {
            tracing::debug!(
                chat = message.chat.id.0,
                message = message.id.0,
                "telegram: an edit is ignored; an appeal stands as first written"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Where a message was written, and so who wrote it.
enum Place {
    Team(Role),
    Private,
    DriverGroup,
    /// A channel, or a group outside `driver_groups`.
    Elsewhere,
}

impl Handler {
    pub fn new(services: Services, settings: Arc<Settings>) -> Handler {
        Handler {
            services,
            settings,
            titles: Mutex::new(HashMap::new()),
        }
    }

    fn place(&self, message: &Message) -> Place {
        let chat = message.chat.id;
        if let Some(role) = self.settings.team_role(chat) {
            Place::Team(role)
        } else if message.chat.is_private() {
            Place::Private
        } else if (message.chat.is_group() || message.chat.is_supergroup())
            && self.settings.driver_groups.as_ref().is_none_or(|g| g.contains(&chat.0))
        {
            Place::DriverGroup
        } else {
            Place::Elsewhere
        }
    }

    async fn message(&self, key: &str, bot: &Bot, message: &Message, me: &Me) -> Result<()> {
        let Some(from) = message.from.as_ref() else {
            return Ok(());
        };
        if from.is_bot || message.sender_chat.is_some() {
            // Other bots, and posts made in the name of a channel or of the group itself: nobody to answer.
            tracing::debug!(
                chat = message.chat.id.0,
                "telegram: a message not from a person is ignored"
            );
            return Ok(());
        }
        let text = message.text().or(message.caption()).map(str::trim).unwrap_or_default();
        match self.place(message) {
            Place::Team(role) => self.team(key, bot, message, from, role, text, me).await,
            Place::Private => self.private(key, message, from, text, me).await,
            // Commands in a group are not appeals, and a group is not where the bot explains itself.
            Place::DriverGroup if !text.is_empty() && !text.starts_with('/') => {
                if self.is_team_member(from).await {
                    // Union staff post notices and answers in the driver groups, in the words of the appeals
                    // they are about: theirs are not appeals.
                    tracing::debug!(
                        chat = message.chat.id.0,
                        "telegram: a team member's message in a driver group is not taken in"
                    );
                    return Ok(());
                }
                self.appeal(message, from, text).await
            }
            Place::DriverGroup | Place::Elsewhere => Ok(()),
        }
    }

    /// Whether `from` is enrolled in the team (see [`Handler::member`]). Should the database not answer, they are
    /// taken for a driver: a message wrongly taken in can be closed, an appeal not taken in would be lost.
    async fn is_team_member(&self, from: &User) -> bool {
        match auth::telegram_enrolled(&self.services.db, &from.id.0.to_string()).await {
            Ok(found) => found.is_some(),
            Err(e) => {
                tracing::warn!(error = %e, "telegram: could not tell whether a sender is a team member");
                false
            }
        }
    }

    /// A driver's message, from a group or a private chat, into intake.
    async fn appeal(&self, message: &Message, from: &User, text: &str) -> Result<()> {
        self.remember_title(message).await;
        let inbound = InboundMessage {
            channel: CHANNEL.into(),
            chat: message.chat.id.0.to_string(),
            message_id: message.id.0.to_string(),
            sender: from.id.0.to_string(),
            sender_name: Some(preview(&from.full_name())),
            text: text.to_owned(),
            sent_at: jiff::Timestamp::from_second(message.date.timestamp()).ok(),
            reply_to: message.reply_to_message().map(|r| r.id.0.to_string()),
        };
        // Polling has already moved past this update: a database that is briefly away is waited for, so that the
        // message is not lost.
        let mut wait = Duration::from_millis(200);
        loop {
            match self.services.intake.submit(inbound.clone()).await {
                Ok(outcome) => {
                    tracing::debug!(chat = %inbound.chat, message = %inbound.message_id, disposition = ?outcome.disposition, "telegram: message taken in");
                    return Ok(());
                }
                Err(IntakeError::Invalid(reason)) => {
                    tracing::warn!(chat = %inbound.chat, message = %inbound.message_id, %reason, "telegram: message refused by intake");
                    return Ok(());
                }
                Err(e) if wait < Duration::from_secs(30) => {
                    tracing::warn!(chat = %inbound.chat, message = %inbound.message_id, error = %e, "telegram: intake failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn remember_title(&self, message: &Message) {
        let Some(title) = message.chat.title() else { return };
        let chat = message.chat.id.0;
        if self.titles.lock().expect("not poisoned").get(&chat).map(String::as_str) == Some(title) {
            return;
        }
        let stored = sqlx::query(
            "INSERT INTO chats (channel, chat, title) VALUES ($1, $2, $3) \
             ON CONFLICT (channel, chat) DO UPDATE SET title = excluded.title",
        )
        .bind(CHANNEL)
        .bind(chat.to_string())
        .bind(title)
        .execute(self.services.db.pool())
        .await;
        match stored {
            Ok(_) => {
                self.titles.lock().expect("not poisoned").insert(chat, title.to_owned());
            }
            Err(e) => tracing::warn!(chat, error = %e, "telegram: could not store a chat's title"),
        }
    }

    async fn private(&self, key: &str, message: &Message, from: &User, text: &str, me: &Me) -> Result<()> {
        if !text.starts_with('/') && !text.is_empty() {
            return self.appeal(message, from, text).await;
        }
        let answer = match DriverCommand::parse(text, me.username()) {
            Ok(DriverCommand::Status) => self.status(from).await?,
            // /start, /help, an unknown command, a sticker or a photo without words.
            _ => HELP.to_owned(),
        };
        let chat = message.chat.id.0.to_string();
        let to = Recipient {
            channel: CHANNEL,
            chat: &chat,
            reply_to: None,
        };
        self.answer(key, "driver", Some(to), "help", &answer).await
    }

    /// A driver's tickets, newest first.
    async fn status(&self, from: &User) -> Result<String> {
        let rows = sqlx::query(
            "SELECT id, category, status, opened_at FROM tickets WHERE channel = $1 AND driver = $2 \
             ORDER BY id DESC LIMIT 10",
        )
        .bind(CHANNEL)
        .bind(from.id.0.to_string())
        .fetch_all(self.services.db.pool())
        .await?;
        if rows.is_empty() {
            return Ok("您还没有工单。遇到欠运费、事故、罚款、封号等问题，直接发消息告诉我就行。".into());
        }
        let rules = self.services.classifier.rules();
        let mut lines = vec!["您的工单：".to_owned()];
        for row in rows {
            let category: String = row.try_get("category")?;
            let status: String = row.try_get("status")?;
            lines.push(format!(
                "#{} {} · {} · {}",
                row.try_get::<i64, _>("id")?,
                category_name(rules, &category),
                status_name(&status),
                local(row.try_get("opened_at")?, &self.settings.time_zone)
            ));
        }
        Ok(lines.join("\n"))
    }

    /// Queues an answer to an update, once however often the update is delivered.
    async fn answer(&self, key: &str, audience: &str, to: Option<Recipient<'_>>, kind: &str, text: &str) -> Result<()> {
        let now = self.services.clock.now_ms();
        let mut tx = self.services.db.pool().begin().await?;
        if first_time(&mut tx, &format!("{key}:answer"), now).await? {
            let outgoing = Outgoing {
                ticket: None,
                audience,
                to,
                kind,
                text,
            };
            enqueue(&mut tx, now, &[outgoing]).await?;
        }
        tx.commit().await?;
        self.services.desk.outbox_changed();
        Ok(())
    }

    /// Answers in a team chat, as a reply to the message that asked.
    async fn answer_team(&self, key: &str, role: Role, message: &Message, text: &str) -> Result<()> {
        let chat = message.chat.id.0.to_string();
        let reply_to = message.id.0.to_string();
        let to = Recipient {
            channel: CHANNEL,
            chat: &chat,
            reply_to: Some(&reply_to),
        };
        self.answer(key, audience(role), Some(to), "answer", text).await
    }

    async fn member(&self, from: &User, role: Role) -> Result<Responder> {
        let now = self.services.clock.now_ms();
        let user = from.id.0.to_string();
        Ok(auth::telegram_member(&self.services.db, &user, &preview(&from.full_name()), role, now).await?)
    }

    #[allow(clippy::too_many_arguments)]
    async fn team(
        &self,
        key: &str,
        bot: &Bot,
        message: &Message,
        from: &User,
        role: Role,
        text: &str,
        me: &Me,
    ) -> Result<()> {
        if text.starts_with('/') {
            let command = match TeamCommand::parse(text, me.username()) {
                Ok(command) => command,
                // Not ours: another bot's command, or a word that starts with a slash.
                Err(ParseError::UnknownCommand(_) | ParseError::WrongBotName(_)) => return Ok(()),
                Err(e) => {
                    let usage = format!("{}。发送 /help 查看命令用法。", explain(&e));
                    return self.answer_team(key, role, message, &usage).await;
                }
            };
            let member = self.member(from, role).await?;
            let answer = self.command(key, bot, message, &member, command).await?;
            return self.answer_team(key, role, message, &answer).await;
        }
        // A reply to a ticket card is an answer to the driver.
        let Some(card) = message.reply_to_message() else {
            return Ok(());
        };
        if text.is_empty() {
            return Ok(());
        }
        let Some(ticket) = self.ticket_of_card(message.chat.id.0, card.id.0).await? else {
            return Ok(());
        };
        let member = self.member(from, role).await?;
        let answer = self.reply(key, &member, ticket, text).await?;
        if let Some(answer) = answer {
            self.answer_team(key, role, message, &answer).await?;
        }
        Ok(())
    }

    /// Sends `member` a one-time link to the dashboard in a private chat (never in the group, where another
    /// could use it first), without a preview; returns what to tell the team chat. A repeated update sends
    /// nothing more.
    async fn login_link(&self, key: &str, bot: &Bot, from: &User, member: &Responder) -> Result<String> {
        use teloxide::payloads::SendMessageSetters;
        use teloxide::types::LinkPreviewOptions;
        let Some(base) = &self.settings.public_url else {
            return Ok("网页工作台的地址（public_url）还没有配置，请联系管理员。".to_owned());
        };
        let now = self.services.clock.now_ms();
        let mut tx = self.services.db.pool().begin().await?;
        if !first_time(&mut tx, &format!("{key}:login"), now).await? {
            return Ok("登录链接已经私信给您了。".to_owned());
        }
        tx.commit().await?;
        let token = auth::login::new_link(&self.services.db, member.id, now).await?;
        let text = format!(
            "网页工作台的一次性登录链接（{} 分钟内有效，只能用一次，请勿转发）：\n{}/login/link?token={token}",
            auth::login::LINK_MS / 60_000,
            base.trim_end_matches('/')
        );
        let preview_off = LinkPreviewOptions {
            is_disabled: true,
            url: None,
            prefer_small_media: false,
            prefer_large_media: false,
            show_above_text: false,
        };
        let sent = bot
            .send_message(teloxide::types::ChatId(from.id.0 as i64), text)
            .link_preview_options(preview_off)
            .await;
        Ok(match sent {
            Ok(_) => {
                tracing::info!(member = member.id.0, "telegram: sent a log-in link");
                "登录链接已私信给您。".to_owned()
            }
            Err(e) => {
                tracing::info!(member = member.id.0, error = %e, "telegram: could not send a log-in link privately");
                "我没法私信您：请先私聊我发送 /start，再回来发 /login。".to_owned()
            }
        })
    }

    /// The ticket whose card is message `message` in `chat`.
    async fn ticket_of_card(&self, chat: i64, message: i32) -> Result<Option<TicketId>> {
        let ticket: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT ticket_id FROM outbox WHERE chat = $1 AND sent_message_id = $2 AND kind = 'new_ticket'",
        )
        .bind(chat.to_string())
        .bind(message.to_string())
        .fetch_optional(self.services.db.pool())
        .await?;
        Ok(ticket.flatten().map(TicketId))
    }

    /// A responder's answer to the driver. A ticket nobody has claimed is claimed by whoever answers it.
    /// Returns what to tell the team, if anything: a delivered answer shows on the card.
    async fn reply(&self, key: &str, member: &Responder, ticket: TicketId, text: &str) -> Result<Option<String>> {
        let desk = &self.services.desk;
        let now = self.services.clock.now_ms();
        let claim = desk
            .act_once(
                Some(&format!("{key}:claim")),
                now,
                ticket,
                member.actor(),
                Action::Claim,
                None,
            )
            .await;
        match claim {
            Ok(_) | Err(DeskError::Refused { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        match desk
            .act_once(Some(key), now, ticket, member.actor(), Action::Reply, Some(text))
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => Ok(Some(self.refused(&e, ticket).await?)),
        }
    }

    async fn command(
        &self,
        key: &str,
        bot: &Bot,
        message: &Message,
        member: &Responder,
        command: TeamCommand,
    ) -> Result<String> {
        let now = self.services.clock.now_ms();
        let actor = member.actor();
        let act = |ticket: i64, action: Action, text: Option<String>, done: String| async move {
            let ticket = TicketId(ticket);
            match self
                .services
                .desk
                .act_once(Some(key), now, ticket, actor, action, text.as_deref())
                .await
            {
                Ok(_) => Ok(done),
                Err(e) => self.refused(&e, ticket).await,
            }
        };
        match command {
            TeamCommand::Queue => self.queue(None).await,
            TeamCommand::Mine => self.queue(Some(member.id)).await,
            TeamCommand::Claim(n) => act(n, Action::Claim, None, format!("已认领 #{n}")).await,
            TeamCommand::Reply(n, text) => act(n, Action::Reply, Some(text), format!("已回复司机 #{n}")).await,
            TeamCommand::Note(n, text) => act(n, Action::Note, Some(text), format!("已记下备注 #{n}")).await,
            TeamCommand::Reopen(n) => act(n, Action::Reopen, None, format!("已重新打开 #{n}")).await,
            TeamCommand::Resolve(n, note) => {
                if !note.is_empty() {
                    let noted = self
                        .services
                        .desk
                        .act_once(
                            Some(&format!("{key}:note")),
                            now,
                            TicketId(n),
                            actor,
                            Action::Note,
                            Some(&note),
                        )
                        .await;
                    if let Err(e) = noted {
                        return self.refused(&e, TicketId(n)).await;
                    }
                }
                act(n, Action::Resolve, None, format!("已办结 #{n}")).await
            }
            TeamCommand::Transfer(n, name) => {
                let to = match (
                    name.trim_start_matches('@'),
                    message.reply_to_message().and_then(|m| m.from.as_ref()),
                ) {
                    ("", Some(teammate)) if !teammate.is_bot => Some(self.member(teammate, Role::Responder).await?.id),
                    ("", _) => {
                        return Ok(
                            "请写上同事的名字：/transfer 工单号 姓名，或回复同事的消息发送 /transfer 工单号".into(),
                        )
                    }
                    (name, _) => self.responder_named(name).await?,
                };
                match to {
                    Some(to) => act(n, Action::Transfer { to }, None, format!("已转交 #{n}")).await,
                    None => Ok(format!("没有叫“{name}”的同事")),
                }
            }
            TeamCommand::Stats => self.stats(now).await,
            TeamCommand::Login => match &message.from {
                Some(from) => self.login_link(key, bot, from, member).await,
                None => Ok("无法识别您的 Telegram 账号。".to_owned()),
            },
            TeamCommand::Help => Ok(TeamCommand::descriptions().to_string()),
        }
    }

    async fn responder_named(&self, name: &str) -> Result<Option<ResponderId>> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM responders WHERE name = $1")
            .bind(name)
            .fetch_optional(self.services.db.pool())
            .await?;
        Ok(id.map(ResponderId))
    }

    /// Why an action was refused, as the team reads it.
    async fn refused(&self, error: &DeskError, ticket: TicketId) -> Result<String> {
        let name = |id: i64| async move {
            let name: Option<String> = sqlx::query_scalar("SELECT name FROM responders WHERE id = $1")
                .bind(id)
                .fetch_optional(self.services.db.pool())
                .await?;
            Ok::<_, sqlx::Error>(name.unwrap_or_else(|| format!("#{id}")))
        };
        Ok(match error {
            DeskError::NotFound(_) => format!("没有工单 {ticket}"),
            DeskError::Invalid(reason) => reason.clone(),
            DeskError::Sql(e) => return Err(anyhow::anyhow!("database error: {e}")),
            DeskError::Refused { refusal, .. } => match refusal {
                Refusal::AlreadyClaimed(by) => format!("工单 {ticket} 已被 {} 认领", name(*by).await?),
                Refusal::NotClaimed => format!("工单 {ticket} 还没有人认领，请先认领"),
                Refusal::NotAssignee(by) | Refusal::SameAssignee(by) => {
                    format!("工单 {ticket} 由 {} 负责", name(*by).await?)
                }
                Refusal::Finished(status) => format!("工单 {ticket} {}，需要先重新打开", status_name(status.id())),
                Refusal::NotFinished(status) => format!("工单 {ticket} 还在{}，不用重新打开", status_name(status.id())),
                Refusal::SameCategory(_) => format!("工单 {ticket} 已经是这个类别"),
                Refusal::NotSystem => "只有系统可以升级工单".into(),
            },
        })
    }

    /// The queue (or one responder's part of it), most urgent first.
    async fn queue(&self, mine: Option<ResponderId>) -> Result<String> {
        let filter = Filter {
            assignee: mine,
            limit: Some(1000),
            ..Filter::default()
        };
        let tickets = desk::list(&self.services.db, &filter).await?;
        if tickets.is_empty() {
            return Ok(if mine.is_some() {
                "您手上没有未办结的工单。"
            } else {
                "没有待处理的工单。"
            }
            .into());
        }
        let rules = self.services.classifier.rules();
        let lines: Vec<String> = tickets
            .iter()
            .take(15)
            .map(|t| {
                let due = t
                    .next_due
                    .as_deref()
                    .and_then(|d| d.parse::<jiff::Timestamp>().ok())
                    .map(|d| format!(" · 截止 {}", local(d.as_millisecond(), &self.settings.time_zone)))
                    .unwrap_or_default();
                let who = t
                    .assignee_name
                    .as_deref()
                    .map(|n| format!("（{n}）"))
                    .unwrap_or_default();
                format!(
                    "#{} {} {} · {}{who}{due} · {}",
                    t.id.0,
                    t.priority,
                    category_name(rules, &t.category),
                    status_name(&t.status),
                    t.driver_name.as_deref().unwrap_or(&t.driver)
                )
            })
            .collect();
        let more = tickets.len().saturating_sub(15);
        let mut text = lines.join("\n");
        if more > 0 {
            text.push_str(&format!("\n…还有 {more} 个"));
        }
        Ok(text)
    }

    /// Today's figures, as of `now`.
    async fn stats(&self, now: i64) -> Result<String> {
        let zone = &self.settings.time_zone;
        let today = jiff::Timestamp::from_millisecond(now)?
            .to_zoned_datetime(zone.clone())
            .start_of_day()?;
        let period = Period {
            from: today.timestamp().as_millisecond(),
            to: now + 1,
            group_by: GroupBy::Category,
            time_zone: zone.clone(),
        };
        let report = reports::response_times(&self.services.db, &period, now).await?;
        Ok(super::digest::summary(
            "今天",
            &report,
            self.services.classifier.rules(),
        ))
    }

    async fn callback(&self, key: &str, bot: &Bot, query: &CallbackQuery) -> Result<()> {
        let data = query.data.as_deref().unwrap_or_default();
        let (verb, rest) = data.split_once(':').unwrap_or((data, ""));
        let answer = match verb {
            "rate" => self.rate(key, query, rest).await?,
            _ => self.card_button(key, bot, query, verb, rest).await?,
        };
        let mut request = bot.answer_callback_query(query.id.clone());
        if let Some((text, alert)) = answer {
            request = request.text(text).show_alert(alert);
        }
        if let Err(e) = request.await {
            tracing::debug!(error = %e, "telegram: could not answer a button press");
        }
        Ok(())
    }

    /// A button on a ticket card. Returns the note to show the one who pressed it, and whether as an alert.
    async fn card_button(
        &self,
        key: &str,
        bot: &Bot,
        query: &CallbackQuery,
        verb: &str,
        rest: &str,
    ) -> Result<Option<(String, bool)>> {
        let chat = query.message.as_ref().map(|m| m.chat().id);
        let Some(role) = chat.and_then(|chat| self.settings.team_role(chat)) else {
            return Ok(Some(("这个按钮只在工作群里有效".into(), true)));
        };
        let mut parts = rest.split(':');
        let Some(ticket) = parts.next().and_then(|n| n.parse::<i64>().ok()).map(TicketId) else {
            return Ok(None);
        };
        let action = match verb {
            "claim" => Action::Claim,
            "none" => Action::NotAnAppeal,
            "cat" => match parts.next().and_then(|c| c.parse::<Category>().ok()) {
                Some(category) => Action::Reclassify { category },
                None => return Ok(None),
            },
            "cats" | "back" => {
                let buttons = match verb {
                    "cats" => category_buttons(self.services.classifier.rules(), ticket),
                    _ => match Card::load(&self.services.db, ticket).await? {
                        Some(card) => card.buttons(),
                        None => return Ok(None),
                    },
                };
                if let Some(message) = &query.message {
                    let edited = bot
                        .edit_message_reply_markup(message.chat().id, message.id())
                        .reply_markup(buttons)
                        .await;
                    if let Err(e) = edited {
                        tracing::debug!(error = %e, "telegram: could not change a card's buttons");
                    }
                }
                return Ok(None);
            }
            _ => return Ok(None),
        };
        let member = self.member(&query.from, role).await?;
        let now = self.services.clock.now_ms();
        match self
            .services
            .desk
            .act_once(Some(key), now, ticket, member.actor(), action, None)
            .await
        {
            Ok(_) => Ok(Some((
                match action {
                    Action::Claim => format!("已认领 {ticket}"),
                    Action::NotAnAppeal => format!("已关闭 {ticket}：不是诉求"),
                    _ => format!("已改类别 {ticket}"),
                },
                false,
            ))),
            Err(e) => Ok(Some((self.refused(&e, ticket).await?, true))),
        }
    }

    /// A driver's rating of a resolved ticket: only the ticket's driver may rate it, once.
    async fn rate(&self, key: &str, query: &CallbackQuery, rest: &str) -> Result<Option<(String, bool)>> {
        let mut parts = rest.split(':');
        let (Some(ticket), Some(score)) = (
            parts.next().and_then(|n| n.parse::<i64>().ok()),
            parts
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| (1..=5).contains(s)),
        ) else {
            return Ok(None);
        };
        let ticket = TicketId(ticket);
        let row = sqlx::query("SELECT driver, status FROM tickets WHERE id = $1 AND channel = $2")
            .bind(ticket.0)
            .bind(CHANNEL)
            .fetch_optional(self.services.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        if row.try_get::<String, _>("driver")? != query.from.id.0.to_string() {
            return Ok(Some(("只有提出诉求的司机本人可以评分".into(), true)));
        }
        let status: Status = row
            .try_get::<String, _>("status")?
            .parse()
            .map_err(anyhow::Error::msg)?;
        if status != Status::Resolved {
            return Ok(Some(("工单办结后才能评分".into(), true)));
        }
        let now = self.services.clock.now_ms();
        let mut tx = self.services.db.pool().begin().await?;
        if !first_time(&mut tx, key, now).await? {
            return Ok(None);
        }
        let rated = sqlx::query(
            "INSERT INTO ratings (ticket_id, score, rated_at) VALUES ($1, $2, $3) ON CONFLICT (ticket_id) DO NOTHING",
        )
        .bind(ticket.0)
        .bind(score)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if rated.rows_affected() == 0 {
            tx.commit().await?;
            return Ok(Some(("您已经评过分了，谢谢！".into(), false)));
        }
        record(
            &mut tx,
            ticket,
            now,
            EventKind::Rated,
            None,
            serde_json::json!({ "score": score }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(%ticket, score, "telegram: rated");
        Ok(Some((format!("谢谢您的评分：{score} 分"), false)))
    }
}

fn audience(role: Role) -> &'static str {
    match role {
        Role::Responder => "responders",
        Role::Supervisor | Role::Admin => "supervisors",
    }
}

const HELP: &str = "您好，我是货车司机工会的诉求助手。\n\
遇到欠运费、交通事故、车辆故障、罚款扣分、平台封号、装卸纠纷、人身安全等问题，直接在群里或这里用文字说清楚：\
什么事、在哪里、车牌和电话。我会登记成工单，工会的同事会尽快联系您，并在这里告诉您进展。\n\
/status 查看我的工单\n\
紧急情况请先拨打 110（报警）、120（急救）、122（交通事故）。";
