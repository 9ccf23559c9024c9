-- Every movement is a transaction (DESIGN D10, issue 11): purchases, bonos for another mobile,
-- airtime transfers, balance advances and top-ups share `transactions`, told apart by `kind`.

ALTER TABLE transactions
    ADD COLUMN kind        text     NOT NULL DEFAULT 'purchase',
    -- The mobile that receives (a bono for someone else, a transfer's credit); NULL: the payer.
    ADD COLUMN beneficiary text,
    -- What was asked to move (a transfer's or advance's principal, a top-up's amount) and the fee
    -- the rules set; `collected` is what a top-up recovered of the payer's advances.
    ADD COLUMN amount      bigint,
    ADD COLUMN fee         bigint,
    ADD COLUMN collected   bigint,
    -- The debt a movement left the payer (an advance's amount + fee), settled by top-ups.
    ADD COLUMN owed        bigint,
    -- The steps of its operation as the rules declared them when it was decided ('debit:refund',
    -- 'provision'...), and how many are done (durable before the next one starts, D4): the
    -- recoverer resumes from these whatever rule set is active by then.
    ADD COLUMN steps       text[],
    ADD COLUMN step        smallint NOT NULL DEFAULT 0,
    -- A top-up's reference on the recharge platform (unique: the platform's retries are one).
    ADD COLUMN reference   text,
    ALTER COLUMN bono_id DROP NOT NULL,
    ADD CONSTRAINT transactions_kind_known CHECK (kind IN ('purchase', 'transfer', 'advance',
                                                           'topup'));

CREATE UNIQUE INDEX transactions_topup_reference ON transactions (reference)
    WHERE kind = 'topup';
-- A mobile's movements in either role, for its listing.
CREATE INDEX transactions_beneficiary_created ON transactions (beneficiary, created_at DESC)
    WHERE beneficiary IS NOT NULL;

-- The rules' purchase history (0003) counts purchases only; gifts (bonos and airtime for another
-- mobile) and advances have their own sums, read in the same crossing.
DROP INDEX transactions_completed_by_msisdn;
CREATE INDEX transactions_completed_by_msisdn ON transactions (msisdn, created_at DESC)
    INCLUDE (kind, price, amount, fee, collected, beneficiary) WHERE state = 'completed';

-- What a mobile owes for its advances, whenever they were made: the rules and each top-up read it.
CREATE INDEX transactions_debts ON transactions (msisdn) INCLUDE (owed, collected)
    WHERE state = 'completed' AND (owed IS NOT NULL OR collected IS NOT NULL);

-- DESIGN D3 generalised: no other movement on any mobile a movement touches while it is in
-- flight, as payer or beneficiary, across workers and nodes. One row per guarded mobile, taken
-- with the acceptance (`accept_transactions`, in msisdn order across the whole batch: no
-- lock-order deadlock) and released in the same transaction as the final state (trigger below).
-- The partial unique index over the payer's non-terminal rows (0001) cannot see a beneficiary:
-- it stays as a second belt for the payer (the guard implies it, so it never refuses a row the
-- guard admitted).
CREATE TABLE mobile_guards (
    msisdn         text        PRIMARY KEY,
    transaction_id uuid        NOT NULL,
    since          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX mobile_guards_transaction ON mobile_guards (transaction_id);

INSERT INTO mobile_guards (msisdn, transaction_id)
    SELECT msisdn, id FROM transactions
    WHERE state IN ('received', 'profiled', 'validated', 'charged', 'inconsistent');

CREATE FUNCTION transactions_release_guards() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    DELETE FROM mobile_guards WHERE transaction_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER transactions_release_guards AFTER UPDATE OF state ON transactions
    FOR EACH ROW
    WHEN (NEW.state IN ('completed', 'rejected', 'failed', 'refunded')
          AND OLD.state NOT IN ('completed', 'rejected', 'failed', 'refunded'))
    EXECUTE FUNCTION transactions_release_guards();

-- The acceptance of a batch of movements, one statement for the caller (D1):
--   1. every guard the batch needs, in msisdn order across the batch (a guard held by another
--      writer's uncommitted acceptance or release is waited for, as a unique index would);
--   2. the rows that got all their guards, before their deadline by the database's clock, with
--      a free idempotency key (and top-up reference); in (client, key) order;
--   3. the guards of the rows not inserted are given back.
-- Returns the ids inserted; the caller explains the others (replay, key reuse, pending, late).
CREATE FUNCTION accept_transactions(
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
                                  history, created_at, updated_at)
        SELECT r.id, r.msisdn, r.beneficiary, r.kind, r.bono_id, r.channel, r.client, r.key,
               r.hash, r.amount, r.reference, 'received',
               (SELECT COALESCE(jsonb_agg(e.v || jsonb_build_object('at', r.ts) ORDER BY e.n),
                                '[]'::jsonb)
                FROM jsonb_array_elements(r.history::jsonb) WITH ORDINALITY AS e(v, n)),
               r.ts, r.ts
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
