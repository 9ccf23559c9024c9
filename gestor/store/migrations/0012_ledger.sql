-- The double-entry ledger (issue 12): every money movement Gestor causes, posted by PostgreSQL
-- itself in the same transaction as the state change that records it (docs/architecture.md,
-- "The ledger"). Amounts are integer minor units; a row is one side of one posting.
--
-- Accounts (balance = debits - credits):
--   subscriber:<msisdn>   what Gestor moved on that subscriber's balance (a liability of the
--                         operator: a debit lowers it);
--   clearing:in_flight    money taken or given by a movement that is not final yet;
--   revenue:bono:<id>     completed purchases; revenue:fees: transfer and advance fees;
--   advances:receivable   what advances lent (with their fee), less what top-ups recovered;
--   refunds:payable       what an `inconsistent` movement must give back;
--   recharges:platform    top-ups the recharge platform credited.

CREATE TABLE ledger_entries (
    id             bigserial   PRIMARY KEY,
    at             timestamptz NOT NULL,
    transaction_id uuid        NOT NULL,
    movement       text        NOT NULL,
    account        text        NOT NULL,
    debit          bigint      NOT NULL DEFAULT 0 CHECK (debit >= 0),
    credit         bigint      NOT NULL DEFAULT 0 CHECK (credit >= 0),
    memo           text        NOT NULL DEFAULT '',
    CONSTRAINT ledger_entries_one_side CHECK ((debit = 0) <> (credit = 0))
);
-- Entries arrive in (nearly) time order: a BRIN index finds a period's pages for the cost of
-- a summary update per insert, where a third btree would be maintained on every entry.
CREATE INDEX ledger_entries_at ON ledger_entries USING brin (at) WITH (pages_per_range = 32);
CREATE INDEX ledger_entries_account_at ON ledger_entries (account, at);
CREATE INDEX ledger_entries_transaction ON ledger_entries (transaction_id);

-- A movement's position: the balances its row implies, as signed legs (account, movement,
-- amount; positive = debit) that sum to zero. Pure: a function of the row's money columns only
-- (and of its operation, for rows written before 0010).
--   * each done step: the subscriber's side against clearing:in_flight (debit: the payer pays
--     `price`; credit: the receiver gets `amount`; advance: the payer is lent `amount`;
--     recover: the payer pays `collected`);
--   * completed: clearing settled: an advance into advances:receivable (`owed`) and its fee
--     (`owed - amount`) into revenue:fees; a recovery out of advances:receivable; what a debit
--     took (less a transfer's credit) into revenue:bono:<bono_id> (a purchase) or revenue:fees;
--   * refunded: each done step's compensation (refund, reversal) against clearing;
--   * inconsistent: what clearing holds moved to refunds:payable until it is settled;
--   * a top-up, whatever its state: the recharge platform's credit to the subscriber.
-- A transition's entries are position(new) - position(old) per (account, movement): balanced
-- by construction, and the same whichever code path wrote the row.
CREATE FUNCTION ledger_position(
    p_kind text, p_state text, p_steps text[], p_step integer, p_price bigint,
    p_amount bigint, p_owed bigint, p_collected bigint, p_bono_id text, p_msisdn text,
    p_beneficiary text, p_operation text
) RETURNS TABLE (account text, movement text, amount bigint)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    -- A row written before operations were data (0010: no `steps`) ran its operation's
    -- standard steps, the debit done once it was charged (as the recoverer reads it).
    legacy  boolean := p_steps IS NULL AND p_kind = 'purchase';
    steps   text[]  := CASE WHEN NOT legacy THEN p_steps
                            WHEN p_operation = 'provision_only' THEN '{provision}'
                            ELSE '{debit:refund,provision}' END;
    step    integer := CASE WHEN NOT legacy THEN p_step
                            WHEN p_state = 'completed' THEN cardinality(steps)
                            WHEN p_state IN ('charged', 'refunded', 'inconsistent')
                                THEN GREATEST(p_step, 1)
                            ELSE p_step END;
    -- a done step is encoded `do` or `do:undo`
    done    text[]  := COALESCE(steps[1:GREATEST(step, 0)], '{}');
    debit   boolean := done && '{debit,debit:refund}'::text[];
    credit  boolean := done && '{credit,credit:reverse}'::text[];
    advance boolean := done && '{advance,advance:reverse}'::text[];
    recover boolean := done && '{recover}'::text[];
    price   bigint  := COALESCE(p_price, 0);
    amt     bigint  := COALESCE(p_amount, 0);
    owed    bigint  := COALESCE(p_owed, p_amount, 0);
    got     bigint  := COALESCE(p_collected, 0);
    payer   text    := 'subscriber:' || p_msisdn;
    receiver text   := 'subscriber:' || COALESCE(p_beneficiary, p_msisdn);
    held    bigint  := 0;  -- what clearing holds for the done steps (credit side positive)
    sold    bigint;
BEGIN
    IF p_kind = 'topup' AND amt <> 0 THEN  -- the recharge platform's credit, once recorded
        RETURN QUERY VALUES ('recharges:platform', 'topup', amt), (payer, 'topup', -amt);
    END IF;
    IF debit AND price <> 0 THEN
        RETURN QUERY VALUES (payer, 'debit', price), ('clearing:in_flight', 'debit', -price);
        held := held + price;
    END IF;
    IF credit AND amt <> 0 THEN
        RETURN QUERY VALUES (receiver, 'credit', -amt), ('clearing:in_flight', 'credit', amt);
        held := held - amt;
    END IF;
    IF advance AND amt <> 0 THEN
        RETURN QUERY VALUES (payer, 'advance', -amt), ('clearing:in_flight', 'advance', amt);
        held := held - amt;
    END IF;
    IF recover AND got <> 0 THEN
        RETURN QUERY VALUES (payer, 'recovery', got), ('clearing:in_flight', 'recovery', -got);
        held := held + got;
    END IF;
    IF p_state = 'completed' THEN  -- clearing settled
        IF advance THEN
            RETURN QUERY SELECT * FROM (VALUES ('clearing:in_flight', 'advance', -amt),
                                              ('advances:receivable', 'advance', owed),
                                              ('revenue:fees', 'fee', amt - owed)) v
                         WHERE v.column3 <> 0;
        END IF;
        IF recover AND got <> 0 THEN
            RETURN QUERY VALUES ('clearing:in_flight', 'recovery', got),
                                ('advances:receivable', 'recovery', -got);
        END IF;
        sold := CASE WHEN debit THEN price ELSE 0 END - CASE WHEN credit THEN amt ELSE 0 END;
        IF sold <> 0 AND p_kind = 'purchase' THEN
            RETURN QUERY VALUES ('clearing:in_flight', 'revenue', sold),
                                ('revenue:bono:' || COALESCE(p_bono_id, '-'), 'revenue', -sold);
        ELSIF sold <> 0 THEN
            RETURN QUERY VALUES ('clearing:in_flight', 'fee', sold), ('revenue:fees', 'fee', -sold);
        END IF;
    ELSIF p_state = 'refunded' THEN  -- every done step compensated
        IF debit AND price <> 0 THEN
            RETURN QUERY VALUES ('clearing:in_flight', 'refund', price), (payer, 'refund', -price);
        END IF;
        IF credit AND amt <> 0 THEN
            RETURN QUERY VALUES (receiver, 'reversal', amt),
                                ('clearing:in_flight', 'reversal', -amt);
        END IF;
        IF advance AND amt <> 0 THEN
            RETURN QUERY VALUES (payer, 'reversal', amt), ('clearing:in_flight', 'reversal', -amt);
        END IF;
    ELSIF p_state = 'inconsistent' AND held <> 0 THEN  -- what clearing holds is owed back
        RETURN QUERY VALUES ('clearing:in_flight', 'payable', held),
                            ('refunds:payable', 'payable', -held);
    END IF;
END;
$$;

-- Posting: one INSERT ... SELECT per statement that inserts or updates movements (a batch of
-- the group-commit writer is one statement), from the statement's transition tables.
CREATE FUNCTION ledger_post() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO ledger_entries (at, transaction_id, movement, account, debit, credit, memo)
        SELECT n.updated_at, n.id, p.movement, p.account, GREATEST(p.amount, 0),
               GREATEST(-p.amount, 0), n.kind || ': recorded ' || n.state
        FROM new_rows n
        CROSS JOIN LATERAL ledger_position(n.kind, n.state, n.steps, n.step, n.price,
                                           n.amount, n.owed, n.collected, n.bono_id,
                                           n.msisdn, n.beneficiary, n.operation) p
        -- else the position is empty: no call
        WHERE n.kind = 'topup' OR n.step > 0 OR (n.steps IS NULL AND n.state <> 'received')
        ORDER BY n.id, p.account, p.movement;
        RETURN NULL;
    END IF;
    WITH changed AS MATERIALIZED (
        SELECT n.id, n.updated_at AS at, n.kind || ': ' || o.state || ' -> ' || n.state AS memo,
               o.kind AS o_kind, o.state AS o_state, o.steps AS o_steps, o.step AS o_step,
               o.price AS o_price, o.amount AS o_amount, o.owed AS o_owed,
               o.collected AS o_collected, o.bono_id AS o_bono_id, o.msisdn AS o_msisdn,
               o.beneficiary AS o_beneficiary, o.operation AS o_operation,
               n.kind AS n_kind, n.state AS n_state, n.steps AS n_steps, n.step AS n_step,
               n.price AS n_price, n.amount AS n_amount, n.owed AS n_owed,
               n.collected AS n_collected, n.bono_id AS n_bono_id, n.msisdn AS n_msisdn,
               n.beneficiary AS n_beneficiary, n.operation AS n_operation
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE (o.kind, o.state, o.steps, o.step, o.price, o.amount, o.owed, o.collected,
               o.bono_id, o.msisdn, o.beneficiary, o.operation)
              IS DISTINCT FROM
              (n.kind, n.state, n.steps, n.step, n.price, n.amount, n.owed, n.collected,
               n.bono_id, n.msisdn, n.beneficiary, n.operation)
    ), moved AS (
        SELECT x.id, x.account, x.movement, sum(x.amount)::bigint AS amount
        FROM (
            SELECT c.id, p.account, p.movement, p.amount
            FROM changed c
            CROSS JOIN LATERAL ledger_position(c.n_kind, c.n_state, c.n_steps, c.n_step,
                                               c.n_price, c.n_amount, c.n_owed, c.n_collected,
                                               c.n_bono_id, c.n_msisdn, c.n_beneficiary,
                                               c.n_operation) p
            UNION ALL
            SELECT c.id, p.account, p.movement, -p.amount
            FROM changed c
            CROSS JOIN LATERAL ledger_position(c.o_kind, c.o_state, c.o_steps, c.o_step,
                                               c.o_price, c.o_amount, c.o_owed, c.o_collected,
                                               c.o_bono_id, c.o_msisdn, c.o_beneficiary,
                                               c.o_operation) p
        ) x
        GROUP BY x.id, x.account, x.movement
        HAVING sum(x.amount) <> 0
    )
    INSERT INTO ledger_entries (at, transaction_id, movement, account, debit, credit, memo)
    SELECT c.at, d.id, d.movement, d.account, GREATEST(d.amount, 0), GREATEST(-d.amount, 0),
           c.memo
    FROM moved d JOIN changed c ON c.id = d.id
    ORDER BY d.id, d.account, d.movement;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_post_insert AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_post();
CREATE TRIGGER ledger_post_update AFTER UPDATE ON transactions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_post();

-- Append-only: a correction is a new entry.
CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_is_append_only();

-- The daily close: a day's per-account totals, frozen once (`gestor ledger close DAY`); the
-- entries can always re-derive them (`--verify`).
CREATE TABLE ledger_days (
    day           date        PRIMARY KEY,
    timezone      text        NOT NULL,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL,
    entries       bigint      NOT NULL,
    total_debits  bigint      NOT NULL,
    total_credits bigint      NOT NULL,
    closed_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    closed_by     text        NOT NULL
);
CREATE TABLE ledger_day_totals (
    day     date   NOT NULL REFERENCES ledger_days (day),
    account text   NOT NULL,
    debits  bigint NOT NULL,
    credits bigint NOT NULL,
    PRIMARY KEY (day, account)
);
CREATE TRIGGER ledger_days_append_only BEFORE UPDATE OR DELETE ON ledger_days
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();
CREATE TRIGGER ledger_day_totals_append_only BEFORE UPDATE OR DELETE ON ledger_day_totals
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

-- Backfill: the position of every movement already recorded, posted at its last change.
INSERT INTO ledger_entries (at, transaction_id, movement, account, debit, credit, memo)
SELECT t.updated_at, t.id, p.movement, p.account, GREATEST(p.amount, 0), GREATEST(-p.amount, 0),
       t.kind || ': ' || t.state || ' (posted by migration 0012)'
FROM transactions t
CROSS JOIN LATERAL ledger_position(t.kind, t.state, t.steps, t.step, t.price, t.amount, t.owed,
                                   t.collected, t.bono_id, t.msisdn, t.beneficiary,
                                   t.operation) p
ORDER BY t.updated_at, t.id, p.account, p.movement;
