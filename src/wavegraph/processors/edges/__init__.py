"""``wavegraph run edges``: the edge processor (decoder and pipeline)."""
