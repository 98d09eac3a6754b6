"""Which corrections become training data: by the key that sent them (role, name, id), read from a real
encrypted store, with redacted rows still used and the filter recorded in the manifest's snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.config import ConfigError, load_config
from finetune.data import DataError, FeedbackFilter, feedback_examples, load_data
from server.config import StorageSettings
from server.taxonomy import load_taxonomy
from tests.finetune.feedback_store import FeedbackStore, make_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("tickets")


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    s = make_store(tmp_path)
    s.add("T-review", {"category": "Billing"}, key="rita")
    s.add("T-admin", {"priority": "High"}, key="ada")
    s.add("T-classify", {"category": "Sales"}, key="clerk")  # a classify-only key poisoning the data
    s.add("T-legacy", {"category": "General"}, key=None, role=None)  # before keys existed
    s.add("T-open", {"category": "General"}, key=None, role="admin")  # a server running without keys
    return s


def _read(store: FeedbackStore, tax, only: FeedbackFilter | None = None):
    return feedback_examples(store.url, tax, storage=store.storage, only=only)


def test_the_store_is_sealed_and_read_through_its_keyring(store: FeedbackStore, tax) -> None:
    raw = store.raw()
    assert "4111" not in raw and "Billing" not in raw and "enc:v1:" in raw
    examples, _ = _read(store, tax)
    assert {e.uid: e.ticket.body for e in examples}["T-review"].endswith("4111 1111 1111 1111 charged twice.")


def test_default_filter_reads_reviewers_and_admins_only(store: FeedbackStore, tax) -> None:
    examples, snapshot = _read(store, tax)
    assert {e.uid for e in examples} == {"T-review", "T-admin"}
    assert snapshot["filter"] == {
        "roles": ["review", "admin"],
        "key_names": None,
        "key_ids": None,
        "unattributed": False,
    }
    assert snapshot["rows_skipped_filter"] == {"unattributed": 2, "role": 1, "key": 0}
    assert snapshot["feedback_rows"] == 5 and snapshot["rows_used"] == 2
    by_id = {e.uid: e for e in examples}
    assert by_id["T-review"].answer["category"] == "Billing"
    assert by_id["T-review"].meta["key_role"] == "review" and by_id["T-review"].origin.startswith("feedback:")


def test_a_refused_key_cannot_override_a_reviewer(store: FeedbackStore, tax) -> None:
    store.add("T-review", {"category": "Sales"}, key="clerk")  # later, from the classify key
    examples, _ = _read(store, tax)
    assert {e.uid: e.answer["category"] for e in examples}["T-review"] == "Billing"


def test_filters_by_key_name_id_role_and_unattributed(store: FeedbackStore, tax) -> None:
    by_name, snap = _read(store, tax, FeedbackFilter(key_names=("rita",)))
    assert [e.uid for e in by_name] == ["T-review"] and snap["rows_skipped_filter"]["key"] == 1
    by_id, _ = _read(store, tax, FeedbackFilter(key_ids=(store.keys["ada"],)))
    assert [e.uid for e in by_id] == ["T-admin"]
    # A key of the right name but a refused role stays out: both conditions hold.
    assert _read(store, tax, FeedbackFilter(roles=("review",), key_names=("ada", "rita")))[0][0].uid == "T-review"
    everyone, _ = _read(store, tax, FeedbackFilter(roles=("classify", "review", "admin"), unattributed=True))
    assert {e.uid for e in everyone} == {"T-review", "T-admin", "T-classify", "T-legacy", "T-open"}
    with pytest.raises(DataError, match="no API key named 'rtia'"):
        _read(store, tax, FeedbackFilter(key_names=("rtia",)))


def test_feedback_redacted_by_retention_is_still_used(store: FeedbackStore, tax) -> None:
    store.redact("T-admin", "Card <CREDIT_CARD> charged twice.")
    examples, snapshot = _read(store, tax)
    by_id = {e.uid: e for e in examples}
    assert by_id["T-admin"].ticket.body == "Card <CREDIT_CARD> charged twice." and by_id["T-admin"].meta["redacted"]
    assert by_id["T-admin"].answer["priority"] == "High"
    assert snapshot["rows_redacted"] == 1 and snapshot["rows_used"] == 2


def test_without_the_data_key_sealed_rows_are_an_error_not_ciphertext(store: FeedbackStore, tax, tmp_path) -> None:
    elsewhere = StorageSettings(data_key_file=tmp_path / "nowhere" / "data.key")
    with pytest.raises(Exception, match="no data key was configured"):
        feedback_examples(store.url, tax, storage=elsewhere)
    assert not elsewhere.data_key_file.exists(), "a training job never creates a data key"


def test_config_options_reach_the_manifest_snapshot(store: FeedbackStore, tax, tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text(
        "ticket_id,subject,body,category,priority,sentiment,reasoning,label_source\n"
        "T-x,Hi,Some body text,Technical,Low,neutral,Because.,reviewed\n",
        encoding="utf-8",
    )
    over = {"data.files": [str(csv)], "data.database_url": store.url, "data.feedback_keys": "[rita, ada]"}
    cfg = load_config(ROOT / "finetune/configs/tickets.yaml", over)
    data = load_data(cfg, store.settings, tax)
    snapshot = data.provenance["feedback"]
    assert snapshot["filter"]["key_names"] == ["rita", "ada"] and snapshot["rows_used"] == 2
    assert {e.uid for e in data.train + data.held} == {"T-x", "T-review", "T-admin"}


def test_feedback_role_options_are_validated() -> None:
    cfg = load_config(None, {})
    assert cfg.data.feedback_roles == ["review", "admin"] and cfg.data.feedback_unattributed is False
    assert load_config(None, {"data.feedback_roles": "review"}).data.feedback_roles == ["review"]
    with pytest.raises(ConfigError, match="data.feedback_roles.0: Input should be 'classify', 'review' or 'admin'"):
        load_config(None, {"data.feedback_roles": "[reviewer]"})
    with pytest.raises(ConfigError, match="data.feedback_roles: List should have at least 1 item"):
        load_config(None, {"data.feedback_roles": "[]"})
    with pytest.raises(ConfigError, match="data.feedback_key_ids.0: Input should be a valid integer"):
        load_config(None, {"data.feedback_key_ids": "[ana]"})
