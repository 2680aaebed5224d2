"""The admin API fuzzed in-process by schemathesis from its own OpenAPI document: no answer is a
5xx, every status is documented, and every body matches its documented schema.

The gateway app itself is fuzzed (the admin API mounted at /admin as in production), so the document's `servers` entry
is what makes the generated calls reach the routes. Bounded: a few dozen examples per operation,
positive and negative, keep the whole module well under a minute."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import Gateway, create_app
from gateway.settings import Settings

EXAMPLE = Path(__file__).parent.parent / "examples" / "decisions.yaml"
TOKEN = "fuzz-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


_STORE = tempfile.TemporaryDirectory(prefix="ocgw-fuzz-")  # removed when the run ends


def _gateway() -> Gateway:
    """The whole gateway app (schemathesis runs its lifespan), with the example tables imported
    so reads find tables, versions and a source. The upstream is a closed port: the admin API
    never calls it."""
    return create_app(
        Settings(
            upstream_url="http://127.0.0.1:9",
            store=Path(_STORE.name) / "gw.db",
            tracking=False,
            decisions=EXAMPLE,
            admin_token=TOKEN,
        )
    )


schema = schemathesis.openapi.from_asgi("/admin/openapi.json", _gateway())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_admin_api_answers_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(headers=AUTH, checks=CHECKS)
