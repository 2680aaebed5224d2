"""`ocgateway doctor`: check a configuration against the services it names, before a deploy.

Each check talks to the real service the way the gateway will (the upstream's signing keys, the
store, each destination's host) but never changes anything there: no event is sent, the store
write is rolled back or expires at once. One line per check, `ok|warn|fail  check  detail`, with a
fix when something is wrong; the exit status is 1 when any check failed, so scripts can gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import ssl
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import jwt

from decisions.compile import compile_document, validate
from decisions.errors import ValidationFailed
from decisions.loader import read_source
from gateway.compose import state_config
from gateway.settings import Settings

TIMEOUT = 5.0  # seconds per check
UNKNOWN_KID = "ocgw-doctor-no-such-key"  # a kid no upstream has: its answer shows the route works

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True, slots=True)
class Finding:
    status: Status
    check: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f"  fix: {self.fix}" if self.fix else ""
        return f"{self.status:<4}  {self.check}  {self.detail}{fix}"


Check = Callable[[], Awaitable[list[Finding]]]


async def diagnose(
    settings: Settings, *, token: str | None = None, timeout: float = TIMEOUT
) -> list[Finding]:
    """Every check the configuration calls for, run concurrently, reported in a fixed order."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        checks: list[tuple[str, Check]] = [
            ("upstream", lambda: _upstream(http, settings.upstream, token)),
            ("store", lambda: _store(settings)),
            *_destinations(http, settings, timeout),
        ]
        if settings.decisions is not None:
            tables = settings.decisions
            checks.append(("tables", lambda: asyncio.to_thread(_tables, tables)))
        results = await asyncio.gather(*(_bounded(name, check, timeout) for name, check in checks))
    return [finding for found in results for finding in found]


async def _bounded(name: str, check: Check, timeout: float) -> list[Finding]:
    """A check that hangs or raises is a failure of that check, not of the doctor."""
    try:
        return await asyncio.wait_for(check(), timeout * 2)
    except TimeoutError:
        return [Finding("fail", name, f"no answer within {timeout * 2:g} s", "check the network")]
    except Exception as exc:  # the doctor reports every failure it meets as a line
        return [Finding("fail", name, f"{type(exc).__name__}: {exc}")]


# upstream -------------------------------------------------------------------------------------


async def _upstream(http: httpx.AsyncClient, base: str, token: str | None) -> list[Finding]:
    kid = _kid(token) if token else None
    if token and kid is None:
        return [Finding("fail", "upstream.certs", "the token has no kid", "pass a buyer token")]
    try:
        answer = await http.get(
            f"{base}/oauth/certs/{kid or UNKNOWN_KID}",
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
    except httpx.HTTPError as exc:
        return [
            Finding(
                "fail",
                "upstream",
                f"{base} unreachable: {type(exc).__name__} {exc}".strip(),
                "check OCGW_UPSTREAM_URL and that this host can reach it",
            )
        ]
    found = [Finding("ok", "upstream", f"{base} answers HTTP")]
    body = _json(answer)
    if kid is not None:
        if answer.status_code == 200 and isinstance(body, dict) and body.get("kty") == "RSA":
            found.append(Finding("ok", "upstream.certs", f"signing key {kid} served"))
        else:
            found.append(
                Finding(
                    "fail",
                    "upstream.certs",
                    f"/oauth/certs/{kid} answered {answer.status_code}, not an RSA key",
                    "the token must come from this upstream (OCGW_UPSTREAM_URL)",
                )
            )
    elif answer.status_code == 404 and body is not None:
        found.append(
            Finding("ok", "upstream.certs", "/oauth/certs/{kid} answers (JSON 404 for no key)")
        )
    else:
        found.append(
            Finding(
                "fail",
                "upstream.certs",
                f"/oauth/certs/{{kid}} answered {answer.status_code}"
                f"{'' if body is not None else ' without JSON'}: not an OrderCloud API",
                "OCGW_UPSTREAM_URL must be the OrderCloud API host (e.g. https://sandboxapi.ordercloud.io)",
            )
        )
    return found


def _kid(token: str) -> str | None:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return None
    return kid if isinstance(kid, str) and kid else None


def _json(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


# store ----------------------------------------------------------------------------------------


async def _store(settings: Settings) -> list[Finding]:
    config = state_config(settings)
    if config.is_redis:
        return await _redis(config.location, config.prefix)
    return [await asyncio.to_thread(_sqlite, Path(config.location))]


def _sqlite(path: Path) -> Finding:
    """A write in a transaction that is rolled back: proves the file, its journal and the folder
    are writable, and that no other process holds the write lock, without changing the store."""
    if not path.exists():
        folder = path.parent if str(path.parent) else Path(".")
        try:
            with tempfile.NamedTemporaryFile(dir=folder):
                pass
        except OSError as exc:
            return Finding(
                "fail",
                "store",
                f"sqlite {path}: cannot create it: {exc.strerror or exc}",
                f"create {folder} writable by the gateway's user, or set OCGW_STORE",
            )
        return Finding("ok", "store", f"sqlite {path}: not created yet; its folder is writable")
    try:
        with sqlite3.connect(path, timeout=2.0, isolation_level=None) as db:
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("CREATE TABLE IF NOT EXISTS ocgw_doctor (checked REAL)")
                db.execute("INSERT INTO ocgw_doctor VALUES (julianday('now'))")
            finally:
                db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        busy = "locked" in str(exc)
        return Finding(
            "fail",
            "store",
            f"sqlite {path}: {exc}",
            "another process holds the write lock for too long"
            if busy
            else "make the file and its folder writable by the gateway's user",
        )
    return Finding("ok", "store", f"sqlite {path} writable (journal {mode})")


async def _redis(url: str, prefix: str) -> list[Finding]:
    from redis import asyncio as aioredis
    from redis.exceptions import RedisError, ResponseError

    client = aioredis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
    shown = _without_password(url)
    try:
        key = f"{prefix}doctor:{uuid.uuid4().hex}"
        await client.set(key, "1", px=5000)
        await client.delete(key)
        info = await client.info("persistence")
        try:
            fsync = (await client.config_get("appendfsync")).get("appendfsync", "unknown")
            save = (await client.config_get("save")).get("save", "")
        except ResponseError:  # managed Redis often refuses CONFIG
            fsync, save = "unknown", "unknown"
    except RedisError as exc:
        return [
            Finding(
                "fail",
                "store",
                f"redis {shown}: {exc}",
                "check OCGW_STORE, that Redis runs and that this host may reach it",
            )
        ]
    finally:
        await client.aclose()
    found = [Finding("ok", "store", f"redis {shown} reachable and writable")]
    return found + [_persistence(info, fsync, save)]


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _persistence(info: dict[str, Any], fsync: str, save: str) -> Finding:
    """What Redis's persistence settings risk for events the gateway has acknowledged: an event
    is acknowledged once Redis has it in memory."""
    aof = str(info.get("aof_enabled", "0")) == "1"
    rdb = bool(save) and save != "unknown"
    detail = f"aof_enabled={int(aof)} appendfsync={fsync} rdb_save={save or 'off'!r}"
    if aof and fsync == "always":
        return Finding("ok", "store.persistence", f"{detail}: acknowledged events survive a crash")
    if aof:
        return Finding(
            "warn",
            "store.persistence",
            f"{detail}: a Redis crash can lose about the last second of acknowledged events",
            "CONFIG SET appendfsync always (and in redis.conf) if no event may ever be lost",
        )
    if rdb:
        return Finding(
            "warn",
            "store.persistence",
            f"{detail}: a Redis crash loses every event since the last snapshot",
            "appendonly yes, appendfsync always",
        )
    return Finding(
        "fail",
        "store.persistence",
        f"{detail}: no persistence; a Redis restart loses every undelivered event",
        "appendonly yes, appendfsync always",
    )


# destinations ---------------------------------------------------------------------------------


def _destinations(
    http: httpx.AsyncClient, settings: Settings, timeout: float
) -> list[tuple[str, Check]]:
    """The checks for each destination the tracker will deliver to (none with tracking off)."""
    if not settings.tracking:
        return []
    checks: list[tuple[str, Check]] = []
    if settings.cdp_url:
        cdp = str(settings.cdp_url).rstrip("/")
        checks.append(
            ("cdp", lambda: _cdp(http, cdp, settings.cdp_client_key, settings.point_of_sale))
        )
    pairs = [
        ("send", settings.send_url, settings.send_site_id, "OCGW_SEND_SITE_ID"),
        ("discover", settings.discover_url, True, ""),
        ("webhook", settings.webhook_url, True, ""),
    ]
    for name, url, needed, variable in pairs:
        if url is None:
            continue
        if not needed:
            checks.append((name, _missing(name, variable)))
        else:
            checks.append((name, _reach_check(name, str(url), timeout)))
    if settings.events_file is not None or not (
        (settings.cdp_url and settings.cdp_client_key)
        or (settings.send_url and settings.send_site_id)
        or settings.discover_url
        or settings.webhook_url
    ):
        events = settings.events_path
        checks.append(("events_file", lambda: asyncio.to_thread(_events_file, events)))
    return checks


def _missing(name: str, variable: str) -> Check:
    async def check() -> list[Finding]:
        return [
            Finding(
                "fail",
                name,
                f"URL set but {variable} is not: nothing is delivered",
                f"set {variable}",
            )
        ]

    return check


def _reach_check(name: str, url: str, timeout: float) -> Check:
    async def check() -> list[Finding]:
        return [await _reach(name, url, timeout)]

    return check


async def _cdp(
    http: httpx.AsyncClient, base: str, client_key: str | None, pos: str
) -> list[Finding]:
    """The host answers, and the browser-create call (which mints an anonymous browser id and
    records no event) accepts the client key. CDP checks the point of sale only on events."""
    try:
        await http.head(base)
    except httpx.HTTPError as exc:
        return [
            Finding(
                "fail",
                "cdp",
                f"{base} unreachable: {type(exc).__name__} {exc}".strip(),
                "check OCGW_CDP_URL (e.g. https://api-engage-eu.sitecorecloud.io)",
            )
        ]
    found = [Finding("ok", "cdp", f"{base} answers HTTP")]
    if not client_key:
        return found + [
            Finding(
                "fail",
                "cdp.client_key",
                "OCGW_CDP_CLIENT_KEY is not set: CDP gets nothing",
                "set OCGW_CDP_CLIENT_KEY",
            )
        ]
    answer = await http.get(
        f"{base}/v1.2/browser/create.json", params={"client_key": client_key, "message": "{}"}
    )
    body = _json(answer)
    if answer.status_code < 300 and isinstance(body, dict) and body.get("ref"):
        return found + [
            Finding(
                "ok",
                "cdp.client_key",
                f"browser create answered a ref; events will name point of sale {pos!r}",
            )
        ]
    return found + [
        Finding(
            "fail",
            "cdp.client_key",
            f"browser create answered {answer.status_code} without a ref",
            "check OCGW_CDP_CLIENT_KEY and that OCGW_CDP_URL is your tenant's region",
        )
    ]


async def _reach(name: str, url: str, timeout: float) -> Finding:
    """TCP (and TLS for https) to the host: reachable, and nothing is sent."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host, port = parts.hostname or "", parts.port or (443 if secure else 80)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if secure else None
            ),
            timeout,
        )
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        return Finding(
            "fail",
            name,
            f"{host}:{port} unreachable: {type(exc).__name__} {exc}".strip(),
            f"check OCGW_{name.upper()}_URL and the network (events wait in the outbox meanwhile)",
        )
    writer.close()
    await writer.wait_closed()
    return Finding("ok", name, f"{host}:{port} accepts {'TLS' if secure else 'TCP'} connections")


def _events_file(path: Path) -> list[Finding]:
    folder = path.parent if str(path.parent) else Path(".")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(folder, os.W_OK | os.X_OK)
    if writable:
        return [Finding("ok", "events_file", f"{path} writable")]
    return [
        Finding(
            "fail",
            "events_file",
            f"{path} is not writable",
            "make it writable by the gateway's user, or set OCGW_EVENTS_FILE",
        )
    ]


# tables ---------------------------------------------------------------------------------------


def _tables(path: Path) -> list[Finding]:
    try:
        _, parsed = read_source(path)
        compiled = compile_document(validate(parsed), 0)
    except ValidationFailed as exc:
        first = "; ".join(str(e) for e in exc.errors[:3])
        more = f" (and {len(exc.errors) - 3} more)" if len(exc.errors) > 3 else ""
        return [
            Finding("fail", "tables", f"{first}{more}", f"ocgateway tables validate {path} for all")
        ]
    except OSError as exc:
        return [
            Finding(
                "fail",
                "tables",
                f"cannot read {path}: {exc.strerror or exc}",
                "check OCGW_DECISIONS",
            )
        ]
    tables = compiled.document.tables
    rules = sum(len(t.rules) for t in tables)
    return [Finding("ok", "tables", f"{path}: {len(tables)} tables, {rules} rules valid")]


# command --------------------------------------------------------------------------------------


def exit_status(findings: list[Finding]) -> int:
    return 1 if any(f.status == "fail" for f in findings) else 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    findings = asyncio.run(diagnose(settings, token=args.token, timeout=args.timeout))
    if args.json:
        json.dump([asdict(f) for f in findings], sys.stdout, indent=2)
        print()
    else:
        for finding in findings:
            print(finding.line())
    return exit_status(findings)


def register(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="check the configuration against the services it names (exit 1 on a failure)"
    )
    doctor.add_argument(
        "--token", help="a buyer token from the upstream: its signing key is fetched"
    )
    doctor.add_argument("--timeout", type=float, default=TIMEOUT, help="seconds per check")
    doctor.add_argument("--json", action="store_true", help="one JSON object per check")
    doctor.set_defaults(func=_run)
