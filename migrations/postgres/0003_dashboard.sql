-- The dashboard: team members' passwords and administrators, log-in sessions and one-time log-in links.

-- A dashboard password as an argon2id PHC string; NULL: the member logs in by a link from the bot only.
ALTER TABLE responders ADD COLUMN password_hash TEXT;
-- Administrators manage the team's accounts; an administrator is a supervisor too (role 'supervisor').
ALTER TABLE responders ADD COLUMN admin BIGINT NOT NULL DEFAULT 0;

-- A browser's log-in: the cookie holds a secret whose SHA-256 is the key; `csrf` is the token every form of
-- the session carries.
CREATE TABLE sessions (
    secret_hash     TEXT PRIMARY KEY,
    responder_id    BIGINT NOT NULL REFERENCES responders (id),
    csrf            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- A one-time log-in link from the bot: works once, within minutes.
CREATE TABLE login_links (
    token_hash      TEXT PRIMARY KEY,
    responder_id    BIGINT NOT NULL REFERENCES responders (id),
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    used_at         BIGINT
);
