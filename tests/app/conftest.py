"""App fixtures: a fresh database per test (SQLite file, or a fresh PostgreSQL database per run when
TEST_DATABASE_URL is set), the committed model bundles loaded once, a local image server, and a
network guard that fails any connection to a non-loopback address."""
from __future__ import annotations

import ipaddress
import os
import socket
import uuid

import pytest
from sqlalchemy import create_engine, text

from app import create_app
from app import fetch as fetch_module
from app.config import Settings
from app.db import upgrade
from app.models import Base
from app.pipeline import Pipeline

from .servers import LocalServer

# Names the tests use, answered without DNS. Anything else fails to resolve: no query leaves.
FAKE_DNS = {"images.example.com": ["10.20.30.40"], "cdn.example.com": ["93.184.216.34"],
            "mixed.example.com": ["93.184.216.34", "192.168.0.7"], "localhost": ["127.0.0.1"]}


class NetworkGuard:
    def __init__(self):
        self.attempts: list[str] = []

    def resolve(self, host, port):
        if host in FAKE_DNS:
            return FAKE_DNS[host]
        try:  # numeric spellings (2130706433, 0177.0.0.1, ::1) are parsed locally, never looked up
            return sorted({i[4][0] for i in socket.getaddrinfo(host, port, flags=socket.AI_NUMERICHOST)})
        except socket.gaierror:
            raise socket.gaierror(f"test resolver: unknown host {host}")


@pytest.fixture(autouse=True)
def network_guard(monkeypatch):
    guard = NetworkGuard()
    real_open_pool = fetch_module.open_pool

    def guarded_open_pool(scheme, address, port, host, settings, **options):
        guard.attempts.append(address)
        if not ipaddress.ip_address(address).is_loopback:
            raise AssertionError(f"the fetcher tried to connect to {address}: that packet would leave the machine")
        return real_open_pool(scheme, address, port, host, settings, **options)

    monkeypatch.setattr(fetch_module, "resolve", guard.resolve)
    monkeypatch.setattr(fetch_module, "open_pool", guarded_open_pool)
    return guard


@pytest.fixture(scope="session")
def postgres_server_url():
    return os.environ.get("TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def postgres_database(postgres_server_url):
    """A fresh database for this run on the PostgreSQL server, dropped at the end."""
    if not postgres_server_url:
        yield None
        return
    name = f"fashion_tagger_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_server_url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    create_engine(url).dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(tmp_path, postgres_database):
    if postgres_database:
        engine = create_engine(postgres_database)
        with engine.begin() as connection:
            tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        engine.dispose()
        return postgres_database
    url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def pipeline():
    """The committed bundles (models/), loaded once for the whole run."""
    settings = Settings.from_env()
    loaded = Pipeline.load(settings)
    loaded.warm_up()
    return loaded


@pytest.fixture
def settings(database_url):
    # No feed-delivery thread: a test that loads models through the holder would leave one polling the
    # shared database, racing the subscription tests' own deliveries.
    return Settings.from_env().replace(database_url=database_url, fetch_allow_private="127.0.0.0/8",
                                       fetch_read_timeout=1.0, fetch_connect_timeout=1.0, fetch_deadline=4.0,
                                       change_delivery_interval=0, job_stall_timeout=0)


@pytest.fixture
def app(settings, pipeline):
    application = create_app(settings)
    application.extensions["pipeline"].set(pipeline)
    yield application
    application.extensions["engine"].dispose()


@pytest.fixture
def keyed_app(settings, pipeline):
    """This test's app with API keys required, on the shared pipeline."""
    application = create_app(settings.replace(api_keys_required=True))
    application.extensions["pipeline"].set(pipeline)
    yield application
    application.extensions["engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def image_server():
    with LocalServer() as server:
        yield server
