//! Typed configuration: built-in defaults, then a TOML file (`--config`), then `SUQIU_` environment variables.
//!
//! Every key can be set from the environment: `SUQIU_DATABASE_URL`, `SUQIU_LISTEN`, and nested keys with a
//! double underscore, such as `SUQIU_INTAKE__FOLLOW_UP_WINDOW=20m` or `SUQIU_SLA__WARN_AT=0.75`. The Telegram
//! keys take a single one: `SUQIU_TELEGRAM_TOKEN`, `SUQIU_TELEGRAM_RESPONDERS_CHAT`…

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::sla::SlaConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded database lives when `database_url` is not set.
    pub data_dir: PathBuf,
    /// This instance's full-text search index; unset means `search` in `data_dir`.
    pub search_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://…`; unset means a SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// The HTTP address of the API and the dashboard.
    pub listen: SocketAddr,
    /// The address people open the dashboard at (`https://suqiu.example.org`), for the bot's log-in links;
    /// with `https` the session cookie is marked Secure.
    pub public_url: Option<String>,
    /// A directory with `intents/` and/or `dictionaries/` that replace the built-in rules.
    pub rules: Option<PathBuf>,
    /// The time zone that people read times in: alerts, cards, digests and reports.
    #[serde(with = "crate::sla::iana")]
    pub time_zone: TimeZone,
    pub intake: IntakeConfig,
    pub sla: SlaConfig,
    pub telegram: TelegramConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    /// A driver's messages within this time of their last message to an open ticket attach to it.
    #[serde(with = "humantime_serde")]
    pub follow_up_window: Duration,
    /// The most messages written to the database in one transaction (group commit).
    pub max_batch: usize,
}

/// The Telegram bot. Without a token, suqiu runs without Telegram.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The bot's token from @BotFather.
    pub token: Option<String>,
    /// The Bot API server; unset means Telegram's own (`https://api.telegram.org`).
    pub api_url: Option<String>,
    /// The response team's chat: new tickets appear there as cards, and actions there come from responders.
    pub responders_chat: Option<i64>,
    /// The supervisors' chat: SLA warnings and breaches, failed deliveries and the daily digest.
    pub supervisors_chat: Option<i64>,
    /// If set, only these groups are driver groups; otherwise every other group the bot is in.
    pub driver_groups: Option<Vec<i64>>,
    /// How updates arrive: `polling` (one instance) or `webhook` (behind this service's HTTP server).
    pub mode: UpdateMode,
    /// The public HTTPS address Telegram posts updates to, in webhook mode; its path is served by `listen`.
    pub webhook_url: Option<String>,
    /// The secret Telegram sends with each webhook update (`X-Telegram-Bot-Api-Secret-Token`).
    pub webhook_secret: Option<String>,
    /// When the supervisors' daily digest is sent, local time (`time_zone`), such as `"08:30"`; unset: never.
    pub digest_at: Option<String>,
    /// Tries before an outbound message is marked failed and reported to the supervisors.
    pub max_attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateMode {
    Polling,
    Webhook,
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("api_url", &self.api_url)
            .field("responders_chat", &self.responders_chat)
            .field("supervisors_chat", &self.supervisors_chat)
            .field("driver_groups", &self.driver_groups)
            .field("mode", &self.mode)
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &self.webhook_secret.as_ref().map(|_| "***"))
            .field("digest_at", &self.digest_at)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            token: None,
            api_url: None,
            responders_chat: None,
            supervisors_chat: None,
            driver_groups: None,
            mode: UpdateMode::Polling,
            webhook_url: None,
            webhook_secret: None,
            digest_at: Some("08:30".into()),
            max_attempts: 8,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            search_dir: None,
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            rules: None,
            time_zone: TimeZone::get("Asia/Shanghai").expect("the time zone database knows Asia/Shanghai"),
            intake: IntakeConfig::default(),
            sla: SlaConfig::default(),
            telegram: TelegramConfig::default(),
        }
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            follow_up_window: Duration::from_secs(30 * 60),
            max_batch: 256,
        }
    }
}

const TOP_LEVEL_KEYS: [&str; 10] = [
    "data_dir",
    "search_dir",
    "database_url",
    "listen",
    "public_url",
    "rules",
    "time_zone",
    "intake",
    "sla",
    "telegram",
];

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Defaults, then `file` if given (it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(Box::new(figment::Error::from(format!(
                    "configuration file {} not found",
                    file.display()
                )))));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only variables that name a key: others with the prefix (SUQIU_LOG) belong to other parts.
        let env = Env::prefixed("SUQIU_")
            .filter(|key| {
                let top = key.as_str().split("__").next().unwrap_or_default().to_ascii_lowercase();
                TOP_LEVEL_KEYS.contains(&top.as_str())
            })
            .split("__");
        let telegram = Env::prefixed("SUQIU_TELEGRAM_")
            .filter(|key| !key.as_str().starts_with('_'))
            .map(|key| format!("telegram.{key}").into());
        figment = figment.merge(env).merge(telegram);
        figment.extract().map_err(|e| ConfigError(Box::new(e)))
    }

    /// The database to use: the configured URL, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("suqiu.db").display()),
        }
    }

    /// The search index's directory: the configured one, or `search` in the data directory.
    pub fn search_dir(&self) -> PathBuf {
        self.search_dir.clone().unwrap_or_else(|| self.data_dir.join("search"))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail returns its own large error type
mod tests {
    use super::*;

    #[test]
    fn the_defaults_need_no_file_and_use_sqlite_in_the_data_directory() {
        figment::Jail::expect_with(|_| {
            let config = Config::load(None).unwrap();
            assert_eq!(config.database_url(), "sqlite://data/suqiu.db");
            assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
            Ok(())
        });
    }

    #[test]
    fn the_environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "suqiu.toml",
                "listen = \"127.0.0.1:9000\"\n[intake]\nfollow_up_window = \"10m\"\n",
            )?;
            jail.set_env("SUQIU_LISTEN", "127.0.0.1:9100");
            jail.set_env("SUQIU_SLA__WARN_AT", "0.5");
            let config = Config::load(Some(Path::new("suqiu.toml"))).unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:9100");
            assert_eq!(config.intake.follow_up_window, Duration::from_secs(600));
            assert_eq!(config.sla.warn_at, 0.5);
            Ok(())
        });
    }

    #[test]
    fn telegram_keys_come_from_their_own_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "suqiu.toml",
                "[telegram]\nresponders_chat = -1\ndigest_at = \"07:00\"\n",
            )?;
            jail.set_env("SUQIU_TELEGRAM_TOKEN", "123456:ABC-def");
            jail.set_env("SUQIU_TELEGRAM_API_URL", "http://127.0.0.1:9999");
            jail.set_env("SUQIU_TELEGRAM_RESPONDERS_CHAT", "-1001234");
            jail.set_env("SUQIU_TELEGRAM_SUPERVISORS_CHAT", "-1005678");
            let config = Config::load(Some(Path::new("suqiu.toml"))).unwrap();
            let telegram = &config.telegram;
            assert_eq!(telegram.token.as_deref(), Some("123456:ABC-def"));
            assert_eq!(telegram.api_url.as_deref(), Some("http://127.0.0.1:9999"));
            assert_eq!(telegram.responders_chat, Some(-1001234));
            assert_eq!(telegram.supervisors_chat, Some(-1005678));
            assert_eq!(telegram.digest_at.as_deref(), Some("07:00"));
            assert!(
                !format!("{config:?}").contains("ABC-def"),
                "the token is kept out of debug output"
            );
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("suqiu.toml", "listn = \"127.0.0.1:9000\"\n")?;
            let err = Config::load(Some(Path::new("suqiu.toml"))).unwrap_err().to_string();
            assert!(err.contains("listn"), "{err}");
            Ok(())
        });
    }
}
