-- Acknowledging an open alarm (issue 14): an operator says "I'm on it". The alarm stays open
-- until its cause settles (or it is resolved by hand); `acknowledged_by` is the acting key's
-- name (the audit trail's `alarm.acknowledge` row holds its id), `ack_note` what they said.
ALTER TABLE alarms
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text,
    ADD COLUMN ack_note        text,
    ADD CONSTRAINT alarms_ack_whole
        CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL));
