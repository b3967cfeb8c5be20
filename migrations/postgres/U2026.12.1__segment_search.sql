-- Undo of V2026.12.1: dropping the columns drops their GIN indexes too (IF EXISTS: safe after a partial apply).
DROP INDEX IF EXISTS node_embeddings_search_gin;
ALTER TABLE node_embeddings DROP COLUMN IF EXISTS search_tsv;
DROP INDEX IF EXISTS transcript_segments_search_gin;
ALTER TABLE transcript_segments DROP COLUMN IF EXISTS search_tsv;
