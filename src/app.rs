//! The service assembled: configuration in; the database migrated, intake started and the HTTP server bound.
//!
//! [`Application::build`] binds the listener before returning, so a caller (or a test, with port 0) knows the
//! address; [`Application::run`] serves until the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::auth::IngestKeys;
use crate::classify::Classifier;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::dashboard::{self, Attempts, DashState};
use crate::search::{Indexer, SearchIndex};
use crate::sla::Scheduler;
use crate::store::Db;
use crate::telegram;
use crate::tickets::desk::Desk;
use crate::tickets::intake::{Intake, IntakeSettings};
use crate::web::{self, AppState};
use crate::Signals;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    dashboard: DashState,
    scheduler: Scheduler,
    indexer: Indexer,
    telegram: Option<telegram::Running>,
}

impl Application {
    pub async fn build(config: &Config, classifier: Arc<Classifier>, clock: SharedClock) -> Result<Application> {
        config.sla.validate().map_err(anyhow::Error::msg)?;
        let db = open_database(config).await?;
        let signals = Signals::default();
        let settings = IntakeSettings::from_config(config, signals.clone());
        let (intake, _writer) = Intake::start(db.clone(), classifier.clone(), clock.clone(), settings);
        let sla = Arc::new(config.sla.clone());
        let scheduler = Scheduler::new(db.clone(), clock.clone(), sla.clone(), signals.clone());
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        let desk = Desk::new(db.clone(), sla, signals.clone());
        let search =
            SearchIndex::from_config(config, classifier.lexicon()).context("failed to open the search index")?;
        let indexer = Indexer::new(&search, db.clone())
            .await
            .context("failed to start the search indexer")?;
        let services = telegram::Services {
            db: db.clone(),
            intake: intake.clone(),
            desk: desk.clone(),
            classifier,
            clock: clock.clone(),
            signals,
        };
        let dashboard = DashState {
            desk: desk.clone(),
            clock: clock.clone(),
            classifier: services.classifier.clone(),
            time_zone: config.time_zone.clone(),
            secure_cookies: config.public_url.as_deref().is_some_and(|u| u.starts_with("https://")),
            attempts: Arc::new(Attempts::new()),
            search,
        };
        let telegram = telegram::start(config, services).await?;
        let state = AppState {
            intake,
            ingest_keys: Arc::new(IngestKeys::new(db)),
            desk,
            clock,
        };
        Ok(Application {
            listener,
            state,
            dashboard,
            scheduler,
            indexer,
            telegram,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves, and fires SLA deadlines, until `shutdown` completes; then finishes the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let db = self.state.desk.db().clone();
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let scheduler = self.scheduler;
        let scheduler = tokio::spawn(async move { scheduler.run(stopped.notified()).await });
        // The indexer has a signal of its own: `stop` wakes one waiter, the scheduler.
        let stop_indexer = Arc::new(Notify::new());
        let indexing = tokio::spawn(self.indexer.run(stop_indexer.clone()));
        crate::metrics::handle();
        let mut router = web::router(self.state)
            .merge(dashboard::router(self.dashboard))
            .layer(axum::middleware::from_fn(crate::metrics::time_requests));
        let mut telegram = self.telegram;
        if let Some(webhook) = telegram.as_mut().and_then(|t| t.webhook.take()) {
            router = router.merge(webhook);
        }
        let served = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("the HTTP server failed");
        if let Some(telegram) = telegram {
            telegram.stop().await;
        }
        stop.notify_one();
        let _ = scheduler.await;
        stop_indexer.notify_one();
        let _ = indexing.await;
        db.close().await;
        served
    }
}

/// The configured database, connected but not migrated.
pub async fn connect(config: &Config) -> Result<Db> {
    let url = config.database_url();
    Db::connect(&url)
        .await
        .with_context(|| format!("failed to open the database {}", redact(&url)))
}

/// The configured database, connected and migrated.
pub async fn open_database(config: &Config) -> Result<Db> {
    let db = connect(config).await?;
    db.migrate().await?;
    Ok(db)
}

/// A database URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(
            redact("postgres://suqiu:s3cret@db:5432/suqiu"),
            "postgres://suqiu:***@db:5432/suqiu"
        );
        assert_eq!(redact("sqlite://data/suqiu.db"), "sqlite://data/suqiu.db");
    }
}
