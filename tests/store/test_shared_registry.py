"""The model registry in the shared database (model.registry_backend: store), on SQLite and PostgreSQL.

Each "replica" is its own SharedRegistry with its own empty adapters folder and cache folder, so anything
it serves must have come through the database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from server.config import ModelSettings, Settings
from server.registry import MANIFEST, Registry, RegistryError, SharedRegistry, resolve_adapter
from server.store.db import make_db_engine, migrate
from server.store.models import AdapterBlob
from tests.store.conftest import pg_schema
from tests.test_registry import make_adapter


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database, as a URL (the registry opens its own connection pool, as a replica does)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        migrate(url)
        yield url
        return
    with pg_schema() as url:
        migrate(url)
        try:
            yield url
        finally:
            from server.registry import _DB_ENGINES

            engine = _DB_ENGINES.pop(url, None)
            if engine is not None:
                engine.dispose()


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The machine that trains: adapters a, b, c (gate yes) and ungated (gate no)."""
    adapters = tmp_path / "trainer" / "adapters"
    for name in ("a", "b", "c"):
        make_adapter(adapters, name)
    make_adapter(adapters, "ungated", verdict="no")
    return adapters


def replica(db_url: str, tmp_path: Path, name: str, adapters: Path | None = None) -> SharedRegistry:
    """A registry as a replica holds it: no adapter files of its own unless `adapters` is given."""
    local = adapters if adapters is not None else tmp_path / name / "adapters"
    return SharedRegistry(db_url, local, tmp_path / name / "cache")


def test_promotion_reaches_a_replica_without_the_files(db_url, tmp_path, source):
    trainer = replica(db_url, tmp_path, "trainer", source)
    other = replica(db_url, tmp_path, "other")
    assert other.active is None and other.version() == "store-0"

    trainer.promote("a", user="alice")
    assert other.active == "a" and other.version() != "store-0"
    entry = other.validate("a")  # materialised from the database, checksums verified
    assert entry.path.parent == tmp_path / "other" / "cache" and entry.path.name.startswith("a@")
    for f in ("adapter_config.json", "adapter_model.safetensors", MANIFEST):
        assert (entry.path / f).read_bytes() == (source / "a" / f).read_bytes()
    (event,) = other.history
    assert (event["action"], event["name"], event["previous"], event["user"]) == ("promote", "a", None, "alice")
    assert [e.name for e in other.list()] == ["a"]  # published ones, without materialising them


def test_rollback_walks_back_and_every_replica_agrees(db_url, tmp_path, source):
    trainer, other = replica(db_url, tmp_path, "trainer", source), replica(db_url, tmp_path, "other")
    for name in ("a", "b", "c"):
        trainer.promote(name)
    seen = other.version()
    assert other.rollback(user="bob") == "b"
    assert trainer.active == "b" and other.version() != seen
    assert trainer.rollback() == "a"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        other.rollback()
    assert [(e["action"], e["name"]) for e in other.history] == [
        ("promote", "a"),
        ("promote", "b"),
        ("promote", "c"),
        ("rollback", "b"),
        ("rollback", "a"),
    ]


def test_gate_refusal_writes_nothing(db_url, tmp_path, source):
    trainer = replica(db_url, tmp_path, "trainer", source)
    with pytest.raises(RegistryError, match="gate verdict is no"):
        trainer.promote("ungated")
    assert trainer.history == [] and trainer.published() == {}
    trainer.promote("ungated", force=True, reason="test: override", user="carol")
    assert trainer.history[-1]["forced"] is True and trainer.history[-1]["reason"] == "test: override"


def test_published_names_are_immutable(db_url, tmp_path, source):
    trainer = replica(db_url, tmp_path, "trainer", source)
    trainer.promote("a")
    trainer.promote("b")
    (source / "a" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')  # retrained in place
    with pytest.raises(RegistryError, match="immutable"):
        trainer.promote("a")
    assert trainer.active == "b"


def test_concurrent_promotions_are_serialised(db_url, tmp_path, source):
    """Without the lock both would read the same history and record the same `previous`."""
    names = ["a", "b", "c"]
    registries = [replica(db_url, tmp_path, f"r{i}", source) for i in range(len(names))]
    barrier = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def promote(reg: SharedRegistry, name: str) -> None:
        barrier.wait()
        try:
            reg.promote(name)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(r, n)) for r, n in zip(registries, names, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    history = registries[0].history
    assert sorted(e["name"] for e in history) == names
    # Each event's `previous` is the event before it: a consistent chain.
    assert [e["previous"] for e in history] == [None, history[0]["name"], history[1]["name"]]


def test_a_damaged_blob_is_never_served(db_url, tmp_path, source):
    trainer = replica(db_url, tmp_path, "trainer", source)
    trainer.promote("a")
    engine = make_db_engine(db_url)
    with engine.begin() as conn:
        conn.execute(update(AdapterBlob).values(content=b"not the adapter"))
    engine.dispose()
    with pytest.raises(RegistryError, match="does not match its sha256"):
        replica(db_url, tmp_path, "other").get("a")


def test_seed_from_the_file_registry_once(db_url, tmp_path, source):
    file_registry = Registry(source.parent / "registry.json")
    file_registry.promote("ungated", force=True, reason="shipped baseline")
    shared = replica(db_url, tmp_path, "api")
    assert shared.seed_from(file_registry, user="deploy") == "ungated"
    (event,) = shared.history
    assert event["forced"] is True and "shipped baseline" in event["reason"] and event["user"] == "deploy"
    assert shared.validate("ungated").path.is_relative_to(tmp_path / "api" / "cache")
    file_registry.promote("a")
    assert shared.seed_from(file_registry) is None  # a history exists: never overwritten
    assert shared.active == "ungated"


def test_resolve_adapter_reads_the_shared_registry(db_url, tmp_path, source):
    replica(db_url, tmp_path, "trainer", source).promote("b")
    settings = Settings(
        database_url=db_url,
        model=ModelSettings(
            adapter="registry",
            registry=tmp_path / "api" / "registry.json",
            registry_backend="store",
            adapter_cache_dir=tmp_path / "api" / "cache",
        ),
    )
    entry = resolve_adapter(settings.model)
    assert entry is not None and entry.name == "b" and entry.path.is_relative_to(tmp_path / "api" / "cache")
    # The file index of this machine says nothing, and is not consulted.
    assert not (tmp_path / "api" / "registry.json").exists()


def test_missing_tables_are_a_clear_error(tmp_path):
    reg = SharedRegistry(f"sqlite:///{tmp_path / 'empty.db'}", tmp_path / "a", tmp_path / "c")
    with pytest.raises(RegistryError, match="triage migrate"):
        _ = reg.active


def test_a_host_with_the_same_files_serves_its_own_folder(db_url, tmp_path, source):
    """A vLLM deployment mounts the adapters volume on the API and vLLM pods: the path handed to vLLM must be
    that folder, not an API-local cache; a folder whose content differs is never used."""
    trainer = replica(db_url, tmp_path, "trainer", source)
    trainer.promote("a")
    trainer.promote("b")
    assert replica(db_url, tmp_path, "same", source).get("a").path == source / "a"
    (source / "b" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}')
    assert replica(db_url, tmp_path, "same", source).get("b").path.is_relative_to(tmp_path / "same" / "cache")
