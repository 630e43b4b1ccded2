"""The console in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`) through
Selenium. Skipped only when Chromium is absent outside CI; under CI=true (`.ci/run` installs it) a
missing browser fails. Screenshots of each page go to $MHP_BROWSER_OUTPUT or the test's tmp folder."""
from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path

import pytest

from core.times import isoformat_z
from mhp.cli import main

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
IN_CI = os.environ.get("CI", "").lower() == "true"

if not (CHROMIUM and CHROMEDRIVER) and not IN_CI:
    pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver; .ci/run does)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM and CHROMEDRIVER, "CI=true: chromium and chromium-driver must be installed (.ci/run)"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("MHP_BROWSER_OUTPUT") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _full_page(driver, path: Path) -> None:
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(height + 40, 600), 3000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)


def test_alerts_customer_scores_and_acknowledgement_in_a_browser(browser, running, console_workspace, shots, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    root, end, _ = console_workspace
    browser.get(running.url + "/alerts")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.alert")
    assert rows and browser.find_element(By.ID, "alert-count").text.endswith(f"showing 1–{len(rows)}")
    _full_page(browser, shots / "alerts.png")

    # open a (simulated) customer from its alert
    link = next(a for a in browser.find_elements(By.CSS_SELECTOR, "a.customer-link") if "script" not in a.text)
    cid = link.text
    link.click()
    assert browser.find_element(By.ID, "customer-id").text == cid
    shown = {h: float(browser.find_element(By.ID, f"score-{h}").get_attribute("data-value"))
             for h in ("churn_risk_30d", "ib_call_risk_14d", "customer_health_score")}
    _full_page(browser, shots / "customer.png")
    assert main(["score", "--customer", cid, "--at", isoformat_z(end), "--no-alerts", "--workspace", str(root),
                 "--endpoint-url", running.console.config.endpoint_url]) == 0
    expected = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for head, value in shown.items():
        assert value == pytest.approx(expected[head], abs=1e-6), head

    # acknowledge an alert on the alerts page; it stays acknowledged after a reload
    browser.get(running.url + "/alerts")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "tr.alert")
               if r.find_elements(By.CSS_SELECTOR, "button.ack"))
    aid = row.get_attribute("data-alert-id")
    row.find_element(By.NAME, "by").send_keys("browser test")
    row.find_element(By.CSS_SELECTOR, "button.ack").click()
    WebDriverWait(browser, 15).until(expected_conditions.staleness_of(row))   # the POST's redirect has loaded
    browser.refresh()
    again = browser.find_element(By.CSS_SELECTOR, f'tr.alert[data-alert-id="{aid}"]')
    assert "✔ browser test" in again.text and not again.find_elements(By.CSS_SELECTOR, "button.ack")

    browser.get(running.url + "/overview")
    assert browser.find_element(By.ID, "reports").find_elements(By.CSS_SELECTOR, "td.PASSED")
    _full_page(browser, shots / "overview.png")
    for name in ("alerts.png", "customer.png", "overview.png"):
        assert (shots / name).stat().st_size > 10_000, name


def test_untrusted_markup_runs_no_script_in_the_browser(browser, running):
    from selenium.webdriver.common.by import By

    from testing.console_workspace import EVIL_FIELD, EVIL_ID

    browser.get(f"{running.url}/customers/{urllib.parse.quote(EVIL_ID, safe='')}")
    # an alert() would leave an open dialog and make every command fail; the text shows instead
    assert browser.find_element(By.ID, "customer-id").text == EVIL_ID
    assert EVIL_FIELD in browser.find_element(By.ID, "events").text
    assert browser.execute_script("return document.querySelectorAll('#events script, #events img').length") == 0
