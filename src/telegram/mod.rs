//! Telegram: the driver groups, the bot's private chats, the responders' chat and the supervisors' chat.
//!
//! Inbound, every update goes to [`updates`]: drivers' messages into the same intake as the HTTP API, the
//! team's buttons, replies and commands into the same desk. Outbound, nothing is sent directly: messages wait
//! in the outbox, and [`sender`] delivers them through teloxide's throttling, retrying what failed. [`digest`]
//! queues the supervisors' daily digest. Updates arrive by long polling, or in webhook mode through a route of
//! the service's own HTTP server.

pub(crate) mod cards;
mod commands;
mod digest;
mod sender;
mod updates;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use jiff::tz::TimeZone;
use teloxide::adaptors::throttle::Limits;
use teloxide::dispatching::ShutdownToken;
use teloxide::dispatching::{DefaultKey, Dispatcher, UpdateHandler};
use teloxide::error_handlers::LoggingErrorHandler;
use teloxide::payloads::SetMyCommandsSetters;
use teloxide::requests::{Requester, RequesterExt};
use teloxide::types::ChatId;
use teloxide::update_listeners::{webhooks, Polling, UpdateListener};
use teloxide::Bot;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::auth::Role;
use crate::classify::Classifier;
use crate::clock::SharedClock;
use crate::config::{Config, TelegramConfig, UpdateMode};
use crate::store::Db;
use crate::tickets::desk::Desk;
use crate::tickets::intake::Intake;
use crate::Signals;

pub use sender::Delivery;

/// The channel name of Telegram in messages, tickets and the outbox.
pub const CHANNEL: &str = "telegram";

/// What the Telegram side needs to know, read from the configuration once.
#[derive(Debug, Clone)]
pub struct Settings {
    pub responders_chat: Option<ChatId>,
    pub supervisors_chat: Option<ChatId>,
    /// `None`: every group but the team's chats is a driver group.
    pub driver_groups: Option<HashSet<i64>>,
    pub time_zone: TimeZone,
    pub max_attempts: u32,
    /// Local time of the daily digest, (hour, minute).
    pub digest_at: Option<(i8, i8)>,
    /// The dashboard's address, for log-in links.
    pub public_url: Option<String>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings> {
        let telegram = &config.telegram;
        let digest_at = telegram.digest_at.as_deref().map(parse_time_of_day).transpose()?;
        if telegram.max_attempts == 0 {
            bail!("telegram.max_attempts must be at least 1");
        }
        Ok(Settings {
            responders_chat: telegram.responders_chat.map(ChatId),
            supervisors_chat: telegram.supervisors_chat.map(ChatId),
            driver_groups: telegram.driver_groups.as_ref().map(|g| g.iter().copied().collect()),
            time_zone: config.time_zone.clone(),
            max_attempts: telegram.max_attempts,
            digest_at,
            public_url: config.public_url.clone(),
        })
    }

    /// Who acts from `chat`, if it is one of the team's chats.
    fn team_role(&self, chat: ChatId) -> Option<Role> {
        if Some(chat) == self.responders_chat {
            Some(Role::Responder)
        } else if Some(chat) == self.supervisors_chat {
            Some(Role::Supervisor)
        } else {
            None
        }
    }

    /// Where a message for `audience` goes when its row names no chat.
    fn team_chat(&self, audience: &str) -> Option<ChatId> {
        match audience {
            "responders" => self.responders_chat,
            "supervisors" => self.supervisors_chat,
            _ => None,
        }
    }
}

fn parse_time_of_day(text: &str) -> Result<(i8, i8)> {
    let parsed = text.split_once(':').and_then(|(h, m)| {
        let (h, m) = (h.trim().parse::<i8>().ok()?, m.trim().parse::<i8>().ok()?);
        ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
    });
    parsed.with_context(|| format!("telegram.digest_at {text:?} is not a time of day such as \"08:30\""))
}

/// The service's parts the bot works through.
#[derive(Clone)]
pub struct Services {
    pub db: Db,
    pub intake: Intake,
    pub desk: Desk,
    pub classifier: Arc<Classifier>,
    pub clock: SharedClock,
    pub signals: Signals,
}

/// The bot, started: its tasks, and in webhook mode the route that receives updates.
pub struct Running {
    pub webhook: Option<axum::Router>,
    dispatcher: JoinHandle<()>,
    shutdown: ShutdownToken,
    stop: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops taking updates, lets the updates in hand finish, and stops the sender and the digest.
    pub async fn stop(self) {
        match self.shutdown.shutdown() {
            Ok(stopping) => {
                stopping.await;
                let _ = self.dispatcher.await;
            }
            // Not dispatching yet (Telegram unreachable since start): nothing in hand to finish.
            Err(_) => self.dispatcher.abort(),
        }
        self.stop.notify_waiters();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Starts the bot if a token is configured: `None` (and one line in the log) if not.
pub async fn start(config: &Config, services: Services) -> Result<Option<Running>> {
    let telegram = &config.telegram;
    let Some(token) = telegram.token.clone() else {
        tracing::warn!("telegram: no token configured (SUQIU_TELEGRAM_TOKEN); running without Telegram");
        return Ok(None);
    };
    let settings = Arc::new(Settings::from_config(config)?);
    let bot = bot(&token, telegram)?;
    let stop = Arc::new(Notify::new());

    let delivery = Delivery::new(
        services.db.clone(),
        bot.clone().throttle(Limits::default()),
        services.classifier.clone(),
        services.clock.clone(),
        settings.clone(),
    );
    let outbox_changed = services.signals.outbox_changed.clone();
    let stopped = stop.clone();
    let mut tasks = vec![tokio::spawn(async move {
        delivery.run(outbox_changed, stopped).await;
    })];
    if let Some(at) = settings.digest_at {
        let digest = digest::Digest::new(services.clone(), settings.clone(), at);
        let stopped = stop.clone();
        tasks.push(tokio::spawn(async move { digest.run(stopped).await }));
    }

    let handler = updates::Handler::new(services, settings.clone());
    let dispatcher = Dispatcher::builder(bot.clone(), schema())
        .dependencies(teloxide::dptree::deps![Arc::new(handler)])
        .default_handler(|_| async {})
        .error_handler(LoggingErrorHandler::with_custom_text("telegram: an update failed"))
        .build();
    let shutdown = dispatcher.shutdown_token();
    let (dispatcher, webhook) = match telegram.mode {
        UpdateMode::Polling => {
            let listener = Polling::builder(bot.clone())
                .timeout(Duration::from_secs(POLL_TIMEOUT))
                .delete_webhook()
                .await
                .build();
            (dispatch(bot.clone(), dispatcher, listener), None)
        }
        UpdateMode::Webhook => {
            let url = telegram
                .webhook_url
                .as_deref()
                .context("telegram.mode = \"webhook\" needs telegram.webhook_url")?;
            let url = url
                .parse()
                .with_context(|| format!("telegram.webhook_url {url:?} is not a URL"))?;
            let secret = telegram
                .webhook_secret
                .clone()
                .context("telegram.mode = \"webhook\" needs telegram.webhook_secret")?;
            let options = webhooks::Options::new(config.listen, url).secret_token(secret);
            // Stopping the listener would delete the webhook, which other instances still serve: it is left be.
            let (listener, _stop_flag, router) = webhooks::axum_to_router(bot.clone(), options)
                .await
                .context("failed to set the Telegram webhook")?;
            (dispatch(bot.clone(), dispatcher, listener), Some(router))
        }
    };
    set_commands(&bot, &settings).await;
    tracing::info!(mode = ?telegram.mode, "telegram: bot started");
    Ok(Some(Running {
        webhook,
        dispatcher,
        shutdown,
        stop,
        tasks,
    }))
}

/// Hands the listener's updates to the dispatcher, once the Bot API is reachable.
fn dispatch<L>(bot: Bot, mut dispatcher: Dispatcher<Bot, anyhow::Error, DefaultKey>, listener: L) -> JoinHandle<()>
where
    L: UpdateListener + Send + 'static,
    L::Err: std::fmt::Debug + Send,
{
    tokio::spawn(async move {
        reachable(&bot).await;
        let failed = LoggingErrorHandler::with_custom_text("telegram: receiving updates failed");
        dispatcher.dispatch_with_listener(listener, failed).await;
    })
}

/// Waits until the Bot API answers `getMe`, which the dispatcher needs before it starts.
async fn reachable(bot: &Bot) {
    let mut wait = Duration::from_secs(1);
    while let Err(e) = bot.get_me().await {
        tracing::warn!(error = %e, "telegram: the Bot API is not reachable; trying again in {wait:?}");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(60));
    }
}

/// Seconds a long poll waits for updates.
const POLL_TIMEOUT: u64 = 10;

fn bot(token: &str, telegram: &TelegramConfig) -> Result<Bot> {
    // The client's timeout must outlast a long poll.
    let client = teloxide::net::default_reqwest_settings()
        .timeout(Duration::from_secs(POLL_TIMEOUT + 10))
        .build()
        .context("failed to build the HTTP client")?;
    let mut bot = Bot::with_client(token, client);
    if let Some(url) = &telegram.api_url {
        let url = url
            .parse()
            .with_context(|| format!("telegram.api_url {url:?} is not a URL"))?;
        bot = bot.set_api_url(url);
    }
    Ok(bot)
}

fn schema() -> UpdateHandler<anyhow::Error> {
    teloxide::dptree::endpoint(updates::handle)
}

/// Tells Telegram which commands to offer where: drivers in private chats, the team in its chats.
async fn set_commands(bot: &Bot, settings: &Settings) {
    use teloxide::types::{BotCommandScope, Recipient};
    use teloxide::utils::command::BotCommands;
    let mut scopes = vec![(
        BotCommandScope::AllPrivateChats,
        commands::DriverCommand::bot_commands(),
    )];
    for chat in [settings.responders_chat, settings.supervisors_chat]
        .into_iter()
        .flatten()
    {
        let scope = BotCommandScope::Chat {
            chat_id: Recipient::Id(chat),
        };
        scopes.push((scope, commands::TeamCommand::bot_commands()));
    }
    for (scope, list) in scopes {
        if let Err(e) = bot.set_my_commands(list).scope(scope).await {
            tracing::warn!(error = %e, "telegram: could not set the command menu");
        }
    }
}
