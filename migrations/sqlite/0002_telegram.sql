-- Telegram and delivery: who a team member is on Telegram, where each outbound message landed, updates
-- already handled, drivers' ratings and chats' names.

-- A team member's Telegram user id, set when they first act from the responders' or supervisors' chat.
ALTER TABLE responders ADD COLUMN telegram_user TEXT;
CREATE UNIQUE INDEX responders_by_telegram_user ON responders (telegram_user);

-- Delivery: the id the channel gave the sent message (a ticket card is found by it when a responder replies
-- to it), when retries ran out, and a sender's lease, so that two instances never send the same entry.
ALTER TABLE outbox ADD COLUMN sent_message_id TEXT;
ALTER TABLE outbox ADD COLUMN failed_at BIGINT;
ALTER TABLE outbox ADD COLUMN leased_until BIGINT;
CREATE INDEX outbox_by_sent_message ON outbox (chat, sent_message_id);
CREATE INDEX outbox_by_ticket ON outbox (ticket_id, kind);

-- Inbound updates and scheduled jobs already carried out, by a key their source gives them
-- (`telegram:update:ID`, `digest:DATE`): inserted in the transaction that carries one out, so redelivery
-- changes nothing.
CREATE TABLE handled (
    key     TEXT PRIMARY KEY,
    at      BIGINT NOT NULL
);

-- A driver's rating of the help with a resolved ticket: the first one counts.
CREATE TABLE ratings (
    ticket_id   BIGINT PRIMARY KEY REFERENCES tickets (id),
    score       INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    rated_at    BIGINT NOT NULL
);

-- Chats' names as their channel last gave them, for cards, alerts and reports.
CREATE TABLE chats (
    channel     TEXT NOT NULL,
    chat        TEXT NOT NULL,
    title       TEXT NOT NULL,
    PRIMARY KEY (channel, chat)
);
