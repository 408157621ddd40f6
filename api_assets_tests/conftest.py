"""Shared fixtures: the bundled demo API, running on 127.0.0.1 for real HTTP.

- `demo_api`: the session's small demo server (`DemoConfig.small()`, seed 42), reset to its
  seeded state before the test (data, faults, request log, rate-limit buckets, tokens). The
  test may set faults, mutate data or read the log freely.
- `demo_api_session`: the same server without the reset (session-scoped, for session- or
  module-scoped fixtures that only read).
- `demo_api_module`: a fresh small server of its own per test module (module-scoped).
- `demo_api_factory(**config)`: starts a server with `DemoConfig.small(**config)` (pass
  `process=True` to serve from a child process); stopped when the test ends.
- `demo_credentials`: `DEMO_CREDENTIALS`. `demo_client`: an `httpx.Client` on `demo_api` that
  sends the first demo API key.
"""

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from api_assets.demo_api import DEMO_CREDENTIALS, DemoConfig, DemoServer


@pytest.fixture(scope="session")
def demo_api_session() -> Iterator[DemoServer]:
    with DemoServer(DemoConfig.small()) as server:
        yield server


@pytest.fixture
def demo_api(demo_api_session: DemoServer) -> DemoServer:
    demo_api_session.reset()
    return demo_api_session


@pytest.fixture(scope="module")
def demo_api_module() -> Iterator[DemoServer]:
    with DemoServer(DemoConfig.small()) as server:
        yield server


@pytest.fixture
def demo_api_factory() -> Iterator[Callable[..., DemoServer]]:
    servers: list[DemoServer] = []

    def make(*, process: bool = False, **config: Any) -> DemoServer:
        server = DemoServer(DemoConfig.small(**config), process=process).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def demo_credentials() -> dict[str, Any]:
    return dict(DEMO_CREDENTIALS)


@pytest.fixture
def demo_client(demo_api: DemoServer) -> Iterator[httpx.Client]:
    headers = {"X-API-Key": DEMO_CREDENTIALS["api_keys"][0]}
    with httpx.Client(base_url=demo_api.url, headers=headers, timeout=30.0) as client:
        yield client
