"""The OpenAPI document tells the truth: schemathesis generates requests from /openapi.json (valid ones
and invalid ones) for every operation and runs all its checks on the answers: no server error, every
status and body documented, schema-valid requests accepted, schema-invalid requests refused with a 4xx,
405 for undocumented methods, and so on.

No model is loaded: the engine is the ScriptedEngine double, the store a real SQLite file. The examples
per operation are few and derandomized, so the run is the same every time and takes seconds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi

from tests.api.conftest import make_app

# The schema is loaded when the module is collected (schemathesis.pytest.from_fixture, the lazy way, fails
# under pytest 9), so the store lives in a directory of its own rather than in a tmp_path fixture.
_STORE = tempfile.TemporaryDirectory(prefix="triage-contract-")
# A batch over `maxItems` is refused with 413 (Content Too Large), a refusal schemathesis does not list.
REFUSALS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
CONFIG = SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}})
# Open mode (loopback, no keys: every request is the anonymous admin) without a rate limit: the run sends
# hundreds of requests from one address, and keys are tested in test_auth.py / test_attacks.py.
APP = make_app(Path(_STORE.name), auth={"required": False, "rate_limit": None})
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def _stop_app() -> Iterator[None]:
    yield
    # schemathesis keeps an app's lifespan running for the whole process; end it with the module.
    asgi.shutdown_lifespans()
    _STORE.cleanup()


@schema.parametrize()
@hypothesis.settings(max_examples=25, derandomize=True, database=None, deadline=None)
def test_every_operation_keeps_its_documented_contract(case: schemathesis.Case) -> None:
    # No `checks=`: every built-in check schemathesis registers (the CLI's `--checks all`).
    case.call_and_validate()
