"""The operator console in a real browser: headless Debian Chromium driven by Selenium.

The three services run as their own processes against the session's emulator
(as in production), the sweeper serving ``/console`` with an API token. Skipped
where Chromium or chromedriver is missing, unless ``REMITFLOW_REQUIRE_BROWSER=1``
(CI sets it; ``make browser`` installs them) makes that a failure. With
``REMITFLOW_SCREENSHOTS_DIR=docs/console`` the run refreshes docs/console.md's
screenshots.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from shared.aws.clients import AwsClients
from shared.aws.names import Names
from shared.provision.bootstrap import load_reference_data
from tests.helpers import free_port, message
from tests.helpers import test_settings as make_settings
from tools.demo import reference_data
from tools.stack import StackNames as StackNamesT
from tools.stack import bootstrap_stack

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "browser-test-token-5f2a9c"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1100")
T = TypeVar("T")



def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if not missing:
        return
    if os.environ.get("REMITFLOW_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{', '.join(missing)} not found (make browser installs them)")
    pytest.skip(f"{', '.join(missing)} not installed (make browser installs them)")


def wait_for(probe: Callable[[], T | None], *, timeout_s: float = 45, what: str = "it") -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.3)


@dataclass
class Stack:
    prefix: str
    endpoint: str
    url: str
    shots: Path

    @property
    def names(self) -> StackNamesT:
        return StackNamesT(self.prefix)

    def boto(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def status(self, short: str, request_id: str) -> str | None:
        item = self.boto("dynamodb").get_item(
            TableName=self.names.table(short), Key={"request_id": {"S": request_id}},
            ConsistentRead=True).get("Item")
        return item["status"]["S"] if item else None

    def send(self, queue: str, body: str, attrs: dict[str, str] | None = None) -> None:
        sqs = self.boto("sqs")
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes={
            k: {"DataType": "String", "StringValue": v} for k, v in (attrs or {}).items()})


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_browser()
    prefix = "b" + uuid.uuid4().hex[:10]
    settings = make_settings(prefix)

    async def setup() -> None:
        async with AwsClients(settings) as clients:
            await bootstrap_stack(settings, clients)
            await load_reference_data(clients, settings, reference_data())

    asyncio.run(setup())
    port = free_port()
    base = {**os.environ, "REMITFLOW_PREFIX": prefix, "REMITFLOW_HTTP_HOST": "127.0.0.1",
            "REMITFLOW_API_TOKEN": TOKEN, "REMITFLOW_RECEIVE_WAIT_S": "1",
            "REMITFLOW_SWEEPER_INTERVAL_S": "1", "REMITFLOW_RETRY_MAX_ATTEMPTS": "1",
            "REMITFLOW_STREAM_POLL_INTERVAL_S": "0.2", "REMITFLOW_STREAM_IDLE_MAX_S": "0.5",
            "REMITFLOW_LEASE_TTL_S": "5", "REMITFLOW_WEBHOOK_ALLOW_PRIVATE": "true",
            "REMITFLOW_LOG_LEVEL": "WARNING"}
    procs = []
    for service in ("enrichment", "notification", "sweeper"):
        env = {**base, "REMITFLOW_HTTP_PORT": str(port if service == "sweeper" else free_port())}
        if service == "enrichment":  # the first enrichment attempt fails, so the job FAILs
            env["REMITFLOW_FAULTS"] = "transient-once:REQ-BRW-FAIL-.*"
        procs.append(subprocess.Popen([sys.executable, "-m", "tools.cli", "run", service],
                                      env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    shots = Path(os.environ.get("REMITFLOW_SCREENSHOTS_DIR") or tmp_path_factory.mktemp("shots"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        wait_for(ready, timeout_s=60, what="sweeper ready")
        yield Stack(prefix, emulator, url, shots)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="remitflow-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(stack: Stack, driver: Any, name: str) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(int(height) + 40, 700), 2400))
    driver.save_screenshot(str(stack.shots / f"{name}.png"))
    driver.set_window_size(1400, 1100)


def text(driver: Any, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def test_01_signed_out_gets_the_sign_in_page_then_signs_in(stack: Stack, browser: Any) -> None:
    browser.get(f"{stack.url}/console/jobs?state=failed")
    assert "/console/login" in browser.current_url and browser.title.startswith("Sign in")
    browser.find_element(By.ID, "token").send_keys("wrong-token")
    browser.find_element(By.ID, "sign-in").click()
    assert "not the API token" in text(browser, "#login-error")
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    # the click submits a form: wait for the navigation (a loaded machine is slow to follow)
    wait_for(lambda: browser.current_url.endswith("/console/jobs?state=failed"),
             timeout_s=20, what="the page asked for after sign-in")
    cookie = browser.get_cookie("remitflow_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie.get("expiry")
    header = browser.find_element(By.TAG_NAME, "header")
    assert header.value_of_css_property("background-color") == "rgba(24, 34, 58, 1)"


def test_02_search_a_request_id_and_follow_its_timeline(stack: Stack, browser: Any) -> None:
    stack.send(stack.names.remittance_events, json.dumps(message("REQ-BRW-OK-1")))
    wait_for(lambda: stack.status("notifications", "REQ-BRW-OK-1") == "SENT",
             what="REQ-BRW-OK-1 notified")
    browser.get(f"{stack.url}/console/search")
    browser.find_element(By.ID, "q").send_keys("REQ-BRW-OK")
    browser.find_element(By.ID, "mode-prefix").click()
    browser.find_element(By.ID, "search").click()
    wait_for(lambda: "bounded Scan" in browser.page_source, timeout_s=20, what="results")
    browser.find_element(By.LINK_TEXT, "REQ-BRW-OK-1").click()
    assert text(browser, "#request-id") == "REQ-BRW-OK-1"
    assert text(browser, "#status-remittances") == "COMPLETED"
    assert text(browser, "#status-notifications") == "SENT"
    trail = text(browser, "#trail-remittances")
    assert "REQ-BRW-OK-1-a1" in trail and "SUCCEEDED" in trail and "Process" in trail
    assert "rule" in text(browser, "#trail-notifications")


def test_03_redrive_a_failed_job_and_watch_it_complete(stack: Stack, browser: Any) -> None:
    stack.send(stack.names.remittance_events, json.dumps(message("REQ-BRW-FAIL-1")))
    wait_for(lambda: stack.status("remittances", "REQ-BRW-FAIL-1") == "FAILED",
             what="REQ-BRW-FAIL-1 FAILED")
    browser.get(f"{stack.url}/console")
    assert "bad" in browser.find_element(By.CSS_SELECTOR, "#backlog a.bad").get_attribute("class")
    shot(stack, browser, "overview")
    partner = message("REQ-BRW-FAIL-1")["partner"]
    browser.get(f"{stack.url}/console/jobs?table=remittances&state=failed&partner={partner}")
    browser.find_element(By.CSS_SELECTOR, "input[value='REQ-BRW-FAIL-1']").click()
    browser.find_element(By.ID, "redrive-selected").click()
    assert "RUNNING as attempt 2" in text(browser, "#plan")
    browser.find_element(By.ID, "note").send_keys("fault cleared")
    browser.find_element(By.ID, "confirm").click()
    assert "RUNNING as attempt 2" in text(browser, "#outcomes")
    browser.find_element(By.LINK_TEXT, "REQ-BRW-FAIL-1").click()

    def completed() -> bool:
        browser.refresh()
        return text(browser, "#status-remittances") == "COMPLETED"

    wait_for(completed, what="REQ-BRW-FAIL-1 COMPLETED in the console")
    events = text(browser, "#events")
    assert "FAILED by sweeper after 1 attempt(s)" in events
    assert "redrive by console session" in events and "fault cleared" in events
    wait_for(lambda: stack.status("notifications", "REQ-BRW-FAIL-1") == "SENT",
             what="REQ-BRW-FAIL-1 notified")
    browser.refresh()
    shot(stack, browser, "timeline")


def test_04_replay_a_dead_letter_and_see_it_processed(stack: Stack, browser: Any) -> None:
    queue = stack.names.remittance_events
    dlq = Names.dlq(queue)
    stack.send(queue, '{"request_id": "REQ-BRW-BAD", "amount": 12.5}')
    stack.send(dlq, json.dumps(message("REQ-BRW-DLQ-1")),
               {"remitflow.reason": "schema", "remitflow.detail": "rejected by an older schema",
                "remitflow.source_queue": queue})
    browser.get(f"{stack.url}/console/deadletters/{dlq}")

    def both() -> bool:
        browser.refresh()
        return text(browser, "#dlq-depth") == "2"

    wait_for(both, timeout_s=30, what="two messages in the DLQ")
    shot(stack, browser, "deadletters")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#messages tbody tr")
               if "REQ-BRW-DLQ-1" in r.text)
    row.find_element(By.CSS_SELECTOR, "input[type=checkbox]").click()
    browser.find_element(By.ID, "replay-selected").click()
    wait_for(lambda: "source queue" in browser.page_source or queue in browser.page_source,
             timeout_s=20, what="the replay confirmation")
    browser.find_element(By.ID, "confirm").click()
    assert text(browser, "#before") == "2" and text(browser, "#after") == "1"
    wait_for(lambda: stack.status("remittances", "REQ-BRW-DLQ-1") == "COMPLETED",
             what="replayed message processed")
    browser.get(f"{stack.url}/console/requests/REQ-BRW-DLQ-1")
    assert text(browser, "#status-remittances") == "COMPLETED"


def test_05_a_post_without_csrf_token_is_refused(stack: Stack, browser: Any) -> None:
    browser.get(f"{stack.url}/console/jobs?table=remittances&state=failed")
    stack_id = "REQ-BRW-CSRF"
    browser.execute_script(  # a form that lost its token, posted by the real browser
        "const f = document.getElementById('jobs-form');"
        "f.querySelector('input[name=csrf]').remove();"
        "const i = document.createElement('input'); i.type = 'hidden';"
        f"i.name = 'request_id'; i.value = '{stack_id}'; f.appendChild(i); f.submit();")
    wait_for(lambda: "Refused" in browser.title, timeout_s=10, what="the refusal page")
    assert "CSRF" in text(browser, "#error-message")


def test_06_security_headers_and_overview(stack: Stack, browser: Any) -> None:
    cookie = browser.get_cookie("remitflow_console")["value"]
    resp = httpx.get(f"{stack.url}/console", cookies={"remitflow_console": cookie})
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["cache-control"] == "no-store"
    assert TOKEN not in resp.text
    browser.get(f"{stack.url}/console")
    assert "Jobs by state" in browser.page_source
    assert text(browser, "#last-sweep") != "none yet"
    browser.find_element(By.ID, "sign-out").click()
    wait_for(lambda: "/console/login" in browser.current_url, timeout_s=20, what="signed out")
