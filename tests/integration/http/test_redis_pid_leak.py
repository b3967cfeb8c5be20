"""The PI TTL loop against the real Redis stops cleanly: after the stop event only the test's task is left."""

from __future__ import annotations

import asyncio
import gc
import uuid
from contextlib import AsyncExitStack
from types import SimpleNamespace
from typing import Any, cast

import pytest

from wavegraph.clients import redis_client
from wavegraph.http import cache as cache_component
from wavegraph.http.cache import ResponseCache, TtlLoop
from wavegraph.http.context import ApiContext
from wavegraph.query.ttl_controller import PiGains, TtlController
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


def fast(settings: Settings) -> Settings:
    prefix = f"test:pidleak:{uuid.uuid4().hex[:8]}:"
    return settings.model_copy(
        update={
            "pid": settings.pid.model_copy(update={"interval_s": 0.05}),
            "cache": settings.cache.model_copy(update={"key_prefix": prefix, "enabled": True}),
        }
    )


def only_this_task_left() -> bool:
    gc.collect()
    return asyncio.all_tasks() == {asyncio.current_task()}


async def test_two_cycles_then_stop_leaves_no_task(services: Settings) -> None:
    settings = fast(services)
    client = redis_client(settings.redis)
    try:
        cache = ResponseCache(client, prefix=settings.cache.key_prefix)
        state_key = f"{settings.cache.key_prefix}pid"
        loop = TtlLoop(cache, TtlController(PiGains.from_settings(settings.pid), 60.0), state_key=state_key)
        stop = asyncio.Event()
        task = asyncio.create_task(loop.run(stop))
        cache.hits, cache.lookups = 10, 100  # a window far below the target: the TTL must grow
        await asyncio.wait_for(loop.wait_cycles(2), timeout=10)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        assert loop.cycles >= 2
        assert cache.ttl_s > 60.0
        saved = await client.hgetall(state_key)
        assert float(saved[b"ttl_s"]) == pytest.approx(cache.ttl_s)
        assert only_this_task_left()
    finally:
        await client.delete(f"{settings.cache.key_prefix}pid")
        await client.aclose()


async def test_the_component_start_stops_its_task_with_the_stack(services: Settings) -> None:
    settings = fast(services)
    client = redis_client(settings.redis)
    # start() reads only settings, redis and components from the context
    ctx = cast(ApiContext, SimpleNamespace(settings=settings, redis=client, components={}))
    async with AsyncExitStack() as stack:
        stack.push_async_callback(client.aclose)
        await cache_component.start(ctx, stack)
        loop: Any = ctx.components["cache_loop"]
        await asyncio.wait_for(loop.wait_cycles(2), timeout=10)
        assert len(asyncio.all_tasks()) == 2  # the test and the loop
        await client.delete(f"{settings.cache.key_prefix}pid")
    assert only_this_task_left()


async def test_a_restart_resumes_the_saved_ttl(services: Settings) -> None:
    settings = fast(services)
    client = redis_client(settings.redis)
    state_key = f"{settings.cache.key_prefix}pid"
    try:
        await client.hset(state_key, mapping={"ttl_s": 321.0, "integral": 1.5})
        ctx = cast(ApiContext, SimpleNamespace(settings=settings, redis=client, components={}))
        async with AsyncExitStack() as stack:
            await cache_component.start(ctx, stack)
            assert ctx.components["cache"].ttl_s == pytest.approx(321.0)
            assert ctx.components["cache_loop"].controller.integral == 1.5
    finally:
        await client.delete(state_key)
        await client.aclose()
    assert only_this_task_left()
