DROP TABLE IF EXISTS node_embeddings;
