//! What a page answers when it cannot show what was asked: the log-in page for a visitor without a session, an
//! error page in Chinese otherwise. Internal failures are logged in full and shown without their details.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::auth::AuthError;
use crate::tickets::desk::DeskError;

#[derive(Debug)]
pub enum PageError {
    /// No session: to the log-in page.
    LogIn,
    Forbidden(&'static str),
    NotFound(String),
    BadRequest(String),
    TooManyAttempts,
    Internal(String),
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            PageError::LogIn => return Redirect::to("/login").into_response(),
            PageError::Forbidden(what) => (StatusCode::FORBIDDEN, "无权访问", *what),
            PageError::NotFound(what) => (StatusCode::NOT_FOUND, "找不到", what.as_str()),
            PageError::BadRequest(what) => (StatusCode::BAD_REQUEST, "请求有误", what.as_str()),
            PageError::TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                "尝试过于频繁",
                "登录尝试过于频繁，请一分钟后再试。",
            ),
            PageError::Internal(error) => {
                tracing::error!(%error, "dashboard: a page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "出错了",
                    "服务器内部错误，请稍后再试；详情见服务日志。",
                )
            }
        };
        let page = ErrorPage { title, message };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, message.to_owned()).into_response(),
        }
    }
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> PageError {
        PageError::Internal(format!("database: {e}"))
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> PageError {
        PageError::Internal(format!("template: {e}"))
    }
}

impl From<AuthError> for PageError {
    fn from(e: AuthError) -> PageError {
        match e {
            AuthError::Sql(e) => e.into(),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

impl From<DeskError> for PageError {
    fn from(e: DeskError) -> PageError {
        match e {
            DeskError::NotFound(id) => PageError::NotFound(format!("没有工单 {id}")),
            DeskError::Refused { .. } | DeskError::Invalid(_) => PageError::BadRequest(e.to_string()),
            DeskError::Sql(e) => e.into(),
        }
    }
}

/// A rendered page.
pub fn page(template: impl Template) -> Result<Response, PageError> {
    Ok(Html(template.render()?).into_response())
}
