"""The admin UI in a real browser: Debian's Chromium, headless, driven by selenium, against a real
`ocgateway serve` in front of the local OrderCloud sandbox.

A marketer signs in, changes a rule with the form, sees a validation error beside the field,
previews the change as the repeat customer (jane) and the newcomer (joe), publishes it, sees the
next storefront call through the gateway change, rolls back; an editor cannot publish. Every page
visited is saved as a screenshot under this test's temporary folder (printed at the start).

Chromium and chromedriver are required: without them the test fails (`.ci/run` installs them).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from console.passwords import hash_password
from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread
from state import StateConfig, open_state
from state.accounts import Account
from tests.servers import gateway_process
from tests.shoppers import login

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PASSWORD = "browser-test-pass"
DEMO = files("decisions").joinpath("demo.yaml").read_text()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium is missing: apt-get install -y chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="ocgw-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1360,1500",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


async def _accounts(store: Path) -> None:
    state = await open_state(StateConfig(str(store)))
    try:
        for name, role in (("mia", "publisher"), ("eddie", "editor")):
            await state.console.accounts.put(
                Account(name, role, hash_password(PASSWORD), time.time())
            )
    finally:
        await state.close()


class Storefront:
    """Joe's storefront calling through the gateway."""

    def __init__(self, gateway: str) -> None:
        self.gateway, self.token = gateway, login(gateway, "joe")

    def products(self) -> tuple[str, list[str]]:
        answer = httpx.get(
            f"{self.gateway}/v1/me/products?pageSize=4",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        return answer.headers.get("x-decision", ""), [i["ID"] for i in answer.json()["Items"]]


def test_a_marketer_changes_previews_publishes_and_rolls_back(
    browser: WebDriver, tmp_path: Path
) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    store = tmp_path / "gw.db"
    tables = tmp_path / "tables.yaml"
    tables.write_text(DEMO)
    asyncio.run(_accounts(store))
    with serve_in_thread(create_sandbox()) as sandbox:
        env = {
            "OCGW_UPSTREAM_URL": sandbox,
            "OCGW_STORE": str(store),
            "OCGW_DECISIONS": str(tables),
            "OCGW_EVENTS_FILE": str(tmp_path / "events.jsonl"),
            "OCGW_PREVIEW_USERNAME": "joe",
            "OCGW_PREVIEW_PASSWORD": "joe-pass",
            "OCGW_PREVIEW_CLIENT_ID": CLIENT_ID,
        }
        with gateway_process(env) as (gateway, _):
            ui = f"{gateway}/admin"
            step = iter(range(1, 100))

            def shot(name: str) -> None:
                browser.save_screenshot(str(shots / f"{next(step):02d}-{name}.png"))

            def css(selector: str):  # type: ignore[no-untyped-def]
                return browser.find_element(By.CSS_SELECTOR, selector)

            def shows(selector: str, text: str) -> str:
                """The text of `selector` once it contains `text` (pages load after a click)."""
                deadline = time.monotonic() + 10
                while True:
                    try:
                        found = css(selector).text
                    except WebDriverException:
                        found = ""
                    if text in found or time.monotonic() > deadline:
                        assert text in found, f"{selector}: {found!r}"
                        return found
                    time.sleep(0.05)

            def sign_in(name: str) -> None:
                browser.get(f"{ui}/")
                css("input[name=username]").send_keys(name)
                css("input[name=password]").send_keys(PASSWORD)
                shot(f"sign-in-{name}")
                css("form button.primary").click()
                shows(".who span", name)

            joe = Storefront(gateway)
            decision, before = joe.products()
            assert "rule=newcomer-picks" in decision and "version=1" in decision
            assert before == ["p-001", "p-007", "p-013", "p-021"]

            sign_in("mia")
            assert "vip-watches" in browser.page_source
            shot("overview")

            # two test shoppers
            browser.get(f"{ui}/preview")
            for name, orders, spent in (("jane", "3", "640"), ("joe", "0", "0")):
                details = css("details:last-of-type")
                if not details.get_attribute("open"):
                    details.find_element(By.TAG_NAME, "summary").click()
                form = css("#shopper-form")
                form.find_element(By.NAME, "name").send_keys(name)
                for field, value in (("orders", orders), ("spent", spent)):
                    box = form.find_element(By.NAME, field)
                    box.clear()
                    box.send_keys(value)
                form.find_element(By.CSS_SELECTOR, "button.primary").click()
                shows(".note", f"Saved test shopper {name}")

            # a draft; change newcomer-picks with the form
            browser.get(f"{ui}/drafts")
            css("input[name=title]").send_keys("Newcomers see the chronograph first")
            css("form.inline button.primary").click()
            shows("h1", "Newcomers see the chronograph first")
            draft_url = browser.current_url.split("?")[0]
            shot("draft")
            css('a[data-rule="featured-products/newcomer-picks"]').click()
            shot("rule-form")
            page_size = css("#f-then\\.pageSize")
            page_size.send_keys("500")
            css("#save-rule").click()
            shows('[data-field="then.pageSize"] .field-error', "less than or equal to 100")
            shot("rule-error")
            page_size = css("#f-then\\.pageSize")
            page_size.clear()
            pins = css("#f-then\\.pin")
            pins.clear()
            pins.send_keys("p-013, p-001, p-007")
            css("#save-rule").click()
            shows(".note", "Saved rule newcomer-picks")
            assert "pin: [p-013, p-001, p-007]" in css("pre.diff").text

            # preview the draft for jane and joe
            browser.get(f"{ui}/preview")
            css("#target option:nth-child(2)").click()
            for name in ("jane", "joe"):
                css(f"input[name=shopper][value={name}]").click()
            css("#run-preview").click()
            shows('section.column[data-shopper="joe"] .products', "p-0")
            lists = {
                column.get_attribute("data-shopper"): [
                    item.get_attribute("data-id")
                    for item in column.find_elements(By.CSS_SELECTOR, ".products li[data-id]")
                ]
                for column in browser.find_elements(By.CSS_SELECTOR, "section.column")
            }
            shot("preview-draft")
            assert lists["joe"][:3] == ["p-013", "p-001", "p-007"]
            assert lists["jane"] and lists["jane"][:3] != lists["joe"][:3]
            jane = css('section.column[data-shopper="jane"]').text
            assert "vip-watches applies" in jane and "categoryID=mens-watches" in jane

            # publish it; joe's next storefront call changes
            browser.get(draft_url)
            css("input[name=comment]").send_keys("Lead newcomers with the chronograph")
            css("#publish").click()
            shows(".note", "Published v2")
            shot("published")
            decision, after = joe.products()
            assert "version=2" in decision and after[:3] == ["p-013", "p-001", "p-007"]

            # roll back to v1
            browser.get(f"{ui}/history/1")
            css("input[name=reason]").send_keys("try again next week")
            css("#rollback").click()
            browser.switch_to.alert.accept()
            shows(".note", "v3 is live")
            shot("rolled-back")
            decision, again = joe.products()
            assert "version=3" in decision and again == before

            browser.get(f"{ui}/history")
            shot("history")
            browser.get(f"{ui}/experiments")
            shot("experiments")
            browser.get(f"{ui}/audit")
            audit = css("table.list").text
            for action in ("signed in", "draft saved", "published", "rolled back"):
                assert action in audit
            shot("audit")

            # an editor cannot publish
            css(".who button").click()
            shows("h1", "Sign in")
            sign_in("eddie")
            browser.get(f"{ui}/drafts")
            css("input[name=title]").send_keys("Editor tries to publish")
            css("form.inline button.primary").click()
            shows("h1", "Editor tries to publish")
            css("input[name=comment]").send_keys("sneaky")
            css("#publish").click()
            shows(".refused", "only a publisher can publish")
            shot("editor-refused")
            assert joe.products()[0].endswith("version=3")
