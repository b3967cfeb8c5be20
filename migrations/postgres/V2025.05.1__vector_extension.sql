-- pgvector, for every embedding column below. (`wavegraph services up` installs it too.)
CREATE EXTENSION IF NOT EXISTS vector;
