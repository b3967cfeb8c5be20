-- Budget windows and self-describing audit rows for /v1/stats (wavegraph.sinks.dp_ledger).
-- window_start: the start of the budget window epsilon_spent belongs to (dp.budget_window = day|week;
-- NULL under "none"); a spend in a later window starts from 0 again.
ALTER TABLE dp_budget ADD COLUMN window_start timestamptz;

-- epsilon_remaining: the tenant's true remaining budget after this request (what X-Epsilon-Remaining
-- said); record: the exact JSON line also written to the logger wavegraph.dp.audit.
ALTER TABLE dp_audit_log ADD COLUMN epsilon_remaining numeric;
ALTER TABLE dp_audit_log ADD COLUMN record jsonb;
