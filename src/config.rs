//! Typed configuration: built-in defaults, then a TOML file (`--config`), then `SUQIU_` environment variables.
//!
//! Every key can be set from the environment: `SUQIU_DATABASE_URL`, `SUQIU_LISTEN`, and nested keys with a
//! double underscore, such as `SUQIU_INTAKE__FOLLOW_UP_WINDOW=20m` or `SUQIU_SLA__WARN_AT=0.75`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::sla::SlaConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the embedded database lives when `database_url` is not set.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; unset means a SQLite file in `data_dir`.
    pub database_url: Option<String>,
    /// The HTTP address of the API and the dashboard.
    pub listen: SocketAddr,
    /// A directory with `intents/` and/or `dictionaries/` that replace the built-in rules.
    pub rules: Option<PathBuf>,
    pub intake: IntakeConfig,
    pub sla: SlaConfig,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            rules: None,
            intake: IntakeConfig::default(),
            sla: SlaConfig::default(),
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

const TOP_LEVEL_KEYS: [&str; 6] = ["data_dir", "database_url", "listen", "rules", "intake", "sla"];

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
        figment = figment.merge(env);
        figment.extract().map_err(|e| ConfigError(Box::new(e)))
    }

    /// The database to use: the configured URL, or a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("suqiu.db").display()),
        }
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
    fn an_unknown_key_is_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("suqiu.toml", "listn = \"127.0.0.1:9000\"\n")?;
            let err = Config::load(Some(Path::new("suqiu.toml"))).unwrap_err().to_string();
            assert!(err.contains("listn"), "{err}");
            Ok(())
        });
    }
}
