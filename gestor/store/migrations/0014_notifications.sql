-- Notifications by several means (issue 13): a durable outbox of deliveries. One row per
-- (source, channel, recipient), written by triggers in the same transaction as what causes it
-- (an alarm's insert; a movement entering a state that texts its subscriber), so an alarm or a
-- state change is never notified twice, nor lost to a crash between the write and the send.
-- Each worker's deliverer claims due rows with FOR UPDATE SKIP LOCKED (gestor/notify).

-- Where notifications go, as `[notifications]` of config/gestor.toml says: each worker replaces
-- these rows at start (one transaction), so the triggers route as the configuration does.
--   on = 'alarm':    an alarm whose kind is in `kinds` (empty: any kind) and whose severity
--                    is at least `min_severity` goes to `recipient` by `channel`;
--   on = 'movement': a movement entering a state in `kinds` texts its payer (`recipient` '').
CREATE TABLE notification_routes (
    id           serial   PRIMARY KEY,
    "on"         text     NOT NULL CHECK ("on" IN ('alarm', 'movement')),
    channel      text     NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient    text     NOT NULL,
    language     text,
    kinds        text[]   NOT NULL DEFAULT '{}',
    min_severity smallint NOT NULL DEFAULT 0   -- 0 info, 1 warning, 2 critical
);

CREATE TABLE notifications (
    id             bigserial   PRIMARY KEY,
    -- What caused it: 'alarm:<id>' or 'transaction:<id>:<state>'.
    source         text        NOT NULL,
    alarm_id       bigint      REFERENCES alarms (id),
    transaction_id uuid,
    -- What it is about: an alarm's kind, or the movement's new state.
    event          text        NOT NULL,
    channel        text        NOT NULL CHECK (channel IN ('email', 'sms', 'webhook')),
    recipient      text        NOT NULL,
    -- Set when it is first attempted (an SMS's is the subscriber's, from the data warehouse).
    language       text,
    subject        text,
    body           text,
    state          text        NOT NULL DEFAULT 'pending'
                               CHECK (state IN ('pending', 'sent', 'failed')),
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    -- A pending row is due from `next_at`; a claim pushes it past the attempt's lease, so a
    -- deliverer that dies mid-send leaves it to be tried again.
    next_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    sent_at        timestamptz,
    CONSTRAINT notifications_once UNIQUE (source, channel, recipient)
);
CREATE INDEX notifications_due ON notifications (next_at) WHERE state = 'pending';
CREATE INDEX notifications_alarm ON notifications (alarm_id) WHERE alarm_id IS NOT NULL;
CREATE INDEX notifications_transaction ON notifications (transaction_id)
    WHERE transaction_id IS NOT NULL;

CREATE FUNCTION notifications_for_alarm() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notifications (source, alarm_id, transaction_id, event, channel, recipient,
                               language)
    SELECT 'alarm:' || NEW.id, NEW.id, NEW.transaction_id, NEW.kind, r.channel, r.recipient,
           r.language
      FROM notification_routes r
     WHERE r."on" = 'alarm'
       AND (cardinality(r.kinds) = 0 OR NEW.kind = ANY (r.kinds))
       AND r.min_severity <= CASE NEW.severity WHEN 'critical' THEN 2
                                               WHEN 'warning' THEN 1 ELSE 0 END
    ON CONFLICT ON CONSTRAINT notifications_once DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('gestor_notifications', '');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER alarms_notify AFTER INSERT ON alarms
    FOR EACH ROW EXECUTE FUNCTION notifications_for_alarm();

CREATE FUNCTION notifications_for_movement() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO notifications (source, transaction_id, event, channel, recipient, language)
    SELECT 'transaction:' || NEW.id || ':' || NEW.state, NEW.id, NEW.state, r.channel,
           CASE WHEN r.recipient = '' THEN NEW.msisdn ELSE r.recipient END, r.language
      FROM notification_routes r
     WHERE r."on" = 'movement' AND NEW.state = ANY (r.kinds)
    ON CONFLICT ON CONSTRAINT notifications_once DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('gestor_notifications', '');
    END IF;
    RETURN NULL;
END $$;

-- Only the states that text a subscriber fire it: every other transition pays nothing.
CREATE TRIGGER transactions_notify AFTER UPDATE OF state ON transactions
    FOR EACH ROW
    WHEN (NEW.state IN ('refunded', 'inconsistent') AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION notifications_for_movement();
