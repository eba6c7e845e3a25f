//! Logging in to the dashboard: passwords (argon2id), sessions held by a cookie, and one-time log-in links
//! that the bot hands out in the team's chats.
//!
//! A session's and a link's secrets are random and only their SHA-256 is stored, as for API tokens. Hashing a
//! password is slow on purpose, so it runs on the blocking pool, never on the runtime's threads.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::{checked_name, exists_as, hash, new_secret, AuthError, Responder, Role, RESPONDER_COLUMNS};
use crate::store::Db;
use crate::tickets::ResponderId;

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// How long a session lasts: a working day and a night shift.
pub const SESSION_MS: i64 = 12 * 3_600_000;
/// How long a log-in link works.
pub const LINK_MS: i64 = 10 * 60_000;

/// A logged-in browser, as found by its cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub responder: Responder,
    /// The token every form of this session must carry.
    pub csrf: String,
}

/// A new session's secrets: the cookie's value and the forms' token.
#[derive(Debug)]
pub struct NewSession {
    pub cookie: String,
    pub csrf: String,
}

/// A token for a form shown before log-in (the session's own forms carry [`Session::csrf`]).
pub fn new_form_token() -> String {
    new_secret("")
}

/// An argon2id PHC string for `password`.
async fn hash_password(password: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).expect("the operating system provides randomness");
        let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .expect("argon2 hashes any password with default parameters")
            .to_string()
    })
    .await
    .expect("hashing does not panic")
}

/// Whether `password` matches `stored` (a PHC string); an unreadable stored hash matches nothing.
async fn verify_password(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

fn checked_password(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(AuthError::WeakPassword(MIN_PASSWORD));
    }
    Ok(())
}

/// Adds a team member who logs in to the dashboard with `password` (`suqiu user add`).
pub async fn add_user(db: &Db, name: &str, role: Role, password: &str, now: i64) -> Result<Responder, AuthError> {
    let name = checked_name(name)?;
    checked_password(password)?;
    let password_hash = hash_password(password.to_owned()).await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO responders (name, role, admin, token_hash, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(name)
    .bind(role.column())
    .bind(i64::from(role == Role::Admin))
    .bind(hash(&new_secret("sqr_")))
    .bind(password_hash)
    .bind(now)
    .fetch_one(db.pool())
    .await
    .map_err(exists_as("user", name))?;
    Ok(Responder {
        id: ResponderId(id),
        name: name.to_owned(),
        role,
    })
}

/// Sets (or replaces) a team member's password; `false` if there is no one called `name`.
pub async fn set_password(db: &Db, name: &str, password: &str) -> Result<bool, AuthError> {
    checked_password(password)?;
    let password_hash = hash_password(password.to_owned()).await;
    let changed = sqlx::query("UPDATE responders SET password_hash = $1 WHERE name = $2")
        .bind(password_hash)
        .bind(name.trim())
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(changed > 0)
}

/// The team member `name` if `password` is theirs. Someone unknown costs as much time as a wrong password, so
/// that the answer's delay does not tell which names exist.
pub async fn check_password(db: &Db, name: &str, password: &str) -> Result<Option<Responder>, sqlx::Error> {
    static UNKNOWN: LazyLock<String> = LazyLock::new(|| {
        let salt = SaltString::encode_b64(b"no such member..").expect("a valid salt");
        Argon2::default()
            .hash_password(b"no such password", &salt)
            .expect("argon2 hashes with default parameters")
            .to_string()
    });
    let row = sqlx::query(&format!(
        "SELECT {RESPONDER_COLUMNS}, password_hash FROM responders WHERE name = $1"
    ))
    .bind(name.trim())
    .fetch_optional(db.pool())
    .await?;
    let stored = row.as_ref().and_then(|r| {
        sqlx::Row::try_get::<Option<String>, _>(r, "password_hash")
            .ok()
            .flatten()
    });
    let known = stored.is_some();
    let matches = verify_password(password.to_owned(), stored.unwrap_or_else(|| UNKNOWN.clone())).await;
    match (row, known && matches) {
        (Some(row), true) => Ok(Some(Responder::from_row(&row)?)),
        _ => Ok(None),
    }
}

/// Opens a session for `responder`: the secret goes in the cookie, only its hash in the database.
pub async fn open_session(db: &Db, responder: ResponderId, now: i64) -> Result<NewSession, sqlx::Error> {
    let session = NewSession {
        cookie: new_secret("sqs_"),
        csrf: new_secret(""),
    };
    // Expired sessions are swept as new ones open.
    sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await?;
    sqlx::query(
        "INSERT INTO sessions (secret_hash, responder_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash(&session.cookie))
    .bind(responder.0)
    .bind(&session.csrf)
    .bind(now)
    .bind(now + SESSION_MS)
    .execute(db.pool())
    .await?;
    Ok(session)
}

/// The live session a cookie's secret opens, if any.
pub async fn session(db: &Db, cookie: &str, now: i64) -> Result<Option<Session>, sqlx::Error> {
    let columns = RESPONDER_COLUMNS
        .split(", ")
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = sqlx::query(&format!(
        "SELECT {columns}, s.csrf FROM sessions s JOIN responders r ON r.id = s.responder_id \
         WHERE s.secret_hash = $1 AND s.expires_at > $2"
    ))
    .bind(hash(cookie))
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        Ok(Session {
            responder: Responder::from_row(&row)?,
            csrf: sqlx::Row::try_get(&row, "csrf")?,
        })
    })
    .transpose()
}

/// Ends a session (log-out).
pub async fn close_session(db: &Db, cookie: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE secret_hash = $1")
        .bind(hash(cookie))
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A one-time log-in link's token for `responder`, good for [`LINK_MS`].
pub async fn new_link(db: &Db, responder: ResponderId, now: i64) -> Result<String, sqlx::Error> {
    let token = new_secret("sql_");
    sqlx::query("INSERT INTO login_links (token_hash, responder_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(hash(&token))
        .bind(responder.0)
        .bind(now)
        .bind(now + LINK_MS)
        .execute(db.pool())
        .await?;
    Ok(token)
}

/// Uses a log-in link: the team member it was made for, the first time within its minutes; `None` after.
/// Using it is one conditional update, so two browsers racing with one link cannot both get in.
pub async fn use_link(db: &Db, token: &str, now: i64) -> Result<Option<Responder>, sqlx::Error> {
    let used: Option<i64> = sqlx::query_scalar(
        "UPDATE login_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 \
         RETURNING responder_id",
    )
    .bind(now)
    .bind(hash(token))
    .fetch_optional(db.pool())
    .await?;
    let Some(id) = used else { return Ok(None) };
    let row = sqlx::query(&format!("SELECT {RESPONDER_COLUMNS} FROM responders WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(Responder::from_row).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_matches_its_hash_and_nothing_else() {
        let stored = hash_password("正确的密码 horse battery".into()).await;
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify_password("正确的密码 horse battery".into(), stored.clone()).await);
        assert!(!verify_password("正确的密码 horse batterY".into(), stored.clone()).await);
        assert!(!verify_password("anything".into(), "not a hash".into()).await);
        let again = hash_password("正确的密码 horse battery".into()).await;
        assert_ne!(stored, again, "each hash has its own salt");
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(matches!(
            checked_password("123456789"),
            Err(AuthError::WeakPassword(10))
        ));
        assert!(checked_password("一二三四五六七八九十").is_ok());
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.includes(Role::Supervisor));
        assert!(Role::Supervisor.includes(Role::Responder));
        assert!(!Role::Responder.includes(Role::Supervisor));
        assert!(!Role::Supervisor.includes(Role::Admin));
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("boss"), None);
    }
}
