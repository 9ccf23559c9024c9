-- Alarms that stay open until a `resolved` alarm names them (charge_unknown, provision_unknown,
-- refund_failed, stuck, platform_down, database_down). `subject` is what such an alarm is about
-- (a transaction id, a platform's name, '' for the whole system); it is NULL for alarms that are
-- events only (info, `resolved`, ...). `resolved_by` is the `resolved` alarm that settled it.
ALTER TABLE alarms
    ADD COLUMN subject     text,
    ADD COLUMN resolved_by bigint REFERENCES alarms (id),
    ADD COLUMN resolved_at timestamptz;

-- The open ones: few, listed by id, looked up by (kind, subject) when their cause settles.
CREATE INDEX alarms_open ON alarms (id) WHERE subject IS NOT NULL AND resolved_at IS NULL;

-- Alarms raised before this migration: open unless their cause is already settled.
UPDATE alarms SET subject = COALESCE(transaction_id::text, details ->> 'platform', '')
 WHERE kind IN ('charge_unknown', 'provision_unknown', 'refund_failed', 'stuck',
                'platform_down', 'database_down');
UPDATE alarms a SET resolved_at = now()
  FROM transactions t
 WHERE a.subject IS NOT NULL AND a.transaction_id = t.id
   AND t.state IN ('completed', 'rejected', 'failed', 'refunded');
UPDATE alarms a SET resolved_at = r.at, resolved_by = r.id
  FROM alarms r
 WHERE a.kind = 'platform_down' AND a.resolved_at IS NULL
   AND r.kind = 'platform_recovered' AND r.id > a.id
   AND r.details ->> 'platform' = a.subject;
