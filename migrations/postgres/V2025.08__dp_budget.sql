-- Per-tenant differential-privacy budget for /v1/stats (wavegraph.http): the ledger and its audit log.
-- numeric, not double precision: sums of epsilons such as 0.1 must add up exactly, or the last query
-- that fits the budget would be refused (0.1 summed 100 times is 10.000000000000002 in binary floats).
CREATE TABLE dp_budget (
    tenant text PRIMARY KEY,
    epsilon_budget numeric NOT NULL CHECK (epsilon_budget > 0),
    epsilon_spent numeric NOT NULL DEFAULT 0 CHECK (epsilon_spent >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT dp_budget_spent_within_budget CHECK (epsilon_spent <= epsilon_budget)
);

-- One row per answered (or refused) query; result_hash = sha256 of the released (noised) answer.
CREATE TABLE dp_audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL REFERENCES dp_budget (tenant),
    query text NOT NULL,
    epsilon numeric NOT NULL CHECK (epsilon >= 0),
    mechanism text,
    accepted boolean NOT NULL DEFAULT true,
    spent_after numeric,
    result_hash text,
    ts timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX dp_audit_log_tenant_ts ON dp_audit_log (tenant, ts);
