//! Who is who: the team's accounts and roles, API credentials (responders' tokens and ingest keys) and, in
//! [`login`], the dashboard's passwords, sessions and one-time log-in links.
//!
//! API secrets are 32 random bytes, shown once; the database keeps only their SHA-256. A fast hash is the right
//! one for them: they are random, not chosen by people, so there is nothing to guess, and every API request
//! checks one. People's passwords get a slow one (argon2, in [`login`]).

pub mod login;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::store::{is_unique_violation, Db};
use crate::tickets::state::Actor;
use crate::tickets::ResponderId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Responder,
    Supervisor,
    /// A supervisor who also manages the team's accounts.
    Admin,
}

impl Role {
    pub fn id(self) -> &'static str {
        match self {
            Role::Responder => "responder",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Responder, Role::Supervisor, Role::Admin]
            .into_iter()
            .find(|r| r.id() == text)
    }

    /// Whether this role may do what `needed` may: roles are ordered, each including the ones before it.
    pub fn includes(self, needed: Role) -> bool {
        self >= needed
    }

    /// The `role` column: an administrator is stored as a supervisor with `admin` set.
    fn column(self) -> &'static str {
        match self {
            Role::Responder => "responder",
            Role::Supervisor | Role::Admin => "supervisor",
        }
    }
}

/// The columns [`Responder::from_row`] reads.
const RESPONDER_COLUMNS: &str = "id, name, role, admin";

#[derive(Debug, Clone, Serialize)]
pub struct Responder {
    pub id: ResponderId,
    pub name: String,
    pub role: Role,
}

impl Responder {
    /// A responder from a row of `responders` with the [`RESPONDER_COLUMNS`].
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Responder, sqlx::Error> {
        let role: String = row.try_get("role")?;
        let admin: i64 = row.try_get("admin")?;
        Ok(Responder {
            id: ResponderId(row.try_get("id")?),
            name: row.try_get("name")?,
            role: match (role.as_str(), admin) {
                (_, 1..) => Role::Admin,
                ("supervisor", _) => Role::Supervisor,
                _ => Role::Responder,
            },
        })
    }

    pub fn actor(&self) -> Actor {
        match self.role {
            Role::Responder => Actor::Responder(self.id),
            Role::Supervisor | Role::Admin => Actor::Supervisor(self.id),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the name must not be empty")]
    EmptyName,
    #[error("a password needs at least {0} characters")]
    WeakPassword(usize),
    #[error("{kind} {name:?} already exists")]
    Exists { kind: &'static str, name: String },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// A new secret: a prefix that says what it is for, then 64 hex digits.
fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system provides randomness");
    let mut secret = String::with_capacity(prefix.len() + 64);
    secret.push_str(prefix);
    for b in bytes {
        secret.push_str(&format!("{b:02x}"));
    }
    secret
}

pub fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn checked_name(name: &str) -> Result<&str, AuthError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AuthError::EmptyName);
    }
    Ok(name)
}

/// Maps a unique-name violation to [`AuthError::Exists`].
fn exists_as<'a>(kind: &'static str, name: &'a str) -> impl FnOnce(sqlx::Error) -> AuthError + 'a {
    move |e| match is_unique_violation(&e) {
        true => AuthError::Exists {
            kind,
            name: name.to_owned(),
        },
        false => AuthError::Sql(e),
    }
}

/// Adds a responder and returns them with their API token, which is not stored and cannot be shown again.
pub async fn add_responder(db: &Db, name: &str, role: Role, now: i64) -> Result<(Responder, String), AuthError> {
    let name = checked_name(name)?;
    let token = new_secret("sqr_");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO responders (name, role, admin, token_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
         RETURNING id",
    )
    .bind(name)
    .bind(role.column())
    .bind(i64::from(role == Role::Admin))
    .bind(hash(&token))
    .bind(now)
    .fetch_one(db.pool())
    .await
    .map_err(exists_as("responder", name))?;
    let responder = Responder {
        id: ResponderId(id),
        name: name.to_owned(),
        role,
    };
    Ok((responder, token))
}

/// The team member behind a Telegram account, if they have been enrolled (see [`telegram_member`]).
pub async fn telegram_enrolled(db: &Db, user: &str) -> Result<Option<Responder>, AuthError> {
    let found = sqlx::query(&format!(
        "SELECT {RESPONDER_COLUMNS} FROM responders WHERE telegram_user = $1"
    ))
    .bind(user)
    .fetch_optional(db.pool())
    .await?;
    Ok(found.map(|row| Responder::from_row(&row)).transpose()?)
}

/// The team member behind a Telegram account, enrolled with `role` the first time they act from a team chat:
/// being in the responders' or the supervisors' chat is what makes someone a responder or a supervisor there.
/// They get no API token (they can be given one with `suqiu responder add`).
pub async fn telegram_member(db: &Db, user: &str, name: &str, role: Role, now: i64) -> Result<Responder, AuthError> {
    let name = match name.trim() {
        "" => format!("tg{user}"),
        name => name.to_owned(),
    };
    for attempt in 0..3 {
        if let Some(member) = telegram_enrolled(db, user).await? {
            return Ok(member);
        }
        // A name already taken (two people called 王师傅) gets the account's id to tell them apart.
        let name = if attempt == 0 {
            name.clone()
        } else {
            format!("{name}（{user}）")
        };
        let inserted = sqlx::query_scalar(
            "INSERT INTO responders (name, role, token_hash, created_at, telegram_user) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(&name)
        .bind(role.column())
        .bind(hash(&new_secret("sqr_")))
        .bind(now)
        .bind(user)
        .fetch_one(db.pool())
        .await;
        match inserted {
            Ok(id) => {
                return Ok(Responder {
                    id: ResponderId(id),
                    name,
                    role,
                })
            }
            // The name is taken, or the same account was enrolled at the same moment: look again.
            Err(e) if is_unique_violation(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AuthError::Exists {
        kind: "responder",
        name,
    })
}

/// Adds an ingest key (for bridges posting messages) and returns it; only its hash is kept.
pub async fn add_ingest_key(db: &Db, name: &str, now: i64) -> Result<String, AuthError> {
    let name = checked_name(name)?;
    let key = new_secret("sqk_");
    sqlx::query("INSERT INTO ingest_keys (name, key_hash, created_at) VALUES ($1, $2, $3)")
        .bind(name)
        .bind(hash(&key))
        .bind(now)
        .execute(db.pool())
        .await
        .map_err(exists_as("ingest key", name))?;
    Ok(key)
}

/// The responder a token belongs to.
pub async fn responder_by_token(db: &Db, token: &str) -> Result<Option<Responder>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {RESPONDER_COLUMNS} FROM responders WHERE token_hash = $1"
    ))
    .bind(hash(token))
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(Responder::from_row).transpose()
}

/// Ingest keys already checked, so that a bridge's steady stream of messages does not look its key up in the
/// database with every one. A key is trusted for [`IngestKeys::TRUSTED_FOR`] after a check; one deleted from
/// the database stops working within that time. Unknown keys are looked up every time, so a new key works
/// at once.
pub struct IngestKeys {
    db: Db,
    /// SHA-256 of a key, and when it was last found in the database.
    checked: Mutex<HashMap<String, Instant>>,
}

impl IngestKeys {
    pub const TRUSTED_FOR: Duration = Duration::from_secs(60);

    pub fn new(db: Db) -> IngestKeys {
        IngestKeys {
            db,
            checked: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` is an ingest key.
    pub async fn check(&self, key: &str) -> Result<bool, sqlx::Error> {
        let digest = hash(key);
        let fresh = |at: &Instant| at.elapsed() < Self::TRUSTED_FOR;
        if self
            .checked
            .lock()
            .expect("not poisoned")
            .get(&digest)
            .is_some_and(fresh)
        {
            return Ok(true);
        }
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM ingest_keys WHERE key_hash = $1")
            .bind(&digest)
            .fetch_optional(self.db.pool())
            .await?;
        let mut checked = self.checked.lock().expect("not poisoned");
        match found {
            Some(_) => checked.insert(digest, Instant::now()),
            None => checked.remove(&digest),
        };
        Ok(found.is_some())
    }
}

/// The whole team, by name.
pub async fn team(db: &Db) -> Result<Vec<Responder>, sqlx::Error> {
    sqlx::query(&format!("SELECT {RESPONDER_COLUMNS} FROM responders ORDER BY name"))
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(Responder::from_row)
        .collect()
}

pub async fn responder_exists(db: &Db, id: ResponderId) -> Result<bool, sqlx::Error> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM responders WHERE id = $1")
        .bind(id.0)
        .fetch_optional(db.pool())
        .await?;
    Ok(found.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hashes_are_stable() {
        let (a, b) = (new_secret("sqr_"), new_secret("sqr_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
