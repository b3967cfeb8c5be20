"""Graph analytics on the edge stream: state, PageRank, embeddings, Poincaré geometry, HAA."""
