"""The operations dashboard, twice from one panel list: as Grafana JSON, and drawn from a real run.

`python bench/dashboard.py [--seconds 60]` starts the sandbox, a fake Sitecore (webhook, CDP,
Personalize answering slowly now and then) and `ocgateway serve --workers 2`, drives mixed
storefront traffic (logins, lists, searches, product views, cart adds) for `--seconds`, makes the
webhook answer 503 for a stretch in the middle, scrapes /metrics every second, and writes:

- docs/grafana-dashboard.json: the panels as PromQL over a `datasource` variable;
- docs/dashboard.svg: the same panels computed from the scraped samples (rates and histogram
  quantiles over 10 s windows, the way PromQL's rate() and histogram_quantile() compute them).

Plain Python only: the SVG is written by hand, no plotting library.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread
from tests.fake_sitecore import FakeSitecore
from tests.servers import gateway_process

WINDOW = 10  # seconds: the [10s] of rate() and histogram_quantile()
Series = dict[str, list[float | None]]  # legend -> one value per scrape


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # Grafana unit id
    exprs: tuple[tuple[str, str], ...]  # (PromQL, legend format)
    compute: Callable[[list[dict]], Series]  # the same over the scraped samples


# -- the queries, over scrapes: each scrape is {(name, frozenset(labels)): value} -------------


def _select(scrape: dict, name: str) -> Iterator[tuple[dict[str, str], float]]:
    for (n, labels), value in scrape.items():
        if n == name:
            yield dict(labels), value


def _by(scrapes: list[dict], name: str, key: Callable[[dict[str, str]], str | None]) -> Series:
    """Per scrape, the sum of `name` grouped by key(labels) (None: left out)."""
    keys = sorted({k for s in scrapes for labels, _ in _select(s, name) if (k := key(labels))})
    out: Series = {k: [] for k in keys}
    for scrape in scrapes:
        sums: dict[str, float] = {}
        for labels, value in _select(scrape, name):
            k = key(labels)
            if k is not None:
                sums[k] = sums.get(k, 0.0) + value
        for k in keys:
            out[k].append(sums.get(k))
    return out


def _rate(series: Series) -> Series:
    out: Series = {}
    for k, values in series.items():
        rates: list[float | None] = []
        for i, v in enumerate(values):
            j = max(0, i - WINDOW)
            before = values[j]
            rates.append(None if v is None or before is None or i == j else (v - before) / (i - j))
        out[k] = rates
    return out


def rate_by(
    name: str, key: Callable[[dict[str, str]], str | None]
) -> Callable[[list[dict]], Series]:
    return lambda scrapes: _rate(_by(scrapes, name, key))


def gauge_by(
    name: str, key: Callable[[dict[str, str]], str | None]
) -> Callable[[list[dict]], Series]:
    return lambda scrapes: _by(scrapes, name, key)


def quantiles(
    name: str, group: str, qs: tuple[float, ...], keep: Callable[[str], bool] = lambda _: True
) -> Callable[[list[dict]], Series]:
    """histogram_quantile(q, sum by (le, group) (rate(name_bucket[10s]))), linear in a bucket."""

    def compute(scrapes: list[dict]) -> Series:
        buckets = _rate(
            _by(
                scrapes,
                name + "_bucket",
                lambda labels: (
                    f"{labels[group]}\x00{labels['le']}" if keep(labels[group]) else None
                ),
            )
        )
        grouped: dict[str, list[tuple[float, list[float | None]]]] = {}
        for key, values in buckets.items():
            g, le = key.split("\x00")
            grouped.setdefault(g, []).append((float(le), values))
        out: Series = {}
        for g, pairs in sorted(grouped.items()):
            pairs.sort()
            for q in qs:
                label = f"{g} p{round(q * 100)}"
                out[label] = [
                    _quantile(q, [(le, v[i]) for le, v in pairs]) for i in range(len(scrapes))
                ]
        return out

    return compute


def _quantile(q: float, cumulative: list[tuple[float, float | None]]) -> float | None:
    if any(v is None for _, v in cumulative):
        return None
    total = cumulative[-1][1]
    if not total:
        return None
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if le == float("inf"):
                return lower_le
            width = count - lower_count
            return lower_le + (le - lower_le) * ((rank - lower_count) / width if width else 1)
        lower_le, lower_count = le, count
    return None


ROUTE = "http_server_request_duration_seconds"
CLIENT = "http_client_request_duration_seconds"
PANELS = (
    Panel(
        "Requests/s by route",
        "reqps",
        (("sum by (http_route) (rate(" + ROUTE + "_count[1m]))", "{{http_route}}"),),
        rate_by(ROUTE + "_count", lambda labels: labels["http_route"]),
    ),
    Panel(
        "Latency p50/p95/p99 by route",
        "s",
        tuple(
            (
                f"histogram_quantile({q}, sum by (le, http_route) (rate({ROUTE}_bucket[1m])))",
                f"{{{{http_route}}}} p{round(q * 100)}",
            )
            for q in (0.5, 0.95, 0.99)
        ),
        quantiles(ROUTE, "http_route", (0.5, 0.95, 0.99), lambda r: r in _BUSY_ROUTES),
    ),
    Panel(
        "Upstream latency p95 by server",
        "s",
        (
            (
                f"histogram_quantile(0.95, sum by (le, server) (rate({CLIENT}_bucket[1m])))",
                "{{server}}",
            ),
        ),
        quantiles(CLIENT, "server", (0.95,)),
    ),
    Panel(
        "Errors/s by status class",
        "reqps",
        (
            (
                f'sum by (http_response_status_code) (rate({ROUTE}_count{{http_response_status_code=~"4xx|5xx"}}[1m]))',
                "{{http_response_status_code}}",
            ),
        ),
        rate_by(
            ROUTE + "_count",
            lambda labels: (
                c if (c := labels["http_response_status_code"]) in ("4xx", "5xx") else None
            ),
        ),
    ),
    Panel(
        "Outbox backlog by destination",
        "short",
        (("max by (destination) (ocgw_outbox_pending)", "{{destination}}"),),
        gauge_by("ocgw_outbox_pending", lambda labels: labels["destination"]),
    ),
    Panel(
        "Oldest undelivered event (age)",
        "s",
        (("max by (destination) (ocgw_outbox_oldest_age_seconds)", "{{destination}}"),),
        gauge_by("ocgw_outbox_oldest_age_seconds", lambda labels: labels["destination"]),
    ),
    Panel(
        "Deliveries/s by outcome",
        "ops",
        (
            (
                "sum by (destination, outcome) (rate(ocgw_delivery_attempts_total[1m]))",
                "{{destination}} {{outcome}}",
            ),
        ),
        rate_by(
            "ocgw_delivery_attempts_total",
            lambda labels: f"{labels['destination']} {labels['outcome']}",
        ),
    ),
    Panel(
        "Dead letters by destination",
        "short",
        (("max by (destination) (ocgw_outbox_dead)", "{{destination}}"),),
        gauge_by("ocgw_outbox_dead", lambda labels: labels["destination"]),
    ),
    Panel(
        "Breaker (0 closed, 1 half-open, 2 open)",
        "short",
        (("max by (destination) (ocgw_breaker_state)", "{{destination}}"),),
        gauge_by("ocgw_breaker_state", lambda labels: labels["destination"]),
    ),
    Panel(
        "Decisions/s by table/rule",
        "ops",
        (("sum by (table, rule) (rate(ocgw_decisions_total[1m]))", "{{table}}/{{rule}}"),),
        rate_by("ocgw_decisions_total", lambda labels: f"{labels['table']}/{labels['rule']}"),
    ),
    Panel(
        "callFlows/s by outcome, and fail-open hooks/s",
        "ops",
        (
            ("sum by (outcome) (rate(ocgw_callflows_total[1m]))", "callFlows {{outcome}}"),
            ("sum by (hook) (rate(ocgw_hook_failures_total[1m]))", "fail-open {{hook}}"),
        ),
        lambda scrapes: {
            **_rate(
                _by(
                    scrapes, "ocgw_callflows_total", lambda labels: f"callFlows {labels['outcome']}"
                )
            ),
            **_rate(
                _by(
                    scrapes,
                    "ocgw_hook_failures_total",
                    lambda labels: f"fail-open {labels['hook']}",
                )
            ),
        },
    ),
    Panel(
        "Store up (1 ok, 0.5 degraded) and store errors/s",
        "short",
        (
            ("min(ocgw_store_up)", "store up"),
            ("sum by (operation) (rate(ocgw_store_errors_total[1m]))", "errors {{operation}}"),
        ),
        lambda scrapes: {
            **_by(scrapes, "ocgw_store_up", lambda labels: "store up"),
            **_rate(
                _by(
                    scrapes,
                    "ocgw_store_errors_total",
                    lambda labels: f"errors {labels['operation']}",
                )
            ),
        },
    ),
)
_BUSY_ROUTES = {"/v1/me/products", "/v1/cart/lineitems"}  # the image's panel: two, for legibility


# -- Grafana ---------------------------------------------------------------------------------


def grafana() -> dict:
    panels = []
    for i, panel in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": panel.title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 8, "x": (i % 3) * 8, "y": (i // 3) * 8},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": [
                    {"refId": chr(65 + j), "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(panel.exprs)
                ],
            }
        )
    return {
        "title": "ocgateway",
        "uid": "ocgateway-ops",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]
        },
        "panels": panels,
    }


# -- SVG ---------------------------------------------------------------------------------------

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H, PAD = 420, 230, 38


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.1f}s"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _panel_svg(panel: Panel, series: Series, x0: int, y0: int, marks: list[tuple[int, str]]) -> str:
    n = max((len(v) for v in series.values()), default=0)
    values = [v for vs in series.values() for v in vs if v is not None]
    top = max(values, default=0) or 1
    top *= 1.1
    plot_w, plot_h = W - PAD - 10, H - PAD - 60
    px = lambda i: x0 + PAD + plot_w * i / max(1, n - 1)  # noqa: E731
    py = lambda v: y0 + 24 + plot_h * (1 - v / top)  # noqa: E731
    out = [
        f'<rect x="{x0}" y="{y0}" width="{W - 6}" height="{H - 6}" fill="#fff" stroke="#ccc"/>',
        f'<text x="{x0 + 8}" y="{y0 + 16}" font-size="12" font-weight="bold">{panel.title}</text>',
    ]
    for frac in (0, 0.5, 1):
        y = py(top * frac / 1.1)
        out.append(
            f'<line x1="{x0 + PAD}" x2="{x0 + PAD + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{x0 + PAD - 4}" y="{y + 3:.1f}" font-size="9" text-anchor="end">'
            f"{_fmt(top * frac / 1.1, panel.unit)}</text>"
        )
    for i, label in marks:
        x = px(i)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + 24}" y2="{y0 + 24 + plot_h}" stroke="#bbb" stroke-dasharray="3,3"/>'
        )
        out.append(f'<text x="{x + 2:.1f}" y="{y0 + 32}" font-size="8" fill="#888">{label}</text>')
    out.append(
        f'<text x="{x0 + PAD + plot_w}" y="{y0 + 36 + plot_h}" font-size="9" text-anchor="end">'
        f"{n} s</text>"
    )
    legend_y = y0 + 48 + plot_h
    for k, (name, vs) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(vs) if v is not None)
        if points:
            out.append(
                f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.4"/>'
            )
        cols = 2 if max(map(len, series)) > 22 else 3
        lx = x0 + 8 + (k % cols) * (405 // cols)
        ly = legend_y + (k // cols) * 11
        if k < 3 * cols:
            out.append(f'<rect x="{lx}" y="{ly - 7}" width="8" height="8" fill="{colour}"/>')
            out.append(f'<text x="{lx + 11}" y="{ly}" font-size="8.5">{name[:36]}</text>')
    if not series:
        out.append(
            f'<text x="{x0 + W / 2}" y="{y0 + H / 2}" font-size="11" fill="#999" text-anchor="middle">no samples</text>'
        )
    return "\n".join(out)


def svg(scrapes: list[dict], marks: list[tuple[int, str]], caption: str) -> str:
    cols = 3
    rows = (len(PANELS) + cols - 1) // cols
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * W}" height="{rows * H + 30}" '
        'font-family="sans-serif">',
        '<rect width="100%" height="100%" fill="#f7f7f7"/>',
        f'<text x="8" y="18" font-size="13">{caption}</text>',
    ]
    for i, panel in enumerate(PANELS):
        parts.append(
            _panel_svg(
                panel, panel.compute(scrapes), (i % cols) * W + 3, 28 + (i // cols) * H, marks
            )
        )
    parts.append("</svg>")
    return "\n".join(parts)


# -- the run ----------------------------------------------------------------------------------


def parse(text: str) -> dict:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def shopper(gateway: str, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=gateway, timeout=15) as http:
        while not stop.is_set():
            user = rng.choice(("jane", "joe", None))
            form = {"client_id": CLIENT_ID, "scope": "Shopper"}
            if user:
                form |= {"grant_type": "password", "username": user, "password": f"{user}-pass"}
            else:
                form |= {"grant_type": "client_credentials"}
            answer = http.post("/oauth/token", data=form)
            if answer.status_code != 200:
                continue
            headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
            for _ in range(rng.randint(3, 8)):
                roll = rng.random()
                if roll < 0.4:
                    http.get("/v1/me/products", headers=headers)
                elif roll < 0.6:
                    http.get(
                        "/v1/me/products",
                        params={"search": rng.choice(("bike", "lamp"))},
                        headers=headers,
                    )
                elif roll < 0.85:
                    http.get(f"/v1/me/products/p-{rng.randint(1, 60):03d}", headers=headers)
                else:
                    line = {"ProductID": f"p-{rng.randint(1, 60):03d}", "Quantity": 1}
                    http.post("/v1/cart/lineitems", json=line, headers=headers)
                if stop.is_set():
                    return


@contextmanager
def stack(folder: Path) -> Iterator[tuple[str, FakeSitecore]]:
    fake = FakeSitecore()

    async def sitecore(scope, receive, send) -> None:  # callFlows answers slowly now and then
        if scope["type"] == "http" and scope["path"].endswith("/v2/callFlows"):
            await asyncio.sleep(random.choice((0.01, 0.03, 0.05, 0.4)))
        await fake(scope, receive, send)

    tables = folder / "tables.yaml"
    tables.write_text(files("decisions").joinpath("demo.yaml").read_text())
    with serve_in_thread(sitecore) as sink, serve_in_thread(create_sandbox()) as sandbox:
        env = {
            "OCGW_UPSTREAM_URL": sandbox,
            "OCGW_STORE": str(folder / "gw.db"),
            "OCGW_WEBHOOK_URL": f"{sink}/hook",
            "OCGW_CDP_URL": f"{sink}/cdp",
            "OCGW_CDP_CLIENT_KEY": "ck-bench",
            "OCGW_CDP_POS": "bench",
            "OCGW_PERSONALIZE_FLOW": "segments-flow",
            "OCGW_DECISIONS": str(tables),
            "OCGW_METRICS_INTERVAL": "1",
            "OCGW_LOG_LEVEL": "error",
        }
        with gateway_process(env, workers=2) as (gateway, _):
            yield gateway, fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--shoppers", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    (args.out / "grafana-dashboard.json").write_text(json.dumps(grafana(), indent=2) + "\n")
    scrapes: list[dict] = []
    marks: list[tuple[int, str]] = []
    outage = (args.seconds // 3, args.seconds // 3 + 15)
    with TemporaryDirectory() as tmp, stack(Path(tmp)) as (gateway, fake):
        stop = threading.Event()
        threads = [
            threading.Thread(target=shopper, args=(gateway, stop, n), daemon=True)
            for n in range(args.shoppers)
        ]
        for thread in threads:
            thread.start()
        with httpx.Client(timeout=10) as http:
            started = time.monotonic()
            for second in range(args.seconds):
                if second == outage[0]:
                    fake.failures["/hook"] = [503] * 100_000
                    marks.append((second, "webhook 503"))
                if second == outage[1]:
                    fake.failures["/hook"] = []
                    marks.append((second, "webhook back"))
                scrapes.append(parse(http.get(gateway + "/metrics").text))
                time.sleep(max(0.0, started + second + 1 - time.monotonic()))
        stop.set()
        for thread in threads:
            thread.join(15)
    caption = (
        f"ocgateway, --workers 2, {args.shoppers} shoppers, {args.seconds} s, scraped every 1 s "
        f"(rates and quantiles over {WINDOW} s windows)"
    )
    (args.out / "dashboard.svg").write_text(svg(scrapes, marks, caption))
    summary = {
        p.title: {
            k: max((x for x in v if x is not None), default=None)
            for k, v in p.compute(scrapes).items()
        }
        for p in PANELS
    }
    print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
