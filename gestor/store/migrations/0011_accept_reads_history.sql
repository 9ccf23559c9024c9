-- An acceptance is one statement (issue 15): the acceptance of a batch also answers, for each row
-- it inserted, the row's settled `created_at` and its subscriber's history and restrictions (what
-- the saga's rules read), read after the insert in the same function.
--
-- Exact: a VOLATILE plpgsql function takes a fresh snapshot for each query it runs (READ
-- COMMITTED), so the history query below starts after `accept_transactions` (0010) took the
-- row's guards (waiting, if need be, for the previous holder's final write to commit) and
-- inserted it (trigger transactions_after_previous has settled its times by then). It sees what a
-- second statement of the same crossing would see: every other movement of the mobile terminal
-- and committed, none able to complete while this one holds the guard; terminal rows never
-- change. Restrictions are those in force at the settled `created_at`.
--
-- The history's joins are those of `_transactions._subscriber` (listings and dry runs read the
-- same through `snapshot_batch`; a test compares both): this month's completed movements of the
-- payer (an index-only range scan of transactions_completed_by_msisdn), the last purchase, what
-- its advances still owe (transactions_debts) and its restrictions.
--
-- The 0010 signature stays (it does the acceptance itself, and a node not yet upgraded keeps
-- calling it); this one, with the windows of each row's history, is what the store calls.
CREATE FUNCTION accept_transactions(
    p_id uuid[], p_msisdn text[], p_beneficiary text[], p_kind text[], p_bono_id text[],
    p_channel text[], p_client text[], p_key text[], p_hash text[], p_history text[],
    p_amount bigint[], p_reference text[], p_accept_by timestamptz[],
    p_day_start timestamptz[], p_month_start timestamptz[]
) RETURNS TABLE (id uuid, created_at timestamptz, purchases_today bigint, purchases_month bigint,
                 spent_today numeric, spent_month numeric, gifts_today bigint,
                 gifted_today numeric, owed numeric, last_at timestamptz, codes text[])
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    inserted uuid[];
BEGIN
    SELECT COALESCE(array_agg(a.id), '{}') INTO inserted
    FROM accept_transactions(p_id, p_msisdn, p_beneficiary, p_kind, p_bono_id, p_channel,
                             p_client, p_key, p_hash, p_history, p_amount, p_reference,
                             p_accept_by) AS a(id);
    IF cardinality(inserted) = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    SELECT t.id, t.created_at, c.purchases_today, c.purchases_month, c.spent_today,
           c.spent_month, c.gifts_today, c.gifted_today, d.owed, l.last_at, x.codes
    FROM unnest(p_id, p_day_start, p_month_start) AS r(id, day_start, month_start)
    JOIN transactions t ON t.id = r.id
    LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE h.kind = 'purchase' AND h.created_at >= r.day_start)
                   AS purchases_today,
               count(*) FILTER (WHERE h.kind = 'purchase') AS purchases_month,
               COALESCE(sum(h.price) FILTER (WHERE h.kind = 'purchase'
                                             AND h.created_at >= r.day_start), 0) AS spent_today,
               COALESCE(sum(h.price) FILTER (WHERE h.kind = 'purchase'), 0) AS spent_month,
               count(*) FILTER (WHERE h.beneficiary IS NOT NULL AND h.created_at >= r.day_start)
                   AS gifts_today,
               COALESCE(sum(CASE WHEN h.kind = 'transfer' THEN h.amount ELSE h.price END)
                        FILTER (WHERE h.beneficiary IS NOT NULL
                                AND h.created_at >= r.day_start), 0) AS gifted_today
        FROM transactions h
        WHERE h.msisdn = t.msisdn AND h.state = 'completed' AND h.created_at >= r.month_start
    ) c ON true
    LEFT JOIN LATERAL (
        SELECT h.created_at AS last_at FROM transactions h
        WHERE h.msisdn = t.msisdn AND h.state = 'completed' AND h.kind = 'purchase'
        ORDER BY h.created_at DESC LIMIT 1
    ) l ON true
    LEFT JOIN LATERAL (
        SELECT COALESCE(sum(h.owed), 0) - COALESCE(sum(h.collected), 0) AS owed
        FROM transactions h
        WHERE h.msisdn = t.msisdn AND h.state = 'completed'
          AND (h.owed IS NOT NULL OR h.collected IS NOT NULL)
    ) d ON true
    LEFT JOIN LATERAL (
        SELECT array_agg(x.code ORDER BY x.code) AS codes FROM restrictions x
        WHERE x.msisdn = t.msisdn AND (x.until IS NULL OR x.until > t.created_at)
    ) x ON true
    WHERE r.id = ANY(inserted);
END;
$$;
