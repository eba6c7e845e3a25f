-- suqiu's schema on SQLite. Times are milliseconds since the Unix epoch (UTC).
-- Released migrations are never edited: a change is a new file.

CREATE TABLE responders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('responder', 'supervisor')),
    -- SHA-256 of the API token, hex; the token itself is shown once and never stored.
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE ingest_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE tickets (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    channel             TEXT NOT NULL,
    chat                TEXT NOT NULL,
    driver              TEXT NOT NULL,
    driver_name         TEXT,
    category            TEXT NOT NULL,
    priority            TEXT NOT NULL CHECK (priority IN ('P1', 'P2', 'P3')),
    status              TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'responded', 'resolved', 'closed')),
    assignee            BIGINT REFERENCES responders (id),
    opened_at           BIGINT NOT NULL,
    claimed_at          BIGINT,
    first_response_at   BIGINT,
    resolved_at         BIGINT,
    last_message_at     BIGINT NOT NULL,
    first_response_due  BIGINT,
    resolution_due      BIGINT,
    -- Bumped by every change: an update names the version it read, so concurrent changes cannot both win.
    version             BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX tickets_by_driver ON tickets (channel, chat, driver, status);
CREATE INDEX tickets_queue ON tickets (status, priority, resolution_due);

-- Every inbound message, exactly as received, chatter too.
CREATE TABLE messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    channel         TEXT NOT NULL,
    chat            TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    sender          TEXT NOT NULL,
    sender_name     TEXT,
    text            TEXT NOT NULL,
    sent_at         BIGINT NOT NULL,
    reply_to        TEXT,
    received_at     BIGINT NOT NULL,
    label           TEXT NOT NULL,
    priority        TEXT,
    score           REAL NOT NULL,
    -- The classifier's whole result (evidence, entities), JSON.
    classification  TEXT NOT NULL,
    ticket_id       BIGINT REFERENCES tickets (id),
    -- What intake did with it: opened a ticket, attached to one, or kept it as chatter.
    disposition     TEXT NOT NULL CHECK (disposition IN ('opened', 'attached', 'chatter')),
    UNIQUE (channel, chat, external_id)
);
CREATE INDEX messages_by_ticket ON messages (ticket_id);

-- What happened to a ticket, in order. Never updated, never deleted.
CREATE TABLE ticket_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id   BIGINT NOT NULL REFERENCES tickets (id),
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    actor       BIGINT REFERENCES responders (id),
    data        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_events_by_ticket ON ticket_events (ticket_id, id);
CREATE TRIGGER ticket_events_no_update BEFORE UPDATE ON ticket_events
BEGIN
    SELECT RAISE(ABORT, 'ticket events are append-only');
END;
CREATE TRIGGER ticket_events_no_delete BEFORE DELETE ON ticket_events
BEGIN
    SELECT RAISE(ABORT, 'ticket events are append-only');
END;

-- SLA timers still to fire. Firing one deletes its row: whoever deletes it fires it, exactly once.
CREATE TABLE deadlines (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id   BIGINT NOT NULL REFERENCES tickets (id),
    target      TEXT NOT NULL CHECK (target IN ('first_response', 'resolution')),
    stage       TEXT NOT NULL CHECK (stage IN ('warning', 'breach')),
    due_at      BIGINT NOT NULL,
    UNIQUE (ticket_id, target, stage)
);
CREATE INDEX deadlines_by_due ON deadlines (due_at);

-- Messages to send (acknowledgements, replies, alerts); a sender marks them sent.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    audience        TEXT NOT NULL CHECK (audience IN ('driver', 'responders', 'supervisors')),
    channel         TEXT,
    chat            TEXT,
    reply_to        TEXT,
    ticket_id       BIGINT REFERENCES tickets (id),
    kind            TEXT NOT NULL,
    text            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sent_at         BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_pending ON outbox (sent_at, next_attempt_at);
