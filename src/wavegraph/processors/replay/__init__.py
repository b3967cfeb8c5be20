"""``wavegraph replay``: the retained topics are the source of truth; the derived stores are rebuilt
from them (a group-less read from the first retained offset, through the same sinks) and compared by
content checksum."""
