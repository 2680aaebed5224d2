"""All configuration, from `OCGW_*` environment variables.

Everything else receives what it needs as arguments; only the CLI reads the environment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from gateway.headers import COUNTRY_HEADERS
from gateway.identity import CACHE_SIZE
from state import StateConfig
from tracking.productfields import ProductFields


class ConfigError(Exception):
    """Bad configuration: the message is one line naming the setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OCGW_", extra="ignore")

    # Proxy
    upstream_url: AnyHttpUrl = AnyHttpUrl("https://sandboxapi.ordercloud.io")
    upstream_timeout: float = Field(30.0, gt=0, description="seconds to wait for upstream headers")
    connect_timeout: float = Field(5.0, gt=0)
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, description="request body limit (413)")
    upstream_connections: int = Field(256, gt=0, description="pooled upstream connections")
    identity_cache: int = Field(
        CACHE_SIZE, gt=0, description="verified tokens (and their shoppers) kept per worker"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated, or *"
    )
    access_log: bool = False  # one line per proxied call, credentials redacted
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["127.0.0.1"])

    # Operations: logs, metrics, shutdown (docs/operations.md)
    log_format: Literal["plain", "json"] = "plain"  # json: one object per line
    metrics: bool = True  # Prometheus /metrics
    metrics_token: str | None = None  # bearer for /metrics; without it only loopback may scrape
    metrics_port: int | None = Field(None, gt=0, lt=65536, description="a separate /metrics port")
    metrics_interval: float = Field(5.0, gt=0, description="seconds between gauge refreshes")
    drain_seconds: float = Field(3.0, ge=0, description="/readyz says draining before closing")
    shutdown_timeout: float = Field(20.0, gt=0, description="SIGTERM to exit, at most")

    # Stores (SQLite file; outbox, visitor profiles, browser ids, decision tables)
    store: str = Field(
        "ocgateway.db",
        description="a SQLite file path, or redis://host:port/db (rediss:// for TLS) for replicas",
    )
    redis_prefix: str = "ocgw:"  # key prefix on Redis: several gateways may share one server
    spool: Path = Path("ocgateway-spool.db")  # Redis backend: events wait here while Redis is down
    lease_seconds: float = Field(30.0, gt=0, description="a dead process's deliveries move on")
    partitions: int = Field(16, gt=0, le=1024, description="Redis outbox streams")
    redis_timeout: float = Field(0.5, gt=0, description="seconds before Redis counts as down")

    # Tracking
    tracking: bool = True
    destinations: Path | None = None  # YAML: each API client's destinations, reloaded on change
    events_file: Path | None = None  # JSON lines; the default destination when none is configured
    cdp_url: AnyHttpUrl | None = None
    cdp_client_key: str | None = None
    cdp_pos: str | None = None
    cdp_channel: str = "WEB"
    cdp_order_mode: Literal["multi", "single"] = "multi"
    send_url: AnyHttpUrl | None = None
    send_site_id: str | None = None
    # name=path pairs (or a JSON object) for Send's product fields; None: productfields.DEFAULT
    send_product_fields: str | None = None
    discover_url: AnyHttpUrl | None = None
    discover_api_key: str | None = None
    webhook_url: AnyHttpUrl | None = None
    webhook_secret: str | None = None
    max_attempts: int = Field(12, gt=0, description="delivery attempts before dead-lettering")
    max_event_age: float = Field(72 * 3600, gt=0, description="seconds before dead-lettering")
    abandon_after: float = Field(2 * 3600, gt=0, description="seconds of cart inactivity")
    # A held event whose process died goes as recorded this long after its hydration could end
    hold_grace: float = Field(20.0, ge=0, description="seconds a held event waits past hydration")
    track_bots: bool = False
    honour_gpc: bool = True  # Sec-GPC: 1 and X-Tracking-Consent: no mean "do not track"

    # Backfill of order history into CDP (`ocgateway backfill`)
    admin_client_id: str | None = None  # OrderCloud API client with a secret (client credentials)
    admin_client_secret: str | None = None
    cdp_api_token: str | None = None  # Basic auth cdp_client_key:cdp_api_token for the Batch API
    cdp_batch_url: AnyHttpUrl | None = None  # the Batch API host; cdp_url when unset
    backfill_page_size: int = Field(100, gt=0, le=100, description="orders per OrderCloud page")
    backfill_poll_interval: float = Field(5.0, gt=0, description="seconds between status polls")
    backfill_poll_timeout: float = Field(3600.0, gt=0, description="seconds to wait for a batch")

    # Decisions
    decisions: Path | None = None  # YAML file or folder of tables
    admin_token: str | None = None  # bearer for /admin; admin API is closed without it
    personalize_flow: str | None = None  # friendlyId of the Personalize flow returning segments
    personalize_timeout_ms: int = Field(150, gt=0)
    personalize_segments_path: str = "segments"  # where segment names sit in the flow's response
    # custom callFlows params: k=v pairs or a JSON object of strings
    personalize_params: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # the request header holding the shopper's country; unset: CF-IPCountry and similar, in turn
    country_header: str | None = None

    # Admin UI at /admin/ (console/)
    session_secret: str | None = None  # signs UI sessions; unset: made once, kept in the store
    session_hours: float = Field(12.0, gt=0, description="a UI sign-in lasts this long")
    secure_cookies: bool = False  # true behind HTTPS: the session cookie is then HTTPS-only
    require_approval: bool = False  # a publish from the UI needs a second publisher's approval
    signin_failures: int = Field(5, gt=0, description="failed UI sign-ins per account per window")
    signin_failures_ip: int = Field(20, gt=0, description="failed UI sign-ins per address")
    signin_window: float = Field(900.0, gt=0, description="seconds a failure counts for")
    preview_username: str | None = None  # OrderCloud shopper whose lists the preview shows
    preview_password: str | None = None
    preview_client_id: str | None = None  # API client for the preview shopper's password grant
    experiment_min_visitors: int = Field(100, gt=0, description="per variant before a verdict")

    @field_validator("store", mode="before")
    @classmethod
    def _store(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("send_product_fields")
    @classmethod
    def _product_fields(cls, value: str | None) -> str | None:
        if value is not None:
            ProductFields.parse(value)  # raises ValueError naming the bad pair
        return value

    @field_validator("personalize_params", mode="before")
    @classmethod
    def _params(cls, value: object) -> object:
        return pairs(value) if isinstance(value, str) else value

    @property
    def country_headers(self) -> tuple[str, ...]:
        """Where the shopper's country is read: the configured header, else the usual ones."""
        if self.country_header:
            return (self.country_header.strip().lower(),)
        return COUNTRY_HEADERS

    @property
    def upstream(self) -> str:
        """The upstream base URL without a trailing slash."""
        return str(self.upstream_url).rstrip("/")

    @property
    def point_of_sale(self) -> str:
        """The CDP point of sale: configured, else the upstream's host name (it must exist in
        the CDP tenant)."""
        return self.cdp_pos or urlsplit(self.upstream).hostname or "ocgateway"

    @property
    def product_fields(self) -> ProductFields | None:
        """The configured product field paths, or None for the defaults."""
        fields = self.send_product_fields
        return ProductFields.parse(fields) if fields else None

    @property
    def events_path(self) -> Path:
        """The JSON lines destination: configured, else `events.jsonl` beside a SQLite store
        (in the working folder with Redis)."""
        if self.events_file is not None:
            return self.events_file
        if StateConfig(self.store).is_redis:
            return Path("events.jsonl")
        return Path(self.store).parent / "events.jsonl"


def pairs(text: str) -> dict[str, str]:
    """`k=v,k=v` or a JSON object of strings; raise ValueError naming what is wrong."""
    text = text.strip()
    if text.startswith("{"):
        mapping = json.loads(text)
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise ValueError("a JSON object of strings is expected")
        return {str(k): v for k, v in mapping.items()}
    found: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, equals, value = part.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"{part!r} is not key=value")
        found[key.strip()] = value.strip()
    return found


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise ConfigError naming the first bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "OCGW_" + str(error["loc"][0]).upper() if error["loc"] else "configuration"
        raise ConfigError(f"{name}: {error['msg']}") from None
    except SettingsError as exc:
        raise ConfigError(str(exc)) from None
