"""A real feedback store for the fine-tuning tests: SQLite with a data keyring attached (so ticket text and
corrections are sealed on disk), API keys of each role, and corrections sent with them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, text

from server.config import Settings, StorageSettings, load_settings
from server.store import repository as repo
from server.store.db import make_sessionmaker, migrate, open_store
from server.store.models import ApiKey, Classification, Feedback
from server.store.records import StoredResult

PREDICTION = {
    "category": "Technical",
    "priority": "Low",
    "extracted_info": {"sentiment": "neutral", "product": None, "error_code": None},
    "reasoning": "r",
}


@dataclass
class FeedbackStore:
    url: str
    storage: StorageSettings
    keys: dict[str, int]  # key name -> id

    @property
    def settings(self) -> Settings:
        return load_settings(database_url=self.url, storage={"data_key_file": str(self.storage.data_key_file)})

    def engine(self) -> Any:
        return open_store(self.url, self.storage, create_key=False)

    def add(
        self,
        ticket_id: str,
        corrections: dict[str, Any],
        *,
        key: str | None,
        body: str | None = None,
        role: str | None = None,
    ) -> int:
        """A classification of `ticket_id` (stored once) and one correction sent with the key named `key`
        (None: no key, as before keys existed or in open mode, recorded with `role`). Returns its id."""
        engine = self.engine()
        try:
            with make_sessionmaker(engine)() as s:
                cls = repo.get_latest_by_ticket_id(s, ticket_id)
                if cls is None:
                    rid = f"r-{ticket_id}"
                    repo.create_pending(
                        s,
                        request_id=rid,
                        ticket_id=ticket_id,
                        subject=f"Subject of {ticket_id}",
                        body=body or f"The body of ticket {ticket_id}: card 4111 1111 1111 1111 charged twice.",
                        previous_interactions=None,
                        model_base="m",
                        model_adapter=None,
                        prompt_version="classify/v2",
                        taxonomy="tickets@1",
                    )
                    stored = StoredResult(
                        prediction=PREDICTION,
                        confidence={},
                        needs_review=True,
                        input_truncated=False,
                        latency_ms=1.0,
                        prompt_tokens=1,
                        completion_tokens=1,
                        raw_output="{}",
                    )
                    assert repo.finish_many(s, [(rid, stored)]) == []
                    cls = repo.get_latest_by_ticket_id(s, ticket_id)
                assert cls is not None
                fb = repo.add_feedback(
                    s, classification=cls, reviewer="ana", comment="checked", corrections=corrections
                )
                fb.key_id = self.keys[key] if key is not None else None
                fb.key_role = self._role(s, key) if key is not None else role
                s.commit()
                return fb.id
        finally:
            engine.dispose()

    def _role(self, s: Any, key: str) -> str:
        return str(s.scalars(select(ApiKey.role).where(ApiKey.name == key)).one())

    def redact(self, ticket_id: str, body: str) -> None:
        """What retention does to a ticket kept for training: its text redacted, its feedback marked."""
        engine = self.engine()
        try:
            with make_sessionmaker(engine)() as s:
                for cls in s.scalars(select(Classification).where(Classification.ticket_id == ticket_id)):
                    cls.subject, cls.body = None, body
                for fb in s.scalars(select(Feedback).where(Feedback.ticket_id == ticket_id)):
                    fb.redacted_at = datetime.now(UTC)
                s.commit()
        finally:
            engine.dispose()

    def erase(self, ticket_id: str) -> None:
        engine = self.engine()
        try:
            with make_sessionmaker(engine)() as s:
                for fb in s.scalars(select(Feedback).where(Feedback.ticket_id == ticket_id)):
                    s.delete(fb)
                for cls in s.scalars(select(Classification).where(Classification.ticket_id == ticket_id)):
                    s.delete(cls)
                s.commit()
        finally:
            engine.dispose()

    def raw(self) -> str:
        engine = self.engine()
        try:
            with engine.connect() as conn:
                rows = [conn.execute(text(f"SELECT * FROM {t}")).all() for t in ("classifications", "feedback")]
            return repr(rows)
        finally:
            engine.dispose()


def make_store(tmp_path: Path) -> FeedbackStore:
    """An empty migrated store, its keyring in tmp_path, and keys `clerk` (classify), `rita` (review),
    `ada` (admin)."""
    storage = StorageSettings(data_key_file=tmp_path / "keys" / "data.key")
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    engine = open_store(url, storage)  # generates the key file, as the server's first start does
    keys: dict[str, int] = {}
    try:
        migrate(engine)
        with make_sessionmaker(engine)() as s:
            for name, role in (("clerk", "classify"), ("rita", "review"), ("ada", "admin")):
                key = ApiKey(name=name, prefix=f"tk_{name}", secret_hash="x", role=role)
                s.add(key)
                s.flush()
                keys[name] = key.id
            s.commit()
    finally:
        engine.dispose()
    return FeedbackStore(url, storage, keys)
