//! Who is asking: the session cookie, the token every form carries (CSRF), and the log-in pages — password,
//! one-time link from the bot, log-out — with a rate limit on attempts.
//!
//! Before log-in there is no session, so the log-in forms carry a token that must match a cookie set with the
//! form (double submit). After log-in every form carries the session's own token.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{page, PageError};
use super::DashState;
use crate::auth::login::{self, Session};
use crate::auth::Role;

/// The session cookie.
pub const COOKIE: &str = "suqiu_session";
/// The log-in forms' token, before there is a session.
const LOGIN_COOKIE: &str = "suqiu_login";

/// Log-in attempts allowed: a few a minute per name, against guessing one member's password, and more per
/// address, against trying many names (an office behind one address still logs in).
pub struct Attempts {
    by_name: DefaultKeyedRateLimiter<String>,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
}

impl Attempts {
    pub fn new() -> Attempts {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n).expect("not zero"));
        Attempts {
            by_name: RateLimiter::keyed(per_minute(5)),
            by_address: RateLimiter::keyed(per_minute(30)),
        }
    }

    /// Counts an attempt for `name` from `ip`; `false` once either has used its quota.
    fn allow(&self, name: &str, ip: Option<IpAddr>) -> bool {
        let name = self.by_name.check_key(&name.trim().to_lowercase()).is_ok();
        let address = ip.is_none_or(|ip| self.by_address.check_key(&ip).is_ok());
        name && address
    }
}

impl Default for Attempts {
    fn default() -> Attempts {
        Attempts::new()
    }
}

/// A logged-in team member.
pub struct Member(pub Session);

impl FromRequestParts<DashState> for Member {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &DashState) -> Result<Member, PageError> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(COOKIE) else {
            return Err(PageError::LogIn);
        };
        let now = state.clock.now_ms();
        match login::session(state.desk.db(), cookie.value(), now).await? {
            Some(session) => Ok(Member(session)),
            None => Err(PageError::LogIn),
        }
    }
}

impl Member {
    /// Refuses unless the member's role includes `needed`.
    pub fn require(&self, needed: Role, what: &'static str) -> Result<(), PageError> {
        match self.0.responder.role.includes(needed) {
            true => Ok(()),
            false => Err(PageError::Forbidden(what)),
        }
    }

    /// Refuses a form that does not carry this session's token.
    pub fn check(&self, csrf: &str) -> Result<(), PageError> {
        match same(csrf, &self.0.csrf) {
            true => Ok(()),
            false => Err(PageError::Forbidden(FORGED)),
        }
    }
}

/// What a form without its token is told.
const FORGED: &str = "表单已过期或来源不明，请刷新页面后重试。";

/// The log-in forms' token from the cookie, if the form carries the same.
fn checked_login_token(jar: &CookieJar, csrf: &str) -> Result<String, PageError> {
    let expected = jar.get(LOGIN_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    match same(csrf, &expected) {
        true => Ok(expected),
        false => Err(PageError::Forbidden(FORGED)),
    }
}

/// Compares secrets by their digests, so that the time taken tells nothing of where they differ.
fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// The client's address, when the server knows it.
fn client_ip(parts: &Parts) -> Option<IpAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

pub struct ClientIp(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    name: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage<'a> {
    csrf: &'a str,
    token: &'a str,
}

/// The log-in forms' token: the one in the cookie, or a new one set with the page.
fn login_token(jar: CookieJar, state: &DashState) -> (CookieJar, String) {
    if let Some(token) = jar.get(LOGIN_COOKIE).map(|c| c.value().to_owned()) {
        return (jar, token);
    }
    let token = login::new_form_token();
    let cookie = state.cookie(LOGIN_COOKIE, token.clone());
    (jar.add(cookie), token)
}

pub async fn login_form(State(state): State<DashState>, jar: CookieJar) -> Result<Response, PageError> {
    let (jar, csrf) = login_token(jar, &state);
    let html = page(LoginPage {
        csrf: &csrf,
        name: "",
        error: None,
    })?;
    Ok((jar, html).into_response())
}

#[derive(Deserialize)]
pub struct LoginForm {
    name: String,
    password: String,
    csrf: String,
}

pub async fn log_in(
    State(state): State<DashState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, PageError> {
    let expected = checked_login_token(&jar, &form.csrf)?;
    if !state.attempts.allow(&form.name, ip) {
        tracing::warn!(?ip, "dashboard: log-in attempts over the limit");
        return Err(PageError::TooManyAttempts);
    }
    let Some(member) = login::check_password(state.desk.db(), &form.name, &form.password).await? else {
        tracing::info!(?ip, "dashboard: a log-in failed");
        let html = page(LoginPage {
            csrf: &expected,
            name: &form.name,
            error: Some("用户名或密码不对。"),
        })?;
        return Ok((axum::http::StatusCode::UNAUTHORIZED, html).into_response());
    };
    start_session(&state, jar, member.id).await
}

async fn start_session(
    state: &DashState,
    jar: CookieJar,
    member: crate::tickets::ResponderId,
) -> Result<Response, PageError> {
    let opened = login::open_session(state.desk.db(), member, state.clock.now_ms()).await?;
    tracing::info!(member = member.0, "dashboard: logged in");
    let cookie = state.cookie(COOKIE, opened.cookie);
    let jar = jar.add(cookie).remove(Cookie::build(LOGIN_COOKIE).path("/"));
    Ok((jar, Redirect::to("/")).into_response())
}

#[derive(Deserialize)]
pub struct LinkQuery {
    token: String,
}

/// A link from the bot opens a page with a button, not a session: link previews fetch the address, and must
/// not use up the link.
pub async fn link_form(
    State(state): State<DashState>,
    jar: CookieJar,
    Query(query): Query<LinkQuery>,
) -> Result<Response, PageError> {
    let (jar, csrf) = login_token(jar, &state);
    let html = page(LinkPage {
        csrf: &csrf,
        token: &query.token,
    })?;
    Ok((jar, html).into_response())
}

#[derive(Deserialize)]
pub struct LinkForm {
    token: String,
    csrf: String,
}

pub async fn use_link(
    State(state): State<DashState>,
    ClientIp(ip): ClientIp,
    jar: CookieJar,
    Form(form): Form<LinkForm>,
) -> Result<Response, PageError> {
    checked_login_token(&jar, &form.csrf)?;
    if !state.attempts.allow(&format!("link:{}", form.token), ip) {
        return Err(PageError::TooManyAttempts);
    }
    match login::use_link(state.desk.db(), &form.token, state.clock.now_ms()).await? {
        Some(member) => start_session(&state, jar, member.id).await,
        None => Err(PageError::BadRequest(
            "这个登录链接已用过或已过期。请在工作群里再发一次 /login。".into(),
        )),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn log_out(
    State(state): State<DashState>,
    member: Member,
    jar: CookieJar,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    member.check(&form.csrf)?;
    if let Some(cookie) = jar.get(COOKIE) {
        login::close_session(state.desk.db(), cookie.value()).await?;
    }
    let jar = jar.remove(Cookie::build(COOKIE).path("/"));
    Ok((jar, Redirect::to("/login")).into_response())
}

impl DashState {
    /// A cookie for the dashboard: gone when the browser closes (the server ends sessions by itself), not
    /// readable by scripts, not sent with other sites' requests, Secure when the dashboard is served over HTTPS.
    fn cookie(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure_cookies)
            .build()
    }
}
