-- Reports over every worker and node (issue 12, DESIGN D12): hourly rollups fed incrementally.
--
-- A purchase does not update shared rollup rows in its own transaction: every purchase would
-- update the same hot row, serialising the workers' batched writes on its lock until commit (and
-- risking deadlocks between batches). Instead a statement-level trigger appends facts to
-- `report_facts` in the same transaction as the write that makes them true (an acceptance; a
-- movement reaching a final state), and a background task per node folds them into
-- `report_rollups` (per hour) and `report_daily` (per day, for the breakdowns) (`report_fold`,
-- every few seconds). A report reads the rollups plus the facts not folded yet in one statement
-- (one snapshot): exact the moment the movement commits.

-- What a report buckets by: the app's clock when the movement was accepted (the `at` of the
-- request, which tests set through the injectable clock), sent in the first history entry and
-- kept here (`created_at` is the database's clock). NULL on rows from before 0013:
-- `COALESCE(accepted_at, created_at)` is a movement's report time.
ALTER TABLE transactions
    ADD COLUMN accepted_at timestamptz,
    -- The customer's segment at decision time (the data warehouse profile), set with the verdict.
    ADD COLUMN segment     text;

-- 0010's acceptance, unchanged but for `accepted_at` (the app's time of the request, the `at` of
-- the history entry the store sends, which the row's history then stamps with the database's).
CREATE OR REPLACE FUNCTION accept_transactions(
    p_id uuid[], p_msisdn text[], p_beneficiary text[], p_kind text[], p_bono_id text[],
    p_channel text[], p_client text[], p_key text[], p_hash text[], p_history text[],
    p_amount bigint[], p_reference text[], p_accept_by timestamptz[]
) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    inserted uuid[];
BEGIN
    INSERT INTO mobile_guards (msisdn, transaction_id)
    SELECT g.msisdn, g.id FROM (
        SELECT r.id, r.msisdn FROM unnest(p_id, p_msisdn) AS r(id, msisdn)
        UNION ALL
        SELECT r.id, r.beneficiary FROM unnest(p_id, p_msisdn, p_beneficiary)
            AS r(id, msisdn, beneficiary)
        WHERE r.beneficiary IS NOT NULL AND r.beneficiary <> r.msisdn
    ) g
    ORDER BY g.msisdn, g.id
    ON CONFLICT DO NOTHING;

    WITH ins AS (
        INSERT INTO transactions (id, msisdn, beneficiary, kind, bono_id, channel, client,
                                  idempotency_key, request_hash, amount, reference, state,
                                  history, created_at, updated_at, accepted_at)
        SELECT r.id, r.msisdn, r.beneficiary, r.kind, r.bono_id, r.channel, r.client, r.key,
               r.hash, r.amount, r.reference, 'received',
               (SELECT COALESCE(jsonb_agg(e.v || jsonb_build_object('at', r.ts) ORDER BY e.n),
                                '[]'::jsonb)
                FROM jsonb_array_elements(r.history::jsonb) WITH ORDINALITY AS e(v, n)),
               r.ts, r.ts, COALESCE((r.history::jsonb -> 0 ->> 'at')::timestamptz, r.ts)
        FROM (SELECT r.*, clock_timestamp() AS ts
              FROM unnest(p_id, p_msisdn, p_beneficiary, p_kind, p_bono_id, p_channel, p_client,
                          p_key, p_hash, p_history, p_amount, p_reference, p_accept_by)
                   AS r(id, msisdn, beneficiary, kind, bono_id, channel, client, key, hash,
                        history, amount, reference, accept_by)) r
        WHERE (r.accept_by IS NULL OR r.ts < r.accept_by)
          AND (SELECT count(*) FROM mobile_guards g WHERE g.transaction_id = r.id)
              = CASE WHEN r.beneficiary IS NULL OR r.beneficiary = r.msisdn THEN 1 ELSE 2 END
        ORDER BY r.client, r.key
        ON CONFLICT DO NOTHING
        RETURNING transactions.id
    )
    SELECT COALESCE(array_agg(ins.id), '{}') INTO inserted FROM ins;

    DELETE FROM mobile_guards g
    WHERE g.transaction_id = ANY(p_id) AND NOT (g.transaction_id = ANY(inserted));

    RETURN QUERY SELECT unnest(inserted);
END;
$$;

-- The fixed latency buckets (upper bounds, ms): a report's p50/p99 is the bound of the bucket
-- holding that rank (within one step of the ladder: 1-2-3-5-7-10...).
-- (one CASE: an expression PostgreSQL inlines, cheap on the 10 million rows of a rebuild)
CREATE FUNCTION report_latency_bound(ms bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms <= 1 THEN 1 WHEN ms <= 2 THEN 2 WHEN ms <= 3 THEN 3 WHEN ms <= 5 THEN 5
               WHEN ms <= 7 THEN 7 WHEN ms <= 10 THEN 10 WHEN ms <= 15 THEN 15
               WHEN ms <= 20 THEN 20 WHEN ms <= 30 THEN 30 WHEN ms <= 50 THEN 50
               WHEN ms <= 70 THEN 70 WHEN ms <= 100 THEN 100 WHEN ms <= 150 THEN 150
               WHEN ms <= 200 THEN 200 WHEN ms <= 300 THEN 300 WHEN ms <= 500 THEN 500
               WHEN ms <= 700 THEN 700 WHEN ms <= 1000 THEN 1000 WHEN ms <= 1500 THEN 1500
               WHEN ms <= 2000 THEN 2000 WHEN ms <= 3000 THEN 3000 WHEN ms <= 5000 THEN 5000
               WHEN ms <= 7000 THEN 7000 WHEN ms <= 10000 THEN 10000 WHEN ms <= 15000 THEN 15000
               WHEN ms <= 20000 THEN 20000 WHEN ms <= 30000 THEN 30000
               WHEN ms <= 60000 THEN 60000 WHEN ms <= 120000 THEN 120000
               WHEN ms <= 300000 THEN 300000 WHEN ms <= 600000 THEN 600000
               WHEN ms <= 1800000 THEN 1800000 WHEN ms <= 3600000 THEN 3600000
                ELSE 86400000 END
$$;

-- The bounds themselves, in order: a latency histogram is an array of counts, one per bound.
CREATE FUNCTION report_latency_ladder() RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500,
                 2000, 3000, 5000, 7000, 10000, 15000, 20000, 30000, 60000, 120000, 300000,
                 600000, 1800000, 3600000, 86400000]::bigint[]
$$;

-- The histogram of (bound, count) pairs.
CREATE FUNCTION report_hist(p_bounds bigint[], p_counts bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(COALESCE((SELECT sum(p.c) FROM unnest(p_bounds, p_counts) AS p(b, c)
                               WHERE p.b = l.b), 0)::bigint ORDER BY l.i)
    FROM unnest(report_latency_ladder()) WITH ORDINALITY AS l(b, i)
$$;

-- Two histograms added bucket by bucket (NULL: none), and its aggregate.
CREATE FUNCTION report_hist_add(a bigint[], b bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN a IS NULL THEN b WHEN b IS NULL THEN a
                ELSE (SELECT array_agg(x + y ORDER BY i)
                      FROM unnest(a, b) WITH ORDINALITY AS u(x, y, i)) END
$$;
CREATE AGGREGATE report_hist_sum(bigint[]) (SFUNC = report_hist_add, STYPE = bigint[]);

-- Append-only facts, folded into the rollups then deleted. `n` counts movements (1 for one
-- movement; −1 takes back an earlier fact: an inconsistent movement settled later; a rebuild
-- writes groups). Money is in minor units, already summed over the `n` movements.
CREATE TABLE report_facts (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,  -- report time: COALESCE(accepted_at, created_at)
    kind        text        NOT NULL,
    outcome     text        NOT NULL,  -- received, or the final state
    bono_id     text,
    channel     text,
    profile_id  text,
    segment     text,
    codes       text[],                -- a rejection's reason codes
    latency     bigint,                -- report_latency_bound of a terminal movement's ms
    n           bigint      NOT NULL,
    revenue     bigint      NOT NULL DEFAULT 0,  -- completed purchases' prices
    fees        bigint      NOT NULL DEFAULT 0,  -- completed movements' fees
    refunds     bigint      NOT NULL DEFAULT 0,  -- refunded movements' prices
    granted     bigint      NOT NULL DEFAULT 0,  -- completed advances' amounts
    recovered   bigint      NOT NULL DEFAULT 0,  -- what completed top-ups collected
    owed        bigint      NOT NULL DEFAULT 0   -- completed advances' debts (amount + fee)
);
CREATE INDEX report_facts_at ON report_facts (at);

-- Hourly rollups per (dim, hour, kind, outcome, value): dim '' is the total (value ''), 'bono',
-- 'channel', 'profile', 'segment' (value '' when unknown), 'rule' (a rejection code, count the
-- rejections that failed it) and 'latency' (terminal purchases, value '': `hist` their latency
-- histogram over report_latency_ladder(), NULL on the other dimensions).
CREATE TABLE report_rollups (
    dim         text        NOT NULL,
    hour        timestamptz NOT NULL,
    kind        text        NOT NULL,
    outcome     text        NOT NULL,
    value       text        NOT NULL,
    n           bigint      NOT NULL,
    revenue     bigint      NOT NULL,
    fees        bigint      NOT NULL,
    refunds     bigint      NOT NULL,
    granted     bigint      NOT NULL,
    recovered   bigint      NOT NULL,
    owed        bigint      NOT NULL,
    hist        bigint[],
    PRIMARY KEY (dim, hour, kind, outcome, value)
);

-- The breakdowns' rollups per UTC day (dims bono, channel, profile, segment, rule): a month's
-- breakdown reads whole days here and only the hours at its edges in report_rollups.
CREATE TABLE report_daily (
    dim         text        NOT NULL,
    day         timestamptz NOT NULL,
    kind        text        NOT NULL,
    outcome     text        NOT NULL,
    value       text        NOT NULL,
    n           bigint      NOT NULL,
    revenue     bigint      NOT NULL,
    fees        bigint      NOT NULL,
    refunds     bigint      NOT NULL,
    granted     bigint      NOT NULL,
    recovered   bigint      NOT NULL,
    owed        bigint      NOT NULL,
    PRIMARY KEY (dim, day, kind, outcome, value)
);

-- The report facts of the rows a statement inserted or updated: their acceptance ('received')
-- and, once final (terminal or inconsistent), their outcome; an inconsistent movement that
-- settles has its inconsistent fact taken back (n = -1).
CREATE FUNCTION report_outcome_facts() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO report_facts (at, kind, outcome, n)
        SELECT COALESCE(t.accepted_at, t.created_at), t.kind, 'received', 1 FROM new_rows t;
        -- rows inserted final (a restore; the bench's COPY runs with triggers off, then rebuilds)
        INSERT INTO report_facts (at, kind, outcome, bono_id, channel, profile_id, segment, codes,
                                  latency, n, revenue, fees, refunds, granted, recovered, owed)
        SELECT f.* FROM new_rows t, LATERAL report_fact_of(t, 1) f
        WHERE t.state IN ('completed', 'rejected', 'failed', 'refunded', 'inconsistent');
    ELSE
        INSERT INTO report_facts (at, kind, outcome, bono_id, channel, profile_id, segment, codes,
                                  latency, n, revenue, fees, refunds, granted, recovered, owed)
        SELECT f.* FROM old_rows o JOIN new_rows t ON t.id = o.id,
               LATERAL report_fact_of(o, -1) f
        WHERE o.state = 'inconsistent' AND t.state <> 'inconsistent'
        UNION ALL
        SELECT f.* FROM old_rows o JOIN new_rows t ON t.id = o.id,
               LATERAL report_fact_of(t, 1) f
        WHERE t.state <> o.state
          AND t.state IN ('completed', 'rejected', 'failed', 'refunded', 'inconsistent');
    END IF;
    RETURN NULL;
END;
$$;

-- One final movement's fact, counted `n` times (1, or −1 to take it back).
CREATE FUNCTION report_fact_of(t transactions, p_n integer)
RETURNS TABLE (at timestamptz, kind text, outcome text, bono_id text, channel text,
               profile_id text, segment text, codes text[], latency bigint, n bigint,
               revenue bigint, fees bigint, refunds bigint, granted bigint, recovered bigint,
               owed bigint)
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(t.accepted_at, t.created_at), t.kind, t.state, t.bono_id, t.channel,
           t.profile_id, t.segment,
           CASE WHEN t.state = 'rejected' THEN
               ARRAY(SELECT DISTINCT r ->> 'code' FROM jsonb_array_elements(t.reasons) r
                     ORDER BY 1) END,
           CASE WHEN t.state <> 'inconsistent' THEN report_latency_bound(
               (extract(epoch FROM t.updated_at - t.created_at) * 1000)::bigint) END,
           p_n::bigint,
           p_n * CASE WHEN t.state = 'completed' AND t.kind = 'purchase'
                    THEN COALESCE(t.price, 0) ELSE 0 END,
           p_n * CASE WHEN t.state = 'completed' THEN COALESCE(t.fee, 0) ELSE 0 END,
           p_n * CASE WHEN t.state = 'refunded' THEN COALESCE(t.price, 0) ELSE 0 END,
           p_n * CASE WHEN t.state = 'completed' AND t.owed IS NOT NULL
                    THEN COALESCE(t.amount, 0) ELSE 0 END,
           p_n * CASE WHEN t.state = 'completed' THEN COALESCE(t.collected, 0) ELSE 0 END,
           p_n * CASE WHEN t.state = 'completed' THEN COALESCE(t.owed, 0) ELSE 0 END
$$;

CREATE TRIGGER transactions_report_insert AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION report_outcome_facts();
CREATE TRIGGER transactions_report_update AFTER UPDATE ON transactions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION report_outcome_facts();

-- Each fact as the rollup rows it adds to (what the fold adds, and what a report reads of the
-- facts not folded yet).
CREATE VIEW report_fact_rows AS
SELECT f.id, f.at, d.dim, date_trunc('hour', f.at, 'UTC') AS hour, f.kind, f.outcome, d.value, f.n,
       f.revenue, f.fees, f.refunds, f.granted, f.recovered, f.owed, NULL::bigint[] AS hist
FROM report_facts f
CROSS JOIN LATERAL (VALUES ('', ''), ('bono', COALESCE(f.bono_id, '')),
                           ('channel', COALESCE(f.channel, '')),
                           ('profile', COALESCE(f.profile_id, '')),
                           ('segment', COALESCE(f.segment, ''))) AS d(dim, value)
WHERE f.outcome <> 'received' OR d.dim = ''
UNION ALL
SELECT f.id, f.at, 'rule', date_trunc('hour', f.at, 'UTC'), f.kind, f.outcome, c.code, f.n,
       0, 0, 0, 0, 0, 0, NULL
FROM report_facts f CROSS JOIN LATERAL unnest(f.codes) AS c(code)
UNION ALL
SELECT f.id, f.at, 'latency', date_trunc('hour', f.at, 'UTC'), f.kind, f.outcome, '', f.n,
       0, 0, 0, 0, 0, 0, report_hist(ARRAY[f.latency], ARRAY[f.n])
FROM report_facts f WHERE f.latency IS NOT NULL AND f.kind = 'purchase';

-- Fold up to `p_limit` facts (all when NULL) into the rollups; how many were folded. One fold
-- at a time across every node (a transaction-scoped advisory lock; a node that finds it taken
-- skips its turn: -1), so two folds never upsert the same rollup rows in different orders.
CREATE FUNCTION report_fold(p_limit integer) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    folded integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(0x7265706f) THEN  -- "repo"
        RETURN -1;
    END IF;
    WITH claimed AS (
        DELETE FROM report_facts WHERE id IN (
            SELECT id FROM report_facts ORDER BY id LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING id
    ), rows AS (
        -- the view sees the claimed facts: a statement's CTEs share its snapshot
        SELECT r.dim, r.hour, r.kind, r.outcome, r.value, sum(r.n) AS n,
               sum(r.revenue) AS revenue, sum(r.fees) AS fees, sum(r.refunds) AS refunds,
               sum(r.granted) AS granted, sum(r.recovered) AS recovered, sum(r.owed) AS owed,
               report_hist_sum(r.hist) AS hist
        FROM report_fact_rows r JOIN claimed c ON c.id = r.id
        GROUP BY r.dim, r.hour, r.kind, r.outcome, r.value
    ), up AS (
        INSERT INTO report_rollups AS u (dim, hour, kind, outcome, value, n, revenue, fees,
                                         refunds, granted, recovered, owed, hist)
        SELECT * FROM rows ORDER BY dim, hour, kind, outcome, value
        ON CONFLICT (dim, hour, kind, outcome, value) DO UPDATE SET
            n = u.n + EXCLUDED.n, revenue = u.revenue + EXCLUDED.revenue,
            fees = u.fees + EXCLUDED.fees, refunds = u.refunds + EXCLUDED.refunds,
            granted = u.granted + EXCLUDED.granted,
            recovered = u.recovered + EXCLUDED.recovered, owed = u.owed + EXCLUDED.owed,
            hist = report_hist_add(u.hist, EXCLUDED.hist)
    ), daily AS (
        INSERT INTO report_daily AS u (dim, day, kind, outcome, value, n, revenue, fees, refunds,
                                       granted, recovered, owed)
        SELECT dim, date_trunc('day', hour, 'UTC'), kind, outcome, value, sum(n), sum(revenue),
               sum(fees), sum(refunds), sum(granted), sum(recovered), sum(owed)
        FROM rows WHERE dim IN ('bono', 'channel', 'profile', 'segment', 'rule')
        GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (dim, day, kind, outcome, value) DO UPDATE SET
            n = u.n + EXCLUDED.n, revenue = u.revenue + EXCLUDED.revenue,
            fees = u.fees + EXCLUDED.fees, refunds = u.refunds + EXCLUDED.refunds,
            granted = u.granted + EXCLUDED.granted,
            recovered = u.recovered + EXCLUDED.recovered, owed = u.owed + EXCLUDED.owed
    )
    SELECT count(*) INTO folded FROM claimed;
    RETURN folded;
END;
$$;

-- Recompute the rollups of the hours in [p_from, p_to) (widened to whole hours; NULL: all time)
-- from `transactions`: their rollups and unfolded facts are dropped and the rollups computed
-- again, straight from the movements (one pass over them for every dimension at once: grouping
-- sets, hashed; the latency histograms from the purchases, the rule codes from the rejections).
-- Run it in a REPEATABLE READ
-- transaction begun once the folds' lock is held (the store takes it for the session first):
-- the facts committed after its snapshot are those of changes it did not see, and stay to be
-- folded.
CREATE FUNCTION report_rebuild(p_from timestamptz, p_to timestamptz) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lo timestamptz := COALESCE(date_trunc('hour', p_from, 'UTC'), '-infinity');
    hi timestamptz := COALESCE(date_trunc('hour', p_to - interval '1 microsecond', 'UTC')
                               + interval '1 hour', 'infinity');
    movements bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(0x7265706f);
    PERFORM set_config('work_mem', '256MB', true);  -- the groups hashed in memory
    DELETE FROM report_rollups WHERE hour >= lo AND hour < hi;
    DELETE FROM report_facts WHERE at >= lo AND at < hi;

    INSERT INTO report_rollups (dim, hour, kind, outcome, value, n, revenue, fees, refunds,
                                granted, recovered, owed)
    SELECT '', date_trunc('hour', COALESCE(t.accepted_at, t.created_at), 'UTC'), t.kind,
           'received', '', count(*), 0, 0, 0, 0, 0, 0
    FROM transactions t
    WHERE COALESCE(t.accepted_at, t.created_at) >= lo AND COALESCE(t.accepted_at, t.created_at) < hi
    GROUP BY 2, 3;

    INSERT INTO report_rollups (dim, hour, kind, outcome, value, n, revenue, fees, refunds,
                                granted, recovered, owed)
    SELECT g.dim, g.hour, g.kind, g.outcome, g.value, g.n, g.revenue, g.fees, g.refunds,
           g.granted, g.recovered, g.owed
    FROM (
        SELECT CASE WHEN GROUPING(f.bono) = 0 THEN 'bono'
                    WHEN GROUPING(f.channel) = 0 THEN 'channel'
                    WHEN GROUPING(f.profile) = 0 THEN 'profile'
                    WHEN GROUPING(f.segment) = 0 THEN 'segment' ELSE '' END AS dim,
               f.hour, f.kind, f.outcome,
               COALESCE(f.bono, f.channel, f.profile, f.segment, '') AS value,
               sum(f.n) AS n, sum(f.revenue) AS revenue, sum(f.fees) AS fees,
               sum(f.refunds) AS refunds, sum(f.granted) AS granted,
               sum(f.recovered) AS recovered, sum(f.owed) AS owed
        FROM (
            SELECT date_trunc('hour', f.at, 'UTC') AS hour, f.kind, f.outcome,
                   COALESCE(f.bono_id, '') AS bono, COALESCE(f.channel, '') AS channel,
                   COALESCE(f.profile_id, '') AS profile, COALESCE(f.segment, '') AS segment,
                   f.n, f.revenue, f.fees, f.refunds, f.granted, f.recovered, f.owed
            FROM transactions t, LATERAL report_fact_of(t, 1) f
            WHERE COALESCE(t.accepted_at, t.created_at) >= lo
              AND COALESCE(t.accepted_at, t.created_at) < hi
              AND t.state IN ('completed', 'rejected', 'failed', 'refunded', 'inconsistent')
        ) f
        GROUP BY GROUPING SETS ((f.hour, f.kind, f.outcome),
                                (f.hour, f.kind, f.outcome, f.bono),
                                (f.hour, f.kind, f.outcome, f.channel),
                                (f.hour, f.kind, f.outcome, f.profile),
                                (f.hour, f.kind, f.outcome, f.segment))
    ) g;

    INSERT INTO report_rollups (dim, hour, kind, outcome, value, n, revenue, fees, refunds,
                                granted, recovered, owed, hist)
    SELECT 'latency', l.hour, 'purchase', l.outcome, '', sum(l.n), 0, 0, 0, 0, 0, 0,
           report_hist(array_agg(l.latency), array_agg(l.n))
    FROM (
        SELECT date_trunc('hour', f.at, 'UTC') AS hour, f.outcome, f.latency, count(*) AS n
        FROM transactions t, LATERAL report_fact_of(t, 1) f
        WHERE COALESCE(t.accepted_at, t.created_at) >= lo
          AND COALESCE(t.accepted_at, t.created_at) < hi
          AND t.kind = 'purchase' AND t.state IN ('completed', 'rejected', 'failed', 'refunded')
        GROUP BY 1, 2, 3
    ) l
    GROUP BY l.hour, l.outcome;

    INSERT INTO report_rollups (dim, hour, kind, outcome, value, n, revenue, fees, refunds,
                                granted, recovered, owed)
    SELECT 'rule', date_trunc('hour', COALESCE(t.accepted_at, t.created_at), 'UTC'), t.kind,
           'rejected', c.code, count(*), 0, 0, 0, 0, 0, 0
    FROM transactions t
    CROSS JOIN LATERAL (SELECT DISTINCT r ->> 'code' AS code
                        FROM jsonb_array_elements(t.reasons) r) c
    WHERE t.state = 'rejected'
      AND COALESCE(t.accepted_at, t.created_at) >= lo AND COALESCE(t.accepted_at, t.created_at) < hi
    GROUP BY 2, 3, 5;

    -- the days it touched, again from their hours (those outside [lo, hi) as folded so far:
    -- their facts not folded yet will be folded into both)
    DELETE FROM report_daily WHERE day >= date_trunc('day', lo, 'UTC') AND day < hi;
    INSERT INTO report_daily (dim, day, kind, outcome, value, n, revenue, fees, refunds, granted,
                              recovered, owed)
    SELECT r.dim, date_trunc('day', r.hour, 'UTC'), r.kind, r.outcome, r.value, sum(r.n),
           sum(r.revenue), sum(r.fees), sum(r.refunds), sum(r.granted), sum(r.recovered),
           sum(r.owed)
    FROM report_rollups r
    WHERE r.dim IN ('bono', 'channel', 'profile', 'segment', 'rule')
      AND r.hour >= date_trunc('day', lo, 'UTC')
      AND r.hour < COALESCE(date_trunc('day', hi - interval '1 microsecond', 'UTC')
                            + interval '1 day', 'infinity')
    GROUP BY 1, 2, 3, 4, 5;

    SELECT COALESCE(sum(r.n), 0) INTO movements FROM report_rollups r
    WHERE r.dim = '' AND r.outcome = 'received' AND r.hour >= lo AND r.hour < hi;
    RETURN movements;
END;
$$;

SELECT report_rebuild(NULL, NULL);
