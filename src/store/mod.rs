//! The database: one connection pool over SQLite (the embedded default) or PostgreSQL (several instances),
//! chosen by the URL, and the migrations of each in `migrations/`.
//!
//! Queries are written once in the SQL both accept (`$1` parameters, `RETURNING`, `ON CONFLICT`); where the
//! two differ, [`Backend`] says which one is in use.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database url {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("failed to create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("failed to connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("failed to migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// A pool of connections to the configured database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects to `url`; a SQLite file (and its directory) is created if missing.
    pub async fn connect(url: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        let mut url = url.to_owned();
        if backend == Backend::Sqlite {
            url = prepare_sqlite(&url)?;
        }
        let options = AnyConnectOptions::from_str(&url).map_err(StoreError::Connect)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers work beside the writer; NORMAL syncs at checkpoints, which WAL
                        // makes safe against corruption (a power cut may lose the last commits, not the file).
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        Ok(Db { pool, backend })
    }

    /// Applies the migrations not yet applied; returns how many there are in all.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(migrator.iter().count())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the database file's directory and asks SQLite to create the file.
fn prepare_sqlite(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Ok(url.to_owned());
    }
    if let Some(dir) = Path::new(path).parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(if query.contains("mode=") {
        url.to_owned()
    } else if query.is_empty() {
        format!("sqlite://{path}?mode=rwc")
    } else {
        format!("sqlite://{path}?{query}&mode=rwc")
    })
}

/// Whether an error is a unique-constraint violation, on either backend.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

/// Records that the request or job `key` is being carried out, inside the transaction that carries it out:
/// false if it already was, and then the caller does nothing.
pub async fn first_time(tx: &mut sqlx::Transaction<'_, sqlx::Any>, key: &str, at: i64) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query("INSERT INTO handled (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Rows per multi-row statement: well within both backends' limits on parameters.
pub const ROWS: usize = 500;

/// `($1, $2, …), ($k+1, …), …`: the placeholders of a multi-row `VALUES` of `rows` rows of `columns` each.
pub fn values(rows: usize, columns: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * columns + column + 1));
        }
        sql.push(')');
    }
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_numbers_placeholders_row_by_row() {
        assert_eq!(super::values(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(super::values(1, 1), "($1)");
    }
}
