"""The kiosk and dashboard pages in a real Chromium (Debian's), driven by Playwright.

Screenshots are saved in ``test-artifacts/`` for review.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from playwright.sync_api import expect

from .conftest import ARTIFACTS, make_app, skip_or_fail
from .live_server import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        skip_or_fail("Chromium is not installed (make test installs Debian's chromium)", "SCORING_REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    instance = tmp_path_factory.mktemp("browser") / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORING_")} | {
        "SCORING_INSTANCE_PATH": str(instance)}
    cli = [sys.executable, "-m", "scoring_service.cli"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "seed", "shenyang-2018", "--demo"], env=env, check=True, capture_output=True)

    def key(*args):
        out = subprocess.run([*cli, "keys", "create", *args], env=env, check=True, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    tokens = {"kiosk": key("--role", "kiosk", "--name", "一号终端", "--community", "heping-001"),
              "leadership": key("--role", "leadership", "--name", "领导小组")}
    server = LiveServer(str(instance / "scoring.sqlite3"), instance, workers=2,
                        extra_env={"SCORING_SECRET_KEY": (instance / "secret_key").read_text()})
    with server:
        app = make_app(str(instance / "scoring.sqlite3"), instance, SECRET_KEY=None)
        yield {"url": server.url, "tokens": tokens, "store": app.extensions["scoring"].store}


@pytest.fixture
def page(chromium, demo_server):
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    # The kiosk stamps answers with the device clock, and the demo round took answers in September
    # 2018 (SPEC §14: submitted_at inside the round's window): the browser lives in that month.
    context.clock.set_fixed_time(datetime(2018, 9, 20, 10, 0, tzinfo=timezone(timedelta(hours=8))))
    page = context.new_page()
    page.external_requests = []
    page.on("request", lambda r: r.url.startswith(demo_server["url"]) or r.url.startswith("data:")
            or r.url.startswith("blob:") or page.external_requests.append(r.url))
    yield page
    context.close()


def wait_until(page, expression: str, timeout: float = 30.0) -> None:
    """Poll ``expression`` in the page until it is true.

    Not ``page.wait_for_function``: Playwright compiles that predicate with
    ``eval`` inside the page, which the pages' Content-Security-Policy forbids.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        page.wait_for_timeout(100)


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def set_up_kiosk(page, demo_server):
    page.goto(f"{demo_server['url']}/kiosk/heping-001")
    wait_until(page, "caches.match(location.pathname).then((r) => !!r)")
    page.get_by_label("终端密钥").fill(demo_server["tokens"]["kiosk"])
    page.get_by_role("button", name="保存并开始").click()
    page.get_by_role("button", name="开始评价").wait_for()


def answer_survey(page, level_names, household=None):
    if household:
        page.get_by_label("门牌号（选填").fill(household)
    page.get_by_role("button", name="开始评价").click()
    count = 0
    while not page.locator("#thanks.active").count():
        page.locator("#question.active").wait_for()
        name = level_names[count % len(level_names)]
        page.get_by_role("button", name=name, exact=True).click()
        count += 1
    page.get_by_role("button", name="下一位居民").click()
    return count


def pending(page) -> int:
    return int(page.locator("#pending").inner_text())


def test_resident_completes_a_survey(page, demo_server):
    store = demo_server["store"]
    before = store.count_responses("shenyang-2018")
    set_up_kiosk(page, demo_server)
    shot(page, "kiosk-welcome")
    page.get_by_label("门牌号（选填").fill("88-8-808")
    page.get_by_role("button", name="开始评价").click()
    page.locator("#question.active").wait_for()
    assert page.locator("#q-title").inner_text() == "路要平整"
    shot(page, "kiosk-question")
    screens = 0
    while not page.locator("#thanks.active").count():
        page.get_by_role("button", name="满意", exact=True).click()
        screens += 1
    shot(page, "kiosk-thanks")
    community = store.get_community("heping-001")
    applicable = 9 + community["has_elevator"] + community["heating_retrofit"]
    assert screens == applicable + 1  # one screen per applicable item, plus overall
    wait_until(page, "document.getElementById('pending').textContent === '0'", timeout=20)
    assert store.count_responses("shenyang-2018") == before + 1
    newest = list(store.iter_responses("shenyang-2018"))[-1]
    assert newest["channel"] == "kiosk" and newest["overall"] == 4 and newest["household_hash"]
    assert set(newest["answers"].values()) == {4} and len(newest["answers"]) == applicable
    assert page.external_requests == []


def test_offline_kiosk_queues_and_uploads_exactly_three(page, demo_server):
    store = demo_server["store"]
    set_up_kiosk(page, demo_server)
    wait_until(page, "document.getElementById('pending').textContent === '0'", timeout=20)
    before = store.count_responses("shenyang-2018")
    page.context.set_offline(True)
    for resident in range(3):
        answer_survey(page, ["非常满意", "一般", "不满意"])
    page.wait_for_timeout(1500)  # uploads are attempted and fail while offline
    assert pending(page) == 3
    assert "离线" in page.locator("#net").inner_text()
    shot(page, "kiosk-offline")
    assert store.count_responses("shenyang-2018") == before
    page.reload()  # restarting offline: the page comes from the service worker's cache, the queue stays
    page.locator("#welcome.active").wait_for()
    assert pending(page) == 3
    page.context.set_offline(False)
    wait_until(page, "document.getElementById('pending').textContent === '0'", timeout=30)
    page.wait_for_timeout(1000)
    assert store.count_responses("shenyang-2018") == before + 3


def test_kiosk_refuses_a_wrong_key(page, demo_server):
    page.goto(f"{demo_server['url']}/kiosk/heping-001")
    page.get_by_label("终端密钥").fill("k_0000.wrong")
    page.get_by_role("button", name="保存并开始").click()
    expect(page.locator("#setup-error")).to_contain_text("密钥无效")
    expect(page.locator("#setup")).to_have_class(re.compile(r"\bactive\b"))  # still asking for a key


def test_dashboard_shows_the_same_ranking_as_the_api(page, demo_server):
    url, token = demo_server["url"], demo_server["tokens"]["leadership"]
    page.goto(f"{url}/dashboard")
    page.get_by_label("访问密钥").fill(token)
    page.get_by_role("button", name="保存").click()
    page.locator("#district-table tbody tr").first.wait_for()
    headers = {"Authorization": f"Bearer {token}"}
    api = requests.get(f"{url}/api/v1/rounds/shenyang-2018/rankings/districts", headers=headers).json()
    spread = requests.get(f"{url}/api/v1/rounds/shenyang-2018/rankings/districts?uncertainty=1&draws=1000&seed=2018",
                          headers=headers).json()
    rows = page.locator("#district-table tbody tr").all()
    assert len(rows) == 9
    for row, district, uncertain in zip(rows, api["districts"], spread["districts"]):
        cells = row.locator("td").all_inner_texts()
        assert [cells[0], cells[3], cells[4]] == [str(district["rank"]), district["name_zh"], f"{district['index']:.2f}"]
        assert cells[1] == "{}–{}".format(*uncertain["uncertainty"]["rank_interval_90"])
    assert page.locator("#district-chart svg rect").count() >= 18  # quality and progress per district
    communities = requests.get(f"{url}/api/v1/rounds/shenyang-2018/rankings/communities", headers=headers).json()
    first = page.locator("#community-table tbody tr").first.locator("td").all_inner_texts()
    assert first[0] == "1" and first[2] == communities["communities"][0]["name_zh"]
    assert "排名区间说明" in page.locator("#interval-note").inner_text()
    page.locator("#funnel-chart svg circle").first.wait_for()
    assert page.locator("#funnel-chart svg circle").count() >= 100
    assert page.locator("#funnel-chart svg circle[fill='#b42318']").count() == page.locator("#funnel-outliers li").count()
    assert page.locator(".flag.veto").count() >= 1 and "一票否决" in page.locator(".flag.veto").first.inner_text()
    shot(page, "dashboard")

    page.get_by_label("所属区").select_option("hunnan")
    shown = page.locator("#community-table tbody tr").count()
    assert shown == sum(c["district_id"] == "hunnan" for c in communities["communities"] + communities["unranked"])
    page.get_by_role("button", name="综合得分").click()  # sort ascending by score
    scores = [float(t) for t in page.locator("#community-table tbody tr td:nth-child(5)").all_inner_texts()
              if t != "—"]
    assert scores == sorted(scores)
    with page.expect_download() as download:
        page.get_by_role("button", name="导出区排名 CSV").click()
    assert download.value.suggested_filename == "shenyang-2018-区排名.csv"
    assert page.external_requests == []


def test_pages_on_a_phone(chromium, demo_server):
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, locale="zh-CN")
    page = context.new_page()
    page.goto(f"{demo_server['url']}/kiosk/heping-001")
    page.get_by_label("终端密钥").fill(demo_server["tokens"]["kiosk"])
    page.get_by_role("button", name="保存并开始").click()
    page.get_by_role("button", name="开始评价").click()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # no sideways scrolling
    box = page.get_by_role("button", name="非常满意", exact=True).bounding_box()
    assert box["height"] >= 44 and box["width"] >= 300  # large touch targets
    shot(page, "kiosk-phone")
    context.close()
