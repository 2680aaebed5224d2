"""A local, in-memory OrderCloud-compatible API for the demo, end-to-end tests and benchmarks.

`create_app()` gives a fresh seeded sandbox (state per app); `serve()` runs one with uvicorn.
The seeded logins, client IDs and catalog are described in `gateway.sandbox.catalog`.
"""

from __future__ import annotations

from .app import create_app, serve

__all__ = ["create_app", "serve"]
