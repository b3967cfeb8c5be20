DROP INDEX links_tenant_ts IF EXISTS;
DROP INDEX links_event_id IF EXISTS;
DROP INDEX node_tenant_id IF EXISTS;
