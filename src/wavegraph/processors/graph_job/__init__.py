"""``wavegraph run graph``: edges → per-tenant graphs → PageRank → NodeEvents; embeddings and HAA."""
