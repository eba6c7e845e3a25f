//! Logging in to the dashboard, on a real SQLite file and a real PostgreSQL database: passwords, sessions and
//! the bot's one-time log-in links.

mod support;

use support::{TestDb, MINUTE, T0};
use suqiu::auth::login::{self, LINK_MS, SESSION_MS};
use suqiu::auth::{AuthError, Role};

on_both_backends!(
    a_member_logs_in_with_their_password_and_no_other,
    a_session_opens_the_dashboard_until_it_expires_or_logs_out,
    a_login_link_works_once_and_only_for_minutes,
);

async fn a_member_logs_in_with_their_password_and_no_other(t: TestDb) {
    let admin = login::add_user(&t.db, "周主任", Role::Admin, "工会的密码 2026", T0)
        .await
        .unwrap();
    let responder = login::add_user(&t.db, "王干事", Role::Responder, "another password", T0)
        .await
        .unwrap();

    let found = login::check_password(&t.db, "周主任", "工会的密码 2026")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.id, found.role), (admin.id, Role::Admin));
    let found = login::check_password(&t.db, " 王干事 ", "another password")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.id, found.role), (responder.id, Role::Responder));
    assert!(login::check_password(&t.db, "周主任", "another password")
        .await
        .unwrap()
        .is_none());
    assert!(login::check_password(&t.db, "无此人", "another password")
        .await
        .unwrap()
        .is_none());

    // A refused account changes nothing: a taken name, a short password.
    let taken = login::add_user(&t.db, "周主任", Role::Responder, "yet another one", T0).await;
    assert!(matches!(taken, Err(AuthError::Exists { .. })), "{taken:?}");
    let short = login::add_user(&t.db, "李干事", Role::Responder, "short", T0).await;
    assert!(matches!(short, Err(AuthError::WeakPassword(_))), "{short:?}");
    assert_eq!(t.count("responders").await, 2);

    // A member enrolled from Telegram has no password until one is set.
    let member = suqiu::auth::telegram_member(&t.db, "8001", "李干事", Role::Responder, T0)
        .await
        .unwrap();
    assert!(login::check_password(&t.db, "李干事", "").await.unwrap().is_none());
    assert!(login::set_password(&t.db, "李干事", "李干事的新密码二〇二六")
        .await
        .unwrap());
    let found = login::check_password(&t.db, "李干事", "李干事的新密码二〇二六")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, member.id);
    assert!(!login::set_password(&t.db, "无此人", "李干事的新密码二〇二六")
        .await
        .unwrap());
    t.finish().await;
}

async fn a_session_opens_the_dashboard_until_it_expires_or_logs_out(t: TestDb) {
    let member = login::add_user(&t.db, "王干事", Role::Supervisor, "another password", T0)
        .await
        .unwrap();
    let opened = login::open_session(&t.db, member.id, T0).await.unwrap();
    assert_ne!(opened.cookie, opened.csrf);

    let session = login::session(&t.db, &opened.cookie, T0 + MINUTE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.responder.id, member.id);
    assert_eq!(session.responder.role, Role::Supervisor);
    assert_eq!(session.csrf, opened.csrf);
    assert!(login::session(&t.db, "sqs_forged", T0).await.unwrap().is_none());
    assert!(login::session(&t.db, &opened.cookie, T0 + SESSION_MS)
        .await
        .unwrap()
        .is_none());

    // The cookie's secret is not what the database keeps.
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE secret_hash = $1")
        .bind(&opened.cookie)
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0);

    let second = login::open_session(&t.db, member.id, T0 + MINUTE).await.unwrap();
    login::close_session(&t.db, &second.cookie).await.unwrap();
    assert!(login::session(&t.db, &second.cookie, T0 + 2 * MINUTE)
        .await
        .unwrap()
        .is_none());
    assert!(login::session(&t.db, &opened.cookie, T0 + 2 * MINUTE)
        .await
        .unwrap()
        .is_some());

    // Opening a session sweeps the expired ones.
    login::open_session(&t.db, member.id, T0 + SESSION_MS + 2 * MINUTE)
        .await
        .unwrap();
    assert_eq!(t.count("sessions").await, 1);
    t.finish().await;
}

async fn a_login_link_works_once_and_only_for_minutes(t: TestDb) {
    let member = suqiu::auth::telegram_member(&t.db, "8001", "王干事", Role::Responder, T0)
        .await
        .unwrap();
    let link = login::new_link(&t.db, member.id, T0).await.unwrap();

    // Two browsers race with the same link: exactly one gets in.
    let (a, b) = tokio::join!(
        login::use_link(&t.db, &link, T0 + MINUTE),
        login::use_link(&t.db, &link, T0 + MINUTE)
    );
    let winners: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(winners.len(), 1);
    assert_eq!(winners[0].id, member.id);
    assert!(login::use_link(&t.db, &link, T0 + 2 * MINUTE).await.unwrap().is_none());

    let late = login::new_link(&t.db, member.id, T0).await.unwrap();
    assert!(login::use_link(&t.db, &late, T0 + LINK_MS).await.unwrap().is_none());
    assert!(login::use_link(&t.db, "sql_made_up", T0).await.unwrap().is_none());
    t.finish().await;
}
