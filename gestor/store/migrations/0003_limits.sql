-- Limits that hold everywhere, and truthful timestamps (issue 10).

-- The rules' `history` (purchases and spending today and this month, the last purchase) is read
-- at every acceptance: over the mobile's completed purchases only, newest first, with the price
-- in the index (an index-only range scan, however long the mobile's history of other states).
CREATE INDEX transactions_completed_by_msisdn ON transactions (msisdn, created_at DESC)
    INCLUDE (price) WHERE state = 'completed';

-- `created_at` is the database's clock when the guard (transactions_one_pending_per_msisdn)
-- accepted the row. The INSERT computes it before it checks the unique index, and that check may
-- wait for the mobile's previous purchase to commit its final state (or find it committed an
-- instant after the value was taken): then the value can be earlier than the previous
-- purchase's `updated_at`. This trigger runs at the end of the inserting statement, after every
-- such wait, with a fresh snapshot (READ COMMITTED) that sees the previous purchase committed, and
-- raises the new row's times to it when needed, in the same transaction: a mobile's records never
-- overlap (previous.updated_at <= next.created_at), as the guard serialised them.
CREATE FUNCTION transactions_after_previous() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    previous_end timestamptz;
BEGIN
    -- The guard admits one non-terminal purchase per mobile, so every other row of this mobile
    -- ended before this one was accepted: the latest created ones hold the latest end.
    SELECT max(p.updated_at) INTO previous_end FROM (
        SELECT t.updated_at FROM transactions t
        WHERE t.msisdn = NEW.msisdn AND t.id <> NEW.id
        ORDER BY t.created_at DESC LIMIT 2
    ) p;
    IF previous_end IS NOT NULL AND previous_end > NEW.created_at THEN
        UPDATE transactions t SET
            created_at = previous_end,
            updated_at = greatest(t.updated_at, previous_end),
            history = jsonb_set(t.history, '{0,at}', to_jsonb(previous_end))
        WHERE t.id = NEW.id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER transactions_after_previous AFTER INSERT ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_after_previous();
