ALTER TABLE dp_audit_log DROP COLUMN IF EXISTS record;
ALTER TABLE dp_audit_log DROP COLUMN IF EXISTS epsilon_remaining;
ALTER TABLE dp_budget DROP COLUMN IF EXISTS window_start;
