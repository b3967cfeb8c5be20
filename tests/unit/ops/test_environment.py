"""The installed environment is the one the lock describes."""

from __future__ import annotations

from importlib.metadata import version

import urllib3


def test_urllib3_is_the_real_one_not_overridden_by_urllib3_future() -> None:
    """grafana-client pulls niquests, whose urllib3-future wheel carries a .pth hook that copies itself
    over urllib3 at interpreter start; requests (schemathesis) then breaks. `make install` builds it
    with URLLIB3_NO_OVERRIDE=1: the module must be the distribution pip installed."""
    assert urllib3.__version__ == version("urllib3")
