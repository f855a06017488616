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
              "leadership": key("--role", "leadership", "--name", "领导小组"),
              "admin": key("--role", "admin", "--name", "管理员"),
              "district": key("--role", "district", "--name", "和平区住建局", "--district", "heping")}
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


# -- 进度督办 (SPEC §11, §16) --------------------------------------------------------------

SUPERVISION = "/api/v1/rounds/shenyang-2018/supervision"


def assert_demo_milestones(demo_server) -> None:
    """The demo records milestones (seeding/demo.py): the tab has something to show."""
    assert len(demo_server["store"].current_milestones("shenyang-2018")) > 900


def sign_in(page, url, token):
    page.goto(f"{url}/dashboard")
    page.get_by_label("访问密钥").fill(token)
    page.get_by_role("button", name="保存", exact=True).click()


def supervision_report(demo_server, role, **query):
    headers = {"Authorization": f"Bearer {demo_server['tokens'][role]}"}
    r = requests.get(demo_server["url"] + SUPERVISION, params=query, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def table_progress(page) -> list[tuple[str, str]]:
    return [(row.locator("th").inner_text(), row.locator("td.progress").inner_text())
            for row in page.locator("#sv-district-table tbody tr").all()]


def test_supervision_tab_for_leadership(page, demo_server):
    assert_demo_milestones(demo_server)
    console_errors = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    url = demo_server["url"]
    sign_in(page, url, demo_server["tokens"]["leadership"])
    tab = page.get_by_role("tab", name="进度督办")
    expect(page.get_by_role("tab", name="测评结果")).to_have_attribute("aria-selected", "true")
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#panel-results")).to_be_hidden()
    page.locator("#sv-grid tbody button.ms").first.wait_for()
    api = supervision_report(demo_server, "leadership")
    assert page.locator("#sv-as-of").input_value() == api["as_of"]  # the report's own date to start with

    # the grid: every covered community × the nine milestones; overdue ones red, with words
    assert page.locator("#sv-grid tbody tr[data-community]").count() == len(api["communities"])
    assert page.locator("#sv-grid tbody button.ms").count() == 9 * len(api["communities"])
    overdue = [(c["community_id"], code, m) for c in api["communities"] for code, m in c["milestones"].items()
               if m["status"] == "overdue"]
    assert overdue and page.locator("#sv-grid button.ms-overdue").count() == len(overdue)
    community, code, milestone = overdue[0]
    cell = page.locator(f"#sv-grid button[data-community='{community}'][data-code='{code}']")
    assert cell.inner_text().replace("\n", "") == f"✗ 逾期{milestone['days_overdue']}天"
    assert cell.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(253, 225, 222)"  # red
    on_time = page.locator("#sv-grid button.ms-on_time").first
    assert on_time.inner_text().startswith("✓ ")
    assert on_time.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(227, 243, 230)"  # green
    # the details show on keyboard focus, not only on hover, and Escape hides them
    tip = page.locator("#sv-tip")
    expect(tip).to_be_hidden()
    cell.focus()
    expect(tip).to_be_visible()
    assert f"截止日期：{milestone['deadline']}" in tip.inner_text()
    assert f"已逾期 {milestone['days_overdue']} 天" in tip.inner_text()
    page.keyboard.press("Escape")
    expect(tip).to_be_hidden()
    page.locator("#sv-grid button.ms-late").first.hover()
    expect(tip).to_be_visible()
    assert "逾期完成，晚了" in tip.inner_text()
    failed = next(c["community_id"] for c in api["communities"]
                  if (c["milestones"]["residents_voted"].get("votes") or {}).get("passed") is False)
    page.mouse.move(0, 0)  # away from the grid, so the tip is the focused cell's
    page.locator(f"#sv-grid button[data-community='{failed}'][data-code='residents_voted']").focus()
    expect(tip).to_contain_text("未通过（按未完成计）")  # the failed vote is shown, and counts as not reached

    # the warnings in words, naming each warned district, its reasons and communities
    warned = [d for d in api["districts"] if d["warning"]]
    assert warned
    assert page.locator("#sv-warnings > li").count() == len(warned)
    names = {c["community_id"]: c["name_zh"] for c in api["communities"]}
    for d in warned:
        item = page.locator(f"#sv-warnings > li[data-district='{d['district_id']}']").inner_text()
        assert d["name_zh"] in item
        labels = {"overdue_milestones": "逾期节点较多", "communities_missing": "登记小区不足",
                  "construction_below_pass": "施工阶段检查未达合格", "rectifications_overdue": "整改逾期",
                  "accepted_but_failing": "已验收但不合格"}
        for reason in d["reasons"]:
            assert labels[reason["code"]] in item
            assert all(names[c] in item for c in reason["communities"])
    # the district table: the report's order (slowest first) and figures
    assert table_progress(page) == [(d["name_zh"], f"{d['progress']:.2f}") for d in api["districts"]]
    first = page.locator("#sv-district-table tbody tr").first.locator("td").all_inner_texts()
    d = api["districts"][0]
    assert first[1:8] == [str(d[k]) for k in ("quota", "communities", "milestones_due", "on_time", "late", "overdue",
                                             "overdue_communities")]
    shot(page, "dashboard-supervision")

    # another date: the figures of that day
    page.get_by_label("统计截至").fill("2018-05-15")
    wait_until(page, "document.getElementById('sv-summary').textContent.includes('2018年5月15日')")
    earlier = supervision_report(demo_server, "leadership", as_of="2018-05-15")
    assert table_progress(page) == [(d["name_zh"], f"{d['progress']:.2f}") for d in earlier["districts"]]
    assert sorted(table_progress(page)) != sorted((d["name_zh"], f"{d['progress']:.2f}") for d in api["districts"])

    # one district; then the 督办通报 of that district and day, fetched with the key
    page.get_by_label("按区查看").select_option("heping")
    wait_until(page, "document.querySelectorAll('#sv-district-table tbody tr').length === 1")
    rows = page.locator("#sv-grid tbody tr[data-community]")
    assert rows.count() == sum(c["district_id"] == "heping" for c in api["communities"])
    with page.expect_download() as download:
        page.get_by_role("button", name="下载督办通报 PDF").click()
    assert download.value.suggested_filename == "shenyang-2018-督办通报-2018-05-15.pdf"
    with open(download.value.path(), "rb") as f:
        assert f.read(5) == b"%PDF-"
    with page.expect_download() as download:
        page.get_by_role("button", name="下载督办通报 Excel").click()
    assert download.value.suggested_filename.endswith(".xlsx")

    # leadership reads only: a cell opens no form
    rows.first.locator("button.ms").first.click()
    expect(page.locator("#sv-dialog")).to_be_hidden()
    assert page.external_requests == []
    # nothing refused by the Content-Security-Policy, no script error (401 before the key, no favicon: fine)
    assert [m for m in console_errors if not m.startswith("Failed to load resource")] == []


def test_ranking_note_follows_the_progress_rule(page, demo_server):
    sign_in(page, demo_server["url"], demo_server["tokens"]["leadership"])
    expect(page.locator("#index-note")).to_contain_text("进度得分（各时间节点按期完成情况")  # the demo round: milestones
    assert "已评定小区数" not in page.locator("#index-note").inner_text()


def test_district_key_records_a_milestone(page, demo_server):
    assert_demo_milestones(demo_server)
    sign_in(page, demo_server["url"], demo_server["tokens"]["district"])
    # a district key lands on its own district's supervision
    expect(page.get_by_role("tab", name="进度督办")).to_have_attribute("aria-selected", "true")
    page.locator("#sv-grid tbody button.ms").first.wait_for()
    expect(page.locator("#sv-scope")).to_have_text("本区：和平区")
    expect(page.locator("#sv-district")).to_be_hidden()
    page.get_by_label("统计截至").fill("2018-10-08")
    wait_until(page, "document.getElementById('sv-summary').textContent.includes('2018年10月8日')")
    api = supervision_report(demo_server, "district", as_of="2018-10-08")
    assert {c["district_id"] for c in api["communities"]} == {"heping"}
    shown = page.locator("#sv-grid tbody tr[data-community]")
    assert sorted(shown.evaluate_all("rows => rows.map((r) => r.dataset.community)")) == sorted(
        c["community_id"] for c in api["communities"])
    assert [row[0] for row in table_progress(page)] == ["和平区"]

    # management_assigned (deadline 30 September, no order rule): preferably one not reached yet
    target = next((c for c in api["communities"]
                   if c["milestones"]["management_assigned"]["status"] in ("overdue", "pending")), api["communities"][0])
    community = target["community_id"]
    replacing = target["milestones"]["management_assigned"]["reached_on"] is not None
    cell = page.locator(f"#sv-grid button[data-community='{community}'][data-code='management_assigned']")
    cell.click()
    dialog = page.locator("#sv-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("后续管理方式")).to_be_visible()
    expect(dialog.get_by_label("有表决权的户数")).to_be_hidden()  # votes belong to residents_voted only
    dialog.get_by_label("完成日期").fill("2099-01-01")
    dialog.get_by_label("后续管理方式").select_option(label="物业管理")
    if replacing:
        dialog.get_by_label("修改原因").fill("补录物业进驻日期")
    dialog.get_by_role("button", name="保存").click()
    expect(page.locator("#sv-form-error")).to_contain_text("未能保存：完成日期：不能晚于今天")  # the service's 422
    expect(dialog).to_be_visible()
    shot(page, "dashboard-supervision-refused")
    dialog.get_by_label("完成日期").fill("2018-10-05")
    dialog.get_by_role("button", name="保存").click()
    expect(dialog).to_be_hidden()
    cell = page.locator(f"#sv-grid button[data-community='{community}'][data-code='management_assigned']")
    expect(cell).to_have_class(re.compile(r"\bms-late\b"))  # amber: five days after the deadline
    assert cell.inner_text().replace("\n", " ") == "▲ 10-05 晚5天"
    assert cell.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(255, 241, 214)"
    expect(page.locator("#sv-status")).to_contain_text("已保存")
    recorded = demo_server["store"].current_milestones("shenyang-2018")
    mine = next(r for r in recorded if r["community_id"] == community and r["code"] == "management_assigned")
    assert (mine["reached_on"], mine["management_mode"]) == ("2018-10-05", "property_company")
    shot(page, "dashboard-supervision-district")

    # on time: green
    cell.click()
    expect(dialog.get_by_label("修改原因")).to_be_visible()  # replacing now needs a reason
    dialog.get_by_label("完成日期").fill("2018-09-28")
    dialog.get_by_label("修改原因").fill("核对物业合同后更正日期")
    dialog.get_by_role("button", name="保存").click()
    expect(dialog).to_be_hidden()
    cell = page.locator(f"#sv-grid button[data-community='{community}'][data-code='management_assigned']")
    expect(cell).to_have_class(re.compile(r"\bms-on_time\b"))
    assert cell.inner_text() == "✓ 09-28"

    # the residents' vote carries its counts: the form shows the recorded ones; a vote that fails is kept
    voted = next(c for c in api["communities"] if c["milestones"]["residents_voted"]["status"] == "on_time")
    votes = voted["milestones"]["residents_voted"]["votes"]
    cell = page.locator(f"#sv-grid button[data-community='{voted['community_id']}'][data-code='residents_voted']")
    cell.click()
    expect(dialog.get_by_label("有表决权的户数")).to_have_value(str(votes["eligible_households"]))
    expect(dialog.get_by_label("同意的户数")).to_have_value(str(votes["in_favour"]))
    expect(dialog.get_by_label("后续管理方式")).to_be_hidden()
    too_few = votes["eligible_households"] // 2  # fewer than two thirds took part
    dialog.get_by_label("参与表决的户数").fill(str(too_few))
    dialog.get_by_label("同意的户数").fill(str(too_few))
    dialog.get_by_label("修改原因").fill("复核表决票，参与户数登记有误")
    dialog.get_by_role("button", name="保存").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#sv-status")).to_contain_text("居民表决未通过")
    cell = page.locator(f"#sv-grid button[data-community='{voted['community_id']}'][data-code='residents_voted']")
    expect(cell).to_have_class(re.compile(r"\bms-overdue\b"))  # a failed vote counts as not reached
    after = supervision_report(demo_server, "district", as_of="2018-10-08")
    row = next(c for c in after["communities"] if c["community_id"] == voted["community_id"])
    assert row["milestones"]["residents_voted"]["votes"] == {**votes, "participants": too_few, "in_favour": too_few,
                                                             "passed": False}
    assert page.external_requests == []
