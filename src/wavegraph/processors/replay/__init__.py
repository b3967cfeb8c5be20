"""``wavegraph replay``: the retained topics are the source of truth; the derived stores are rebuilt
from them (a group-less, read_committed read from the first retained offset, through the same sinks)
and compared by content checksum: the graph from ``wavegraph.edges.v1`` (``edges``), the transcript
tables and their vectors from ``wavegraph.transcripts.v1`` (``transcripts``), and the FAISS index from
PostgreSQL as the read side rebuilds it (``vector_index``)."""
