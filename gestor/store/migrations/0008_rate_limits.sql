-- Rate limits shared by every worker and node (issue 14): one row per token bucket that was used
-- lately ('key:purchase:<client>', 'msisdn:list:<msisdn>'...). `level` is its tokens as of `at`
-- (below zero: admitted beyond the bucket, owed), refilled at `rate` per second up to `burst`;
-- `demand` the requests asked of it, an exponential average over a second, that shares it among
-- the workers. A missing row is a full bucket: rows full again (`full_at`) are deleted. UNLOGGED:
-- nothing here needs to survive a crash (the buckets start full again), and no WAL is written.
CREATE UNLOGGED TABLE rate_buckets (
    bucket  text             PRIMARY KEY,
    level   double precision NOT NULL,
    demand  double precision NOT NULL,
    rate    double precision NOT NULL,
    burst   double precision NOT NULL,
    at      timestamptz      NOT NULL,
    full_at timestamptz      NOT NULL
);
