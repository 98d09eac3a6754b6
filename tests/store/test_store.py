"""Store tests; each one runs on SQLite and PostgreSQL via the ``db_engine`` fixture."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, delete, func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.store import repository as repo
from server.store.db import make_db_engine, make_sessionmaker, migrate, normalise_url, ping
from server.store.models import STATUSES, Base, Classification, Feedback
from server.store.records import StoredFailure, StoredResult

REPO_ROOT = Path(__file__).resolve().parents[2]


def _pending(session: Session, ticket_id: str = "T-1", **overrides) -> Classification:
    kwargs = dict(
        request_id=uuid.uuid4().hex,
        ticket_id=ticket_id,
        subject="Drucker geht nicht",
        body="Hallo, mein Drucker druckt nicht.",
        previous_interactions=None,
        model_base="qwen2.5-1.5b",
        model_adapter=None,
        prompt_version="v1",
        taxonomy="default",
    )
    kwargs.update(overrides)
    return repo.create_pending(session, **kwargs)


def _row(session: Session, request_id: str) -> Classification | None:
    return session.scalars(
        select(Classification).where(Classification.request_id == request_id).execution_options(populate_existing=True)
    ).one_or_none()


def _result(**overrides) -> StoredResult:
    kwargs = dict(
        prediction={"category": "Technical", "priority": "Medium", "extracted_info": {"sentiment": "neutral"}},
        confidence={"category": 0.5},
        needs_review=False,
        input_truncated=False,
        latency_ms=10.0,
        prompt_tokens=1,
        completion_tokens=1,
        raw_output="{}",
    )
    kwargs.update(overrides)
    return StoredResult(**kwargs)


def _finish(session: Session, request_id: str, outcome: StoredResult | StoredFailure) -> Classification:
    """The service's path: ``finish_many`` with one outcome, then the row as stored."""
    assert repo.finish_many(session, [(request_id, outcome)]) == []
    row = _row(session, request_id)
    assert row is not None
    return row


def _complete(session: Session, request_id: str, **overrides) -> Classification:
    return _finish(session, request_id, _result(**overrides))


def _fail(session: Session, request_id: str, error: str, **kwargs) -> Classification:
    return _finish(session, request_id, StoredFailure(error=error, **kwargs))


def _counts(session: Session) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in session.execute(select(Classification.status, func.count()).group_by(Classification.status)):
        counts[status] = n
    return counts


# --- migrations ----------------------------------------------------------------


def test_migration_creates_tables(migrated: Engine) -> None:
    insp = inspect(migrated)
    assert {"classifications", "feedback", "alembic_version"} <= set(insp.get_table_names())
    cols = {c["name"]: c for c in insp.get_columns("classifications")}
    assert set(cols) == set(Classification.__table__.columns.keys())
    assert cols["request_id"]["nullable"] is False and cols["error"]["nullable"] is True
    ix = {i["name"]: i["column_names"] for i in insp.get_indexes("classifications")}
    assert ix["ix_classifications_ticket_id"] == ["ticket_id"]
    assert ix["ix_classifications_status"] == ["status"]
    uniques = [u["column_names"] for u in insp.get_unique_constraints("classifications")]
    assert ["request_id"] in uniques
    (fk,) = insp.get_foreign_keys("feedback")
    assert fk["referred_table"] == "classifications"
    assert fk["constrained_columns"] == ["classification_id"]
    assert fk["options"].get("ondelete", "").upper() == "CASCADE"
    with migrated.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0007"
    for name in ("route", "cache_kind", "engine", "cost_usd", "review_reasons", "fields"):
        assert cols[name]["nullable"] is True, name
    assert ix["ix_classifications_needs_review"] == ["needs_review"]


def test_migration_matches_models(migrated: Engine) -> None:
    """The hand-written migration and the ORM models must describe the same schema."""
    with migrated.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_migrate_is_idempotent(migrated: Engine) -> None:
    with make_sessionmaker(migrated)() as s:
        row = _pending(s)
    migrate(migrated)  # second run must be a no-op, keeping data
    with make_sessionmaker(migrated)() as s:
        assert _row(s, row.request_id) is not None
    with migrated.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


# --- classifications -------------------------------------------------------------


def test_pending_complete_roundtrip_preserves_json_and_unicode(migrated: Engine) -> None:
    prediction = {
        "category": "Billing",
        "priority": "High",
        "extracted_info": {"product": "Größenänderung ✓", "error_code": None, "n": [1, 2.5]},
        "summary": "Kunde ärgert sich 😡 über doppelte Abbuchung",
        "sentiment": "negative",
    }
    sm = make_sessionmaker(migrated)
    with sm() as s:
        row = _pending(
            s,
            subject="Doppelte Abbuchung – Rückerstattung? 💸",
            body="Sehr geehrte Damen und Herren, ß ü ö ä 🙏",
            previous_interactions=["Erste Nachricht 👋", "Zweite: ÄÖÜ"],
        )
        assert row.status == "pending" and row.id is not None
        assert row.created_at.tzinfo is not None and row.completed_at is None
        done = _complete(
            s,
            row.request_id,
            prediction=prediction,
            confidence={"category": 0.93, "priority": 0.61},
            needs_review=True,
            input_truncated=True,
            latency_ms=123.5,
            prompt_tokens=456,
            completion_tokens=78,
            raw_output='{"category": "Billing"} 😡',
            model_adapter="adapters/v2",
        )
        assert done.status == "done"
    # A fresh session proves the values came back from the database, not the identity map.
    with sm() as s:
        got = _row(s, row.request_id)
        assert got is not None
        assert got.status == "done"
        assert got.subject == "Doppelte Abbuchung – Rückerstattung? 💸"
        assert got.body == "Sehr geehrte Damen und Herren, ß ü ö ä 🙏"
        assert got.previous_interactions == ["Erste Nachricht 👋", "Zweite: ÄÖÜ"]
        assert got.prediction == prediction
        assert got.confidence == {"category": 0.93, "priority": 0.61}
        assert (got.category, got.priority, got.sentiment) == ("Billing", "High", "negative")
        assert got.needs_review is True and got.input_truncated is True
        assert (got.latency_ms, got.prompt_tokens, got.completion_tokens) == (123.5, 456, 78)
        assert got.raw_output == '{"category": "Billing"} 😡'
        assert got.model_base == "qwen2.5-1.5b" and got.model_adapter == "adapters/v2"
        assert got.created_at.tzinfo == UTC and got.completed_at is not None
        assert got.completed_at.tzinfo == UTC
        assert got.created_at <= got.completed_at <= datetime.now(UTC)
        assert got.error is None


def test_fail_path(session: Session) -> None:
    row = _pending(session)
    failed = _fail(session, row.request_id, "CUDA out of memory", latency_ms=5.0)
    assert failed.status == "failed"
    assert failed.error == "CUDA out of memory" and failed.latency_ms == 5.0
    assert failed.completed_at is not None and failed.prediction is None
    # A failed request cannot later be overwritten by a late result; an unknown one is left alone too.
    assert repo.finish_many(session, [(row.request_id, _result())]) == [row.request_id]
    assert _row(session, row.request_id).status == "failed"
    assert repo.finish_many(session, [("does-not-exist", StoredFailure(error="x"))]) == ["does-not-exist"]


def test_get_latest_by_ticket_id_returns_newest(session: Session) -> None:
    first = _pending(session, ticket_id="T-42")
    second = _pending(session, ticket_id="T-42")
    _pending(session, ticket_id="T-other")
    # Same creation time for both: "newest" must come from id order, not the clock.
    session.execute(update(Classification).values(created_at=datetime(2024, 1, 1, tzinfo=UTC)))
    session.commit()
    latest = repo.get_latest_by_ticket_id(session, "T-42")
    assert latest is not None and latest.id == second.id and latest.id > first.id
    assert repo.get_latest_by_ticket_id(session, "T-missing") is None


def test_unique_request_id_enforced(session: Session) -> None:
    row = _pending(session)
    with pytest.raises(IntegrityError):
        _pending(session, request_id=row.request_id)
    # The repository rolled back, so the same session keeps working.
    assert _counts(session) == {"pending": 1, "done": 0, "failed": 0}


def test_mark_stale_pending_failed(session: Session) -> None:
    old_pending, fresh_pending, old_done = _pending(session), _pending(session), _pending(session)
    _complete(session, old_done.request_id)
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    session.execute(
        update(Classification).where(Classification.id.in_([old_pending.id, old_done.id])).values(created_at=long_ago)
    )
    session.commit()

    cutoff = datetime.now(UTC) - timedelta(minutes=10)
    assert repo.mark_stale_pending_failed(session, cutoff, "server restarted") == 1

    session.expire_all()
    old = _row(session, old_pending.request_id)
    assert old.status == "failed" and old.error == "server restarted"
    assert old.completed_at is not None
    assert _row(session, fresh_pending.request_id).status == "pending"
    done = _row(session, old_done.request_id)
    assert done.status == "done" and done.error is None
    assert repo.mark_stale_pending_failed(session, cutoff, "again") == 0
    with pytest.raises(ValueError, match="naive"):
        repo.mark_stale_pending_failed(session, datetime.now(), "naive")  # noqa: DTZ005


# --- feedback ----------------------------------------------------------------------


def test_feedback_links_and_cascades_on_delete(migrated: Engine) -> None:
    sm = make_sessionmaker(migrated)
    corrections = {"category": "Billing", "priority": "High", "extracted_info": {"product": "Ü"}}
    with sm() as s:
        row = _pending(s, ticket_id="T-7")
        fb1 = repo.add_feedback(s, classification=row, reviewer="anna", comment="falsch 🙈", corrections=corrections)
        fb2 = repo.add_feedback(s, classification=row, reviewer="ben", comment=None, corrections={"sentiment": "neg"})
        assert fb1.classification_id == row.id and fb1.ticket_id == "T-7"
        other = _pending(s, ticket_id="T-8")
        repo.add_feedback(s, classification=other, reviewer="c", comment=None, corrections={})
    with sm() as s:
        got = _row(s, row.request_id)
        assert [f.id for f in got.feedback] == [fb1.id, fb2.id]
        assert got.feedback[0].corrections == corrections
        assert got.feedback[0].comment == "falsch 🙈" and got.feedback[0].classification is got
        # Delete through SQL, not the ORM, so only the database's ON DELETE CASCADE can help.
        s.execute(delete(Classification).where(Classification.id == row.id))
        s.commit()
        remaining = s.scalars(select(Feedback.classification_id)).all()
        assert remaining == [other.id]


def test_foreign_key_enforced(session: Session) -> None:
    session.add(Feedback(classification_id=987654, ticket_id="T-x", reviewer="r", corrections={"a": 1}))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    assert session.scalars(select(Feedback)).all() == []


# --- database engine helpers---------------------------------------------------------------


def test_ping(db_engine: Engine, tmp_path: Path) -> None:
    assert ping(db_engine) is True
    unreachable = make_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/test", connect_args={"connect_timeout": 1})
    assert ping(unreachable) is False
    # A directory where the SQLite file should be cannot be opened.
    (tmp_path / "isdir.db").mkdir()
    assert ping(make_db_engine(f"sqlite:///{tmp_path}/isdir.db")) is False


def test_url_normalisation_and_sqlite_setup(db_engine: Engine) -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ValueError):
        normalise_url("mysql://u@h/db")
    with db_engine.connect() as conn:
        if db_engine.dialect.name == "sqlite":
            assert Path(db_engine.url.database).parent.is_dir()  # created by make_db_engine
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        else:
            assert db_engine.dialect.driver == "psycopg"
            assert conn.execute(text("SHOW search_path")).scalar().startswith("triage_test_")


def test_migrate_in_memory_sqlite() -> None:
    """In-memory SQLite only works if migrate() reuses the database engine's connection."""
    eng = make_db_engine("sqlite://")
    migrate(eng)
    with make_sessionmaker(eng)() as s:
        row = _pending(s)
        assert _row(s, row.request_id).status == "pending"
    eng.dispose()


def test_alembic_cli_with_ini(tmp_path: Path) -> None:
    """The ini file must work from any cwd, with -x url= or TRIAGE_DATABASE_URL."""
    ini = REPO_ROOT / "server" / "store" / "alembic.ini"
    alembic = [sys.executable, "-m", "alembic", "-c", str(ini)]
    env = {k: v for k, v in os.environ.items() if k != "TRIAGE_DATABASE_URL"}
    db_x, db_env = tmp_path / "x.db", tmp_path / "env.db"
    subprocess.run(
        [*alembic, "-x", f"url=sqlite:///{db_x}", "upgrade", "head"],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*alembic, "upgrade", "head"],
        cwd=tmp_path,
        env={**env, "TRIAGE_DATABASE_URL": f"sqlite:///{db_env}"},
        check=True,
        capture_output=True,
    )
    for db in (db_x, db_env):
        eng = make_db_engine(f"sqlite:///{db}")
        assert {"classifications", "feedback"} <= set(inspect(eng).get_table_names())
        eng.dispose()


# --- routing columns (migration 0002) and the review queue -----------------------------------------


def _alembic(db_engine: Engine, *args: str) -> None:
    from alembic import command

    from server.store.db import _alembic_config

    cfg = _alembic_config()
    with db_engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, args[0])(cfg, *args[1:])


def test_0002_upgrades_existing_data_and_downgrades(db_engine: Engine) -> None:
    """A database at 0001 with results and feedback keeps every row through 0002 and back."""
    _alembic(db_engine, "upgrade", "0001")
    ts = datetime(2025, 1, 1, tzinfo=UTC)
    if db_engine.dialect.name == "sqlite":
        ts = ts.replace(tzinfo=None)  # stored naive UTC, as UTCDateTime does
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO classifications (request_id, ticket_id, created_at, status, body, model_base, prompt_version, "
                "needs_review, input_truncated, prediction) VALUES ('r-old', 'T-old', :ts, 'done', 'b', 'm', 'classify/v1', "
                ":t, :f, :pred)"
            ),
            {"ts": ts, "t": True, "f": False, "pred": '{"category": "Billing"}'},
        )
        cid = conn.execute(text("SELECT id FROM classifications WHERE request_id = 'r-old'")).scalar()
        conn.execute(
            text(
                "INSERT INTO feedback (classification_id, ticket_id, created_at, reviewer, corrections) VALUES (:c, 'T-old', :ts, 'r', :corr)"
            ),
            {"c": cid, "ts": ts, "corr": '{"category": "Sales"}'},
        )
    _alembic(db_engine, "upgrade", "head")
    with make_sessionmaker(db_engine)() as s:
        row = _row(s, "r-old")
        assert row is not None and row.route is None and row.review_reasons is None and row.cost_usd is None
        assert row.prediction == {"category": "Billing"} and len(row.feedback) == 1
    _alembic(db_engine, "downgrade", "0001")
    insp = inspect(db_engine)
    assert "route" not in {c["name"] for c in insp.get_columns("classifications")}
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM feedback")).scalar() == 1  # no table rebuild, no cascade
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    _alembic(db_engine, "upgrade", "head")
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM classifications")).scalar() == 1


def test_routing_fields_roundtrip(session: Session) -> None:
    row = _pending(session)
    reasons = {"priority": 0.31, "fallback_unavailable": "rate_limited", "deadline": None}
    done = _complete(
        session,
        row.request_id,
        route="human",
        cache_kind=None,
        answered_by="hosted:openai:gpt-4o-mini",
        cost_usd=0.00123,
        review_reasons=reasons,
        needs_review=True,
    )
    assert (done.route, done.engine, done.cost_usd, done.review_reasons) == (
        "human",
        "hosted:openai:gpt-4o-mini",
        0.00123,
        reasons,
    )
    session.expire_all()
    got = _row(session, row.request_id)
    assert got.review_reasons == reasons and got.cache_kind is None


class _BogusStatus(StoredResult):
    def values(self) -> dict:
        return {**super().values(), "status": "bogus"}


def test_finish_many_is_one_transaction(session: Session) -> None:
    a, b, c = _pending(session), _pending(session), _pending(session)
    _fail(session, c.request_id, "recovered")
    done = _result(
        prediction={"category": "Billing"},
        confidence={"category": 0.9},
        latency_ms=1.0,
        prompt_tokens=0,
        completion_tokens=0,
        raw_output=None,
        route="cache",
        cache_kind="near",
        answered_by="transformers:x",
        cost_usd=0.0,
    )
    skipped = repo.finish_many(
        session,
        [(a.request_id, done), (b.request_id, StoredFailure(error="boom", cost_usd=0.5)), (c.request_id, done)],
    )
    assert skipped == [c.request_id]
    session.expire_all()
    assert _row(session, a.request_id).cache_kind == "near"
    failed = _row(session, b.request_id)
    assert failed.status == "failed" and failed.cost_usd == 0.5
    assert _row(session, c.request_id).status == "failed"

    # A failure inside the batch leaves every row as it was.
    d, e = _pending(session), _pending(session)
    with pytest.raises(IntegrityError):  # the status CHECK constraint
        repo.finish_many(session, [(d.request_id, done), (e.request_id, _BogusStatus(**vars(done)))])
    session.expire_all()
    assert [_row(session, r.request_id).status for r in (d, e)] == ["pending", "pending"]


def test_review_queue(session: Session) -> None:
    def result(ticket_id: str, reasons: dict | None, *, needs_review: bool = True) -> Classification:
        row = _pending(session, ticket_id=ticket_id)
        return _complete(
            session,
            row.request_id,
            needs_review=needs_review,
            review_reasons=reasons,
            route="human" if needs_review else "local",
        )

    a = result("T-a", {"priority": 0.2})
    result("T-ok", None, needs_review=False)
    b = result("T-b", {"category": 0.1, "fallback_unavailable": "timeout"})
    c = result("T-c", {"deadline": None})  # a key holding JSON null still counts
    failed = _pending(session, ticket_id="T-f")
    _fail(session, failed.request_id, "x")

    rows, total = repo.review_queue(session)
    assert [r.ticket_id for r in rows] == ["T-a", "T-b", "T-c"] and total == 3
    assert [r.ticket_id for r in repo.review_queue(session, reason="priority")[0]] == ["T-a"]
    assert [r.ticket_id for r in repo.review_queue(session, reason="fallback_unavailable")[0]] == ["T-b"]
    assert [r.ticket_id for r in repo.review_queue(session, reason="deadline")[0]] == ["T-c"]
    assert repo.review_queue(session, reason="hosted_invalid") == ([], 0)
    page, total = repo.review_queue(session, limit=1, offset=1)
    assert [r.id for r in page] == [b.id] and total == 3

    repo.add_feedback(session, classification=a, reviewer="r", comment=None, corrections={"priority": "Low"})
    assert [r.ticket_id for r in repo.review_queue(session)[0]] == ["T-b", "T-c"]
    # Feedback on an older row does not resolve a newer classification of the same ticket.
    newer = result("T-c", {"priority": 0.3})
    repo.add_feedback(session, classification=c, reviewer="r", comment=None, corrections={"category": "Sales"})
    assert [r.id for r in repo.review_queue(session)[0]] == [b.id, newer.id]


# --- the asked fields (migration 0003) -----------------------------------------------------------------


def test_the_asked_fields_are_stored_with_the_request(session: Session) -> None:
    labels_only = _pending(session, fields=["category", "priority", "sentiment"])
    full = _pending(session, ticket_id="T-2")
    _complete(session, labels_only.request_id, prediction={"category": "Billing"}, confidence={"category": 0.8})
    row = _row(session, labels_only.request_id)
    assert row is not None and row.fields == ["category", "priority", "sentiment"] and row.status == "done"
    assert row.prediction == {"category": "Billing"} and row.priority is None
    other = _row(session, full.request_id)
    assert other is not None and other.fields is None  # NULL: every field


def test_0003_upgrades_existing_rows_to_every_field_and_downgrades(db_engine: Engine) -> None:
    _alembic(db_engine, "upgrade", "0002")
    ts = datetime(2025, 1, 1, tzinfo=UTC)
    if db_engine.dialect.name == "sqlite":
        ts = ts.replace(tzinfo=None)
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO classifications (request_id, ticket_id, created_at, status, body, model_base, prompt_version, "
                "needs_review, input_truncated, prediction) VALUES ('r-old', 'T-old', :ts, 'done', 'b', 'm', 'classify/v2', "
                ":f, :f, :pred)"
            ),
            {"ts": ts, "f": False, "pred": '{"category": "Billing"}'},
        )
    _alembic(db_engine, "upgrade", "head")
    with make_sessionmaker(db_engine)() as s:
        row = _row(s, "r-old")
        assert row is not None and row.fields is None and row.prediction == {"category": "Billing"}
        row.fields = ["category"]
        s.commit()
        assert _row(s, "r-old").fields == ["category"]  # type: ignore[union-attr]
    _alembic(db_engine, "downgrade", "0002")
    assert "fields" not in {c["name"] for c in inspect(db_engine).get_columns("classifications")}
    with db_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM classifications")).scalar() == 1
    _alembic(db_engine, "upgrade", "head")
