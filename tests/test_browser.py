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
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests
from playwright.sync_api import expect

from .conftest import ARTIFACTS, make_app, skip_or_fail
from .live_server import LiveServer, free_port

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
    # The kiosk stamps answers with the device clock, and the demo's open round (the 2019 aftercare round
    # over the 2018 renovations; the 2018 round is published) takes answers in September 2019 (SPEC §14:
    # submitted_at inside the round's window): the browser lives in that month.
    context.clock.set_fixed_time(datetime(2019, 9, 20, 10, 0, tzinfo=timezone(timedelta(hours=8))))
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


#: the round a kiosk of a 2018 community serves: the open one covering it (web.open_round_for)
KIOSK_ROUND = "shenyang-2019-aftercare"


def test_resident_completes_a_survey(page, demo_server):
    store = demo_server["store"]
    before = store.count_responses(KIOSK_ROUND)
    set_up_kiosk(page, demo_server)
    shot(page, "kiosk-welcome")
    page.get_by_label("门牌号（选填").fill("88-8-808")
    page.get_by_role("button", name="开始评价").click()
    page.locator("#question.active").wait_for()
    assert page.locator("#q-title").inner_text() == "保洁到位"  # the aftercare rubric's first item
    shot(page, "kiosk-question")
    screens = 0
    while not page.locator("#thanks.active").count():
        page.get_by_role("button", name="满意", exact=True).click()
        screens += 1
    shot(page, "kiosk-thanks")
    applicable = 6  # every item of the aftercare rubric applies
    assert screens == applicable + 1  # one screen per applicable item, plus overall
    wait_until(page, "document.getElementById('pending').textContent === '0'", timeout=20)
    assert store.count_responses(KIOSK_ROUND) == before + 1
    newest = list(store.iter_responses(KIOSK_ROUND))[-1]
    assert newest["channel"] == "kiosk" and newest["overall"] == 4 and newest["household_hash"]
    assert set(newest["answers"].values()) == {4} and len(newest["answers"]) == applicable
    assert page.external_requests == []


def test_offline_kiosk_queues_and_uploads_exactly_three(page, demo_server):
    store = demo_server["store"]
    set_up_kiosk(page, demo_server)
    wait_until(page, "document.getElementById('pending').textContent === '0'", timeout=20)
    before = store.count_responses(KIOSK_ROUND)
    page.context.set_offline(True)
    for resident in range(3):
        answer_survey(page, ["非常满意", "一般", "不满意"])
    page.wait_for_timeout(1500)  # uploads are attempted and fail while offline
    assert pending(page) == 3
    assert "离线" in page.locator("#net").inner_text()
    shot(page, "kiosk-offline")
    assert store.count_responses(KIOSK_ROUND) == before
    page.reload()  # restarting offline: the page comes from the service worker's cache, the queue stays
    page.locator("#welcome.active").wait_for()
    assert pending(page) == 3
    page.context.set_offline(False)
    wait_until(page, "document.getElementById('pending').textContent === '0'", timeout=30)
    page.wait_for_timeout(1000)
    assert store.count_responses(KIOSK_ROUND) == before + 3


def test_api_reference_renders_under_the_pages_policy(page, demo_server):
    """/docs had an inline script and no Content-Security-Policy; with the policy it must still render."""
    messages = []
    page.on("console", lambda m: messages.append(m.text))
    answer = page.goto(f"{demo_server['url']}/docs")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    page.locator(".opblock-tag").first.wait_for()
    assert page.locator(".opblock-tag").count() > 10  # the service's resource groups
    page.get_by_text("/api/v1/rounds/{round_id}/surveys/batch", exact=True).first.wait_for(state="attached")
    assert not [m for m in messages if "Content Security Policy" in m], messages
    assert page.external_requests == []


def test_kiosk_refuses_a_wrong_key(page, demo_server):
    page.goto(f"{demo_server['url']}/kiosk/heping-001")
    page.get_by_label("终端密钥").fill("k_0000.wrong")
    page.get_by_role("button", name="保存并开始").click()
    expect(page.locator("#setup-error")).to_contain_text("密钥无效")
    expect(page.locator("#setup")).to_have_class(re.compile(r"\bactive\b"))  # still asking for a key


def test_dashboard_says_a_wrong_key_is_wrong(page, demo_server):
    page.goto(f"{demo_server['url']}/dashboard")
    expect(page.locator("#message")).to_have_text("请输入访问密钥以选择测评轮次。")  # no key yet
    sign_in(page, demo_server["url"], "k_0000000000000000.wrong")  # once: "请输入访问密钥…" again
    expect(page.locator("#message")).to_have_text("访问密钥无效或已停用，请检查后重新输入。")
    expect(page.locator("#who")).to_have_text("")


def test_dashboard_shows_the_same_ranking_as_the_api(page, demo_server):
    url, token = demo_server["url"], demo_server["tokens"]["leadership"]
    page.goto(f"{url}/dashboard?round=shenyang-2018")  # the published acceptance round (not the latest)
    page.get_by_label("访问密钥").fill(token)
    page.get_by_role("button", name="保存").click()
    page.locator("#district-table tbody tr").first.wait_for()
    headers = {"Authorization": f"Bearer {token}"}
    api = requests.get(f"{url}/api/v1/rounds/shenyang-2018/rankings/districts", headers=headers).json()
    spread = requests.get(f"{url}/api/v1/rounds/shenyang-2018/rankings/districts?uncertainty=1",
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


def test_dashboard_on_a_phone_scrolls_tables_not_the_page(chromium, demo_server):
    # the round's long title in its select and the wide tables once pushed every tab to 560-930 px
    context = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                   locale="zh-CN")
    page = context.new_page()
    sign_in(page, demo_server["url"], demo_server["tokens"]["leadership"])
    page.get_by_label("测评轮次").select_option("shenyang-2018")
    ready = {"results": "#district-table tbody tr", "supervision": "#sv-district-table tbody tr",
             "ledger": "#lg-district-table tbody tr", "rectification": "#rx-district-table tbody tr",
             "trends": "#tr-backsliding tbody tr"}
    widths = {}
    for tab, rows in ready.items():
        page.locator(f"#tab-{tab}").click()
        page.locator(rows).first.wait_for(timeout=30_000)
        widths[tab] = page.evaluate("document.documentElement.scrollWidth")
    assert widths == dict.fromkeys(ready, 390)
    # the table itself is still whole: it scrolls inside its own box
    assert page.evaluate("(() => { const t = document.getElementById('tr-backsliding');"
                         " return t.parentElement.scrollWidth > t.parentElement.clientWidth; })()")
    # the key form's label, button and holder each on one line (they once broke a character or two a line)
    one_line = page.evaluate("""['label[for=key]', '#key-form button', '#who'].map((s) => {
        const e = document.querySelector(s), style = getComputedStyle(e);
        return e.getBoundingClientRect().height < 1.9 * parseFloat(style.fontSize) + parseFloat(style.paddingTop)
          + parseFloat(style.paddingBottom) + 2; })""")
    assert one_line == [True, True, True]
    context.close()


def test_kiosk_touch_screen_shows_no_answer_chosen_in_advance(chromium, demo_server):
    # a tap leaves :hover where the finger was; the kiosk's hover border then marked the next question's
    # answer at that spot, as if it were chosen already
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, is_mobile=True, has_touch=True,
                                   locale="zh-CN")
    context.clock.set_fixed_time(datetime(2019, 9, 20, 10, 0, tzinfo=timezone(timedelta(hours=8))))
    page = context.new_page()
    set_up_kiosk(page, demo_server)
    page.get_by_role("button", name="开始评价").tap()
    page.locator("#question.active").wait_for()
    page.get_by_role("button", name="满意", exact=True).tap()
    expect(page.locator("#q-progress")).to_have_text(re.compile("第 2 题"))
    borders = page.evaluate("[...document.querySelectorAll('.answer')].map((b) => getComputedStyle(b).borderTopColor)")
    assert len(set(borders)) == 1, borders
    context.close()


def test_kiosk_says_nothing_was_recorded_when_every_question_is_skipped(page, demo_server):
    set_up_kiosk(page, demo_server)
    queued = pending(page)
    page.get_by_role("button", name="开始评价").click()
    while not page.locator("#thanks.active").count():
        page.get_by_role("button", name="不了解，跳过").click()
    expect(page.locator("#thanks-text")).to_have_text("您没有回答任何问题，本次未记录评价。")  # not "已保存"
    assert pending(page) == queued
    page.get_by_role("button", name="下一位居民").click()
    page.get_by_role("button", name="开始评价").click()
    while not page.locator("#thanks.active").count():
        page.get_by_role("button", name="满意", exact=True).click()
    # saved on the kiosk; once the upload answers, uploaded (whichever the page shows by now)
    expect(page.locator("#thanks-text")).to_have_text(re.compile("^您的评价已(保存，将自动上传|上传，感谢参与)。$"))


def test_kiosk_tells_a_household_that_answered_already(page, demo_server):
    """Before: the second resident of one household read 已保存 while the upload was refused
    (household_already_responded) and nothing of theirs was counted."""
    store = demo_server["store"]
    set_up_kiosk(page, demo_server)
    before = store.count_responses(KIOSK_ROUND)
    for resident, said in ((1, "您的评价已上传，感谢参与。"),
                           (2, "该门牌号已参与过本轮测评，每户只计一次，这次的评价未计入。")):
        page.get_by_label("门牌号（选填").fill("66-6-606")
        page.get_by_role("button", name="开始评价").click()
        while not page.locator("#thanks.active").count():
            page.get_by_role("button", name="满意", exact=True).click()
        expect(page.locator("#thanks-text")).to_have_text(said, timeout=20000)
        page.get_by_role("button", name="下一位居民").click()
    assert pending(page) == 0  # the refused answer is not kept to be sent again
    assert store.count_responses(KIOSK_ROUND) == before + 1


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
    # the latest round to start with: the 2019 aftercare round, whose progress is the graded share
    expect(page.get_by_label("测评轮次")).to_have_value(KIOSK_ROUND)
    expect(page.locator("#index-note")).to_contain_text("进度得分（已评定小区数 / 计划数）")
    page.get_by_label("测评轮次").select_option("shenyang-2018")
    expect(page.locator("#index-note")).to_contain_text("进度得分（各时间节点按期完成情况")  # 2018: milestones
    assert "已评定小区数" not in page.locator("#index-note").inner_text()


def rewards_of(demo_server, round_id):
    headers = {"Authorization": f"Bearer {demo_server['tokens']['leadership']}"}
    r = requests.get(f"{demo_server['url']}/api/v1/rounds/{round_id}/rewards", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_reward_summary_of_a_round_without_a_pool(page, demo_server):
    # the 2019 aftercare round has no reward pool; the API still lists its good-or-better communities,
    # each with 0 fen (SPEC §5), which the page once read as "0.00 元分配给 37 个…小区"
    rewards = rewards_of(demo_server, KIOSK_ROUND)
    assert rewards["pool_fen"] == 0 and rewards["communities"]
    sign_in(page, demo_server["url"], demo_server["tokens"]["leadership"])
    expect(page.get_by_label("测评轮次")).to_have_value(KIOSK_ROUND)
    expect(page.locator("#reward-summary")).to_have_text("本轮测评不设奖励资金，不作奖励分配。", timeout=30_000)
    assert "0.00" not in page.locator("#reward-summary").inner_text()
    # nor a 0.0% chance of a reward for every district (the column 入选奖励概率)
    chances = page.locator("#district-table tbody tr td:nth-child(3)").all_inner_texts()
    assert len(chances) == 9 and set(chances) == {"—"}, chances


def test_reward_summary_of_a_round_with_a_pool(page, demo_server):
    r = rewards_of(demo_server, "shenyang-2018")
    assert r["pool_fen"] > 0 and r["unallocated_fen"] == 0
    yuan = lambda fen: f"{fen / 100:,.2f}"  # noqa: E731 - zh-CN grouping: 30,000,000.00
    sign_in(page, demo_server["url"], demo_server["tokens"]["leadership"])
    page.get_by_label("测评轮次").select_option("shenyang-2018")
    expect(page.locator("#reward-summary")).to_have_text(
        f"奖励资金共 {yuan(r['pool_fen'])} 元：区级 {yuan(r['district_pool_fen'])} 元分配给 {len(r['districts'])} 个区，"
        f"小区级 {yuan(r['community_pool_fen'])} 元分配给 {len(r['communities'])} 个达到良好及以上的小区。")


def test_published_ranking_for_a_district_key_and_without_a_key(page, demo_server):
    # a published round's results, rank intervals included, are readable by anyone: the page once asked
    # for intervals of its own seed, which only leadership and admins may draw, so a district key (and a
    # visitor without a key) saw empty tables under "区级密钥只能看已发布的测评结果"
    frozen = requests.get(f"{demo_server['url']}/api/v1/rounds/shenyang-2018/rankings/districts?uncertainty=1").json()
    expected = [[str(d["rank"]), "{}–{}".format(*d["uncertainty"]["rank_interval_90"]), d["name_zh"],
                 f"{d['index']:.2f}"] for d in frozen["districts"]]

    def shown():
        rows = page.locator("#district-table tbody tr")
        expect(rows).to_have_count(len(expected), timeout=30_000)
        return [[cells[0], cells[1], cells[3], cells[4]] for cells in (r.locator("td").all_inner_texts()
                                                                      for r in rows.all())]

    sign_in(page, demo_server["url"], demo_server["tokens"]["district"])
    page.get_by_label("测评轮次").select_option("shenyang-2018")
    page.get_by_role("tab", name="测评结果").click()
    assert shown() == expected
    assert page.locator("#community-table tbody tr").count() >= 100
    expect(page.locator("#results-message")).to_have_text("")
    # a round whose results it may not read: the message, and nothing left of the 2018 round under its name
    page.get_by_label("测评轮次").select_option(KIOSK_ROUND)
    expect(page.locator("#results-message")).to_contain_text("区级密钥只能看已发布的测评结果")
    expect(page.locator("#district-table tbody tr")).to_have_count(0)
    expect(page.locator("#community-table tbody tr")).to_have_count(0)
    expect(page.locator("#snapshot")).to_have_text("")
    assert page.locator("#district-chart svg rect").count() <= 2  # the legend's two swatches only

    page.evaluate("localStorage.clear()")
    page.goto(f"{demo_server['url']}/dashboard?round=shenyang-2018")
    assert shown() == expected
    expect(page.locator("#results-message")).to_have_text("")


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


# -- 历年趋势 (SPEC §15, §16) --------------------------------------------------------------

def api_get(demo_server, role, path):
    r = requests.get(demo_server["url"] + "/api/v1" + path,
                     headers={"Authorization": f"Bearer {demo_server['tokens'][role]}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def check_trend_lines(page, demo_server, role, districts):
    """One SVG line per district with a dot per round of its history, in the legend and the table too."""
    for district in districts:
        items = api_get(demo_server, role, f"/districts/{district['district_id']}/history")["items"]
        assert [i["round_id"] for i in items][:2] == ["shenyang-2018", KIOSK_ROUND]  # year order
        line = page.locator(f"#tr-chart g.tr-line[data-district='{district['district_id']}']")
        assert line.locator("circle").count() == len(items)
        d = line.locator("path").get_attribute("d")
        assert d.startswith("M") and d.count("L") == len(items) - 1  # the rounds joined in one line
        tips = line.locator("circle title").all_text_contents()  # (SVG elements have no innerText)
        for item, tip in zip(items, tips):
            assert tip.startswith(district["name_zh"]) and f"综合指数 {item['index']:.2f}" in tip
        legend = page.locator(f"#tr-chart g.tr-legend[data-district='{district['district_id']}']")
        assert legend.text_content().strip() and district["name_zh"].startswith(legend.text_content().strip())
        cells = page.locator(f"#tr-table tr[data-district='{district['district_id']}'] td")
        assert {cells.nth(i).get_attribute("data-round"): cells.nth(i).inner_text() for i in range(cells.count())
                if cells.nth(i).inner_text() != "—"} == {i["round_id"]: f"{i['index']:.2f}" for i in items}
    assert page.locator("#tr-chart g.tr-line").count() == len(districts)
    # the axes say what they show; the rounds in year order
    chart = page.locator("#tr-chart svg")
    assert "综合指数" in chart.text_content() and "测评轮次（按年份）" in chart.text_content()
    rounds = page.locator("#tr-chart text.tr-round").evaluate_all("labels => labels.map((t) => t.firstChild.data)")
    assert rounds[:2] == ["2018年验收", "2019年长效管理"]


def check_backsliding_list(page, body):
    """The 前治后乱 list shows the API's communities, largest drop first, with the drop and the items."""
    rows = page.locator("#tr-backsliding tbody tr[data-community]")
    assert rows.evaluate_all("rows => rows.map((r) => r.dataset.community)") == [
        c["community_id"] for c in body["communities"]]
    for c in body["communities"]:
        cells = page.locator(f"#tr-backsliding tr[data-community='{c['community_id']}']").locator("th, td")
        texts = cells.all_inner_texts()
        assert texts[0] == c["name_zh"]
        assert texts[2:5] == [f"{c['baseline']:.2f}", f"{c['composite']:.2f}", f"{-c['change']:.2f}"]
        assert -c["change"] >= 10
        items = cells.nth(5).locator("li").all_inner_texts()
        assert len(items) == min(3, len(c["fallen_items"])) >= 2
        for shown, item in zip(items, c["fallen_items"]):
            assert shown.startswith(f"{item['name_zh']} 下降 {-item['change']:.2f} 分")
            assert all(f"“{x['name_zh']}”" in shown for x in item["compares_to"])
        assert ("后续管理未落实" in texts[6]) == ("management_missing" in c["flags"])
    unmanaged = page.locator("#tr-unmanaged").inner_text()
    assert all(m["name_zh"] in unmanaged for m in body["management_missing"])


def test_trends_tab_draws_districts_and_lists_backsliding(page, demo_server):
    console_errors = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    sign_in(page, demo_server["url"], demo_server["tokens"]["leadership"])
    expect(page.get_by_label("测评轮次")).to_have_value(KIOSK_ROUND)  # the latest round to start with
    page.get_by_role("tab", name="历年趋势").click()
    expect(page.get_by_role("tab", name="历年趋势")).to_have_attribute("aria-selected", "true")
    page.locator("#tr-backsliding tbody tr[data-community]").first.wait_for()
    districts = api_get(demo_server, "leadership", "/districts")["items"]
    assert len(districts) == 9
    check_trend_lines(page, demo_server, "leadership", districts)
    body = api_get(demo_server, "leadership", f"/rounds/{KIOSK_ROUND}/backsliding")
    assert 5 <= len(body["communities"]) <= 8  # the demo's communities fallen back (seeding/demo.py)
    check_backsliding_list(page, body)
    assert KIOSK_ROUND == page.locator("#tr-b-note").get_attribute("data-round")
    shot(page, "dashboard-trends")

    # 进度督办 follows the works of an acceptance round: the page moves to the latest one and says so
    page.get_by_role("tab", name="进度督办").click()
    expect(page.get_by_label("测评轮次")).to_have_value("shenyang-2018")
    expect(page.locator("#round-note")).to_contain_text("“进度督办”只适用于验收轮次")
    page.locator("#sv-grid tbody button.ms").first.wait_for()
    # back on 历年趋势 with the acceptance round chosen: the list is still the latest aftercare round's
    page.get_by_role("tab", name="历年趋势").click()
    wait_until(page, "document.querySelectorAll('#tr-chart g.tr-line').length === 9")
    page.locator("#tr-backsliding tbody tr[data-community]").first.wait_for()
    check_backsliding_list(page, body)
    assert page.external_requests == []
    assert [m for m in console_errors if not m.startswith("Failed to load resource")] == []


def test_trends_tab_for_a_district_key(page, demo_server):
    sign_in(page, demo_server["url"], demo_server["tokens"]["district"])
    page.get_by_role("tab", name="历年趋势").click()
    page.locator("#tr-chart g.tr-line").first.wait_for()
    heping = [d for d in api_get(demo_server, "district", "/districts")["items"] if d["district_id"] == "heping"]
    check_trend_lines(page, demo_server, "district", heping)  # its own district's line only
    wait_until(page, f"document.getElementById('tr-b-note').dataset.round === '{KIOSK_ROUND}'")  # the list came
    body = api_get(demo_server, "district", f"/rounds/{KIOSK_ROUND}/backsliding")
    assert {c["district_id"] for c in body["communities"]} <= {"heping"}
    everyone = api_get(demo_server, "leadership", f"/rounds/{KIOSK_ROUND}/backsliding")
    assert body["communities"] == [c for c in everyone["communities"] if c["district_id"] == "heping"]
    if body["communities"]:
        check_backsliding_list(page, body)
    else:
        expect(page.locator("#tr-backsliding tbody")).to_contain_text("没有综合得分下降 10 分及以上的小区")
    shot(page, "dashboard-trends-district")
    assert page.external_requests == []


def test_trends_leave_out_a_round_not_yet_evaluated(page, demo_server):
    # a newly opened round with nothing graded yet: the service reports index 0, which the chart once drew
    # as every district falling to 0 (the service's answer is stubbed with such a round: nothing is stored)
    fresh = {"round_id": "shenyang-2020", "title": "2020年验收", "year": 2020, "kind": "acceptance",
             "published": False, "graded": 0, "quota": 3, "index": 0.0, "quality": 0.0, "progress": 0.0,
             "grade_counts": {"excellent": 0, "good": 0, "pass": 0, "fail": 0}}

    def with_fresh_round(route):
        body = route.fetch().json()
        route.fulfill(json={**body, "items": body["items"] + [fresh]})

    page.route("**/api/v1/districts/*/history", with_fresh_round)
    sign_in(page, demo_server["url"], demo_server["tokens"]["district"])
    page.get_by_role("tab", name="历年趋势").click()
    line = page.locator("#tr-chart g.tr-line[data-district='heping']")
    line.wait_for()
    items = api_get(demo_server, "district", "/districts/heping/history")["items"]
    assert line.locator("circle").count() == len(items)
    assert page.locator("#tr-chart circle[data-round='shenyang-2020']").count() == 0
    assert page.locator("#tr-table [data-round='shenyang-2020']").count() == 0
    assert "0.00" not in page.locator("#tr-table tbody").inner_text()


# -- 资金台账 (SPEC §12, §16) --------------------------------------------------------------

ROUND = "shenyang-2018"
REACHED = ("on_time", "late", "done")


def call(demo_server, role, method, path, **kwargs):
    headers = {"Authorization": f"Bearer {demo_server['tokens'][role]}"}
    return requests.request(method, demo_server["url"] + "/api/v1" + path, headers=headers, timeout=60, **kwargs)


def ledger_report(demo_server, role="leadership", round_id=ROUND, **query):
    r = call(demo_server, role, "GET", f"/rounds/{round_id}/ledger", params=query)
    assert r.status_code == 200, r.text
    return r.json()


def put_funding(demo_server, community, round_id=ROUND, **fields):
    body = {"land_category": "non_independent", "approved_budget_fen": 1_000_000,
            "district_funds_in_place_fen": 1_000_000, **fields}
    r = call(demo_server, "admin", "PUT", f"/rounds/{round_id}/communities/{community}/funding", json=body)
    assert r.status_code in (200, 201), r.text
    return r.json()


def yuan(fen: int) -> str:
    """Yuan with two decimals and thousands separators, exact (the page's format)."""
    return format(Decimal(fen).scaleb(-2), ",.2f")


def unfunded_community(demo_server, reached: tuple[str, ...], district=None) -> str:
    """A covered community without a funding record whose milestones ``reached`` are reached at the
    ledger's date (the tests record funding only where the demo has none)."""
    unfunded = {c["community_id"] for c in ledger_report(demo_server)["communities"] if c["land_category"] is None}
    for c in supervision_report(demo_server, "leadership")["communities"]:
        if c["community_id"] in unfunded and (district is None or c["district_id"] == district) \
                and all(c["milestones"][code]["status"] in REACHED for code in reached):
            return c["community_id"]
    raise AssertionError(f"no community without funding with {reached} reached")


def ensure_funding(demo_server) -> dict:
    """The demo's funding records (seeding/demo.py), or a few recorded here when it has none: some
    money due, some held for the district's match, independent land."""
    report = ledger_report(demo_server)
    if report["totals"]["subsidy_fen"] == 0:
        first = unfunded_community(demo_server, ("contract_signed", "works_completed"), district="shenhe")
        put_funding(demo_server, first, approved_budget_fen=2_468_013, district_funds_in_place_fen=400_000)
        second = unfunded_community(demo_server, ("contract_signed",), district="huanggu")
        put_funding(demo_server, second, approved_budget_fen=9_000_000_001, district_funds_in_place_fen=9_000_000_001)
        put_funding(demo_server, unfunded_community(demo_server, (), district="tiexi"), land_category="independent")
        report = ledger_report(demo_server)
    assert report["totals"]["subsidy_fen"] > 0
    return report


def open_tranches(demo_server, report: dict, prefer: str) -> list[tuple[dict, dict]]:
    """Tranches due or held only for the district's money at the ledger's date and not paid since,
    those with status ``prefer`` first."""
    paid = {(d["community_id"], d["tranche"]) for d in demo_server["store"].disbursements(ROUND)}
    found = [(c, t) for c in report["communities"] for t in c["tranches"]
             if t["status"] in ("due", "held") and set(t["reasons"]) <= {"district_match_missing"}
             and t["amount_fen"] > 0 and (c["community_id"], t["tranche"]) not in paid]
    return sorted(found, key=lambda pair: pair[1]["status"] != prefer)


def set_funds(demo_server, community: dict, funds: int) -> None:
    """The admin changes only the district's funds in place of a funded community."""
    put_funding(demo_server, community["community_id"], **{name: community[name] for name in (
        "land_category", "approved_budget_fen", "settled_budget_fen")}, district_funds_in_place_fen=funds)


def cumulative_fen(community: dict, k: int) -> int:
    """cum_k of SPEC §12: 30 % and 80 % of S = ⌊approved / 2⌋, then the subsidy (S_final once settled)."""
    s = community["approved_budget_fen"] // 2
    return {1: s * 30 // 100, 2: s * 80 // 100, 3: community["subsidy_fen"]}[k]


def open_ledger(page, url, token, query=""):
    page.goto(f"{url}/dashboard{query}")
    page.get_by_label("访问密钥").fill(token)
    page.get_by_role("button", name="保存", exact=True).click()
    page.get_by_role("tab", name="资金台账").click()
    expect(page.get_by_role("tab", name="资金台账")).to_have_attribute("aria-selected", "true")
    page.locator("#lg-table tbody tr[data-community]").first.wait_for()


def district_rows(page) -> list[list[str]]:
    return [row.locator("th, td").all_inner_texts() for row in page.locator("#lg-district-table tbody tr").all()]


def expected_rows(report) -> list[list[str]]:
    return [[d["name_zh"], *(yuan(d[k]) for k in ("subsidy_fen", "paid_fen", "due_fen", "held_fen", "refund_due_fen"))]
            for d in report["districts"]]


def tranche_cell(page, community, k):
    return page.locator(f"#lg-table tr[data-community='{community}'] td[data-tranche='{k}']")


def test_ledger_tab_for_leadership(page, demo_server):
    ensure_funding(demo_server)
    console_errors = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    url = demo_server["url"]
    open_ledger(page, url, demo_server["tokens"]["leadership"])
    api = ledger_report(demo_server)
    assert page.locator("#lg-as-of").input_value() == api["as_of"]

    # per district and in total, the API's figures in yuan (two decimals, thousands separators)
    assert district_rows(page) == expected_rows(api)
    total = page.locator("#lg-district-table tfoot tr th, #lg-district-table tfoot tr td").all_inner_texts()
    assert total == ["合计", *(yuan(api["totals"][k]) for k in ("subsidy_fen", "paid_fen", "due_fen", "held_fen",
                                                                "refund_due_fen"))]
    for name in ("subsidy", "paid", "due", "held", "refund_due"):
        expect(page.locator(f"#lg-totals [data-figure='{name}'] dd")).to_have_text(yuan(api["totals"][name + "_fen"]) + " 元")
    expect(page.locator("#lg-budget [data-figure='reward_pool'] dd")).to_have_text(yuan(api["reward_pool_fen"]) + " 元")
    expect(page.locator("#lg-budget [data-figure='committed'] dd")).to_have_text(
        yuan(api["committed_subsidy_fen"]) + " 元")
    budget = page.locator("#lg-budget [data-figure='city_budget'] dd")
    expect(budget).to_have_text("未设定" if api["city_budget_fen"] is None else yuan(api["city_budget_fen"]) + " 元")
    assert page.locator("#lg-warning").is_visible() == api["over_committed"]

    # per community: every covered community, its land category, budgets and the three tranches in words
    assert page.locator("#lg-table tbody tr[data-community]").count() == len(api["communities"])
    rows = {c["community_id"]: c for c in api["communities"]}
    funded = [c for c in api["communities"] if c["land_category"] == "non_independent"]
    c = funded[0]
    row = page.locator(f"#lg-table tr[data-community='{c['community_id']}']")
    assert "原土地非独立操作区" in row.locator("th").inner_text()
    assert row.locator("td[data-col='approved']").inner_text() == yuan(c["approved_budget_fen"])
    assert row.locator("td[data-col='funds'] .amount").inner_text() == yuan(c["district_funds_in_place_fen"])
    assert row.locator("td[data-col='subsidy']").inner_text() == yuan(c["subsidy_fen"])
    for cid, k, t in ((cid, t["tranche"], t) for cid, r in rows.items() for t in r["tranches"]):
        cell = tranche_cell(page, cid, k)
        assert cell.get_attribute("data-status") == t["status"], (cid, k)
    held = [(cid, t) for cid, r in rows.items() for t in r["tranches"] if t["status"] == "held"]
    assert held, "the ledger has a held tranche"
    cid, t = held[0]
    text = tranche_cell(page, cid, t["tranche"]).inner_text()
    assert "暂缓拨付" in text and yuan(t["amount_fen"]) in text
    words = {"district_match_missing": "区级配套资金未同步到位", "acceptance_failed": "验收未通过"}
    assert all(words[r] in text for r in t["reasons"])
    due = next((cid, t) for cid, r in rows.items() for t in r["tranches"] if t["status"] == "due" and t["amount_fen"] > 0)
    assert "● 应拨付" in tranche_cell(page, due[0], due[1]["tranche"]).inner_text()
    refund = next(((cid, t) for cid, r in rows.items() for t in r["tranches"] if t["amount_fen"] is not None
                   and t["amount_fen"] < 0 and t["status"] == "due"), None)
    if refund:  # a settlement below the approval: money the district owes back
        text = tranche_cell(page, refund[0], 3).inner_text()
        assert "应退回" in text and yuan(-refund[1]["amount_fen"]) in text
    independent = next((cid for cid, r in rows.items() if r["land_category"] == "independent"), None)
    if independent:
        assert tranche_cell(page, independent, 1).inner_text() == "— 不适用"
        assert "独立操作区" in page.locator(f"#lg-table tr[data-community='{independent}'] th").inner_text()
    unfunded = next((cid for cid, r in rows.items() if r["land_category"] is None), None)
    if unfunded:
        assert "未登记资金" in page.locator(f"#lg-table tr[data-community='{unfunded}']").inner_text()
        assert tranche_cell(page, unfunded, 1).inner_text() == "—"
    # leadership reads only
    assert page.locator("#lg-table button[data-action]").count() == 0
    shot(page, "dashboard-ledger")

    # another date: that day's money
    page.get_by_label("截至日期").fill("2018-05-15")
    wait_until(page, "document.getElementById('lg-t-title').textContent.includes('2018年5月15日')")
    assert district_rows(page) == expected_rows(ledger_report(demo_server, as_of="2018-05-15"))

    # one district, and its 资金台账 as a workbook and CSV fetched with the key
    page.get_by_label("按区筛选").select_option("heping")
    wait_until(page, "document.querySelectorAll('#lg-district-table tbody tr').length === 1")
    heping = ledger_report(demo_server, as_of="2018-05-15", district_id="heping")
    assert district_rows(page) == expected_rows(heping)
    shown = page.locator("#lg-table tbody tr[data-community]").evaluate_all("rows => rows.map((r) => r.dataset.community)")
    assert shown == [c["community_id"] for c in heping["communities"]]
    with page.expect_download() as download:
        page.get_by_role("button", name="下载资金台账 Excel").click()
    assert download.value.suggested_filename == "shenyang-2018-资金台账-2018-05-15.xlsx"
    with open(download.value.path(), "rb") as f:
        assert f.read(2) == b"PK"
    with page.expect_download() as download:
        page.get_by_role("button", name="下载资金台账 CSV").click()
    with open(download.value.path(), encoding="utf-8-sig") as f:
        text = f.read()
    assert "小区编号" in text and "heping-001" in text and "shenhe-" not in text
    assert page.external_requests == []
    assert [m for m in console_errors if not m.startswith("Failed to load resource")] == []


def test_admin_records_a_payment_from_the_page(page, demo_server):
    before = ensure_funding(demo_server)
    candidates = open_tranches(demo_server, before, prefer="due")
    if not candidates:  # no funding in the demo: record one with tranche 1 due
        cid = unfunded_community(demo_server, ("contract_signed",))
        put_funding(demo_server, cid, approved_budget_fen=3_333_335, district_funds_in_place_fen=3_333_335)
        before = ledger_report(demo_server)
        candidates = open_tranches(demo_server, before, prefer="due")
    row, tranche = candidates[0]
    if tranche["status"] == "held":  # the district's money arrives (through the API) to make it due
        set_funds(demo_server, row, row["approved_budget_fen"])
        before = ledger_report(demo_server)
        tranche = next(c for c in before["communities"] if c["community_id"] == row["community_id"])[
            "tranches"][tranche["tranche"] - 1]
    community, k, amount = row["community_id"], tranche["tranche"], tranche["amount_fen"]
    assert tranche["status"] == "due" and amount > 0

    open_ledger(page, demo_server["url"], demo_server["tokens"]["admin"])
    cell = tranche_cell(page, community, k)
    expect(cell).to_have_attribute("data-status", "due")
    cell.get_by_role("button", name=re.compile("登记.*拨付")).click()
    dialog = page.locator("#lg-dialog")
    expect(dialog).to_be_visible()
    amount_field = dialog.get_by_label("拨付金额（元）")
    assert amount_field.input_value() == format(Decimal(amount).scaleb(-2), ".2f")  # the computed amount
    # a wrong amount: the service's 422 names the right one, in Chinese
    amount_field.fill("1.00")
    dialog.get_by_label("拨付日期").fill(before["as_of"])
    dialog.get_by_label("拨付凭证号（选填）").fill("沈财拨〔2018〕88号")
    dialog.get_by_role("button", name="确认登记").click()
    expect(page.locator("#lg-form-error")).to_contain_text(f"未能登记：拨付金额：应为 {yuan(amount)} 元")
    expect(dialog).to_be_visible()
    shot(page, "dashboard-ledger-refused")

    # the service records the payment but its answer is lost: the retry sends the same id, recorded once
    amount_field.fill(format(Decimal(amount).scaleb(-2), ".2f"))
    sent = []

    def lose_first_answer(route):
        sent.append(route.request.post_data_json)
        if len(sent) == 1:
            route.fetch()  # reaches the service ...
            route.abort()  # ... and the page never hears back
        else:
            route.continue_()

    page.route("**/disbursements", lose_first_answer)
    dialog.get_by_role("button", name="确认登记").click()
    expect(page.locator("#lg-form-error")).to_contain_text("网络连接失败")
    recorded = demo_server["store"].disbursements(ROUND, community)
    assert [(d["tranche"], d["amount_fen"]) for d in recorded if d["tranche"] == k] == [(k, amount)]
    dialog.get_by_role("button", name="确认登记").click()
    expect(dialog).to_be_hidden()
    assert len(sent) == 2 and sent[0] == sent[1]
    assert uuid.UUID(sent[0]["disbursement_id"]).version == 4
    assert sent[0] == {"disbursement_id": sent[0]["disbursement_id"], "tranche": k, "amount_fen": amount,
                       "paid_on": before["as_of"], "voucher": "沈财拨〔2018〕88号"}
    recorded = demo_server["store"].disbursements(ROUND, community)
    assert [d["disbursement_id"] for d in recorded if d["tranche"] == k] == [sent[0]["disbursement_id"]]
    assert page.evaluate("Object.keys(sessionStorage).filter((k) => k.startsWith('scoring.ledger.pay')).length") == 0

    # the page and the API agree: paid, with its date and voucher
    cell = tranche_cell(page, community, k)
    expect(cell).to_have_attribute("data-status", "paid")
    expect(cell).to_contain_text("✓ 已拨付")
    expect(cell).to_contain_text(f"{before['as_of']} 拨付")
    expect(cell).to_contain_text("凭证：沈财拨〔2018〕88号")
    expect(page.locator("#lg-status")).to_contain_text("已登记")
    after = ledger_report(demo_server, role="admin")
    paid = next(c for c in after["communities"] if c["community_id"] == community)["tranches"][k - 1]
    assert (paid["status"], paid["amount_fen"], paid["paid_on"], paid["voucher"], paid["disbursement_id"]) == (
        "paid", amount, before["as_of"], "沈财拨〔2018〕88号", sent[0]["disbursement_id"])
    assert after["totals"]["paid_fen"] == before["totals"]["paid_fen"] + amount
    expect(page.locator("#lg-totals [data-figure='paid'] dd")).to_have_text(yuan(after["totals"]["paid_fen"]) + " 元")
    assert district_rows(page) == expected_rows(after)
    assert cell.get_by_role("button").count() == 0  # paid is final
    shot(page, "dashboard-ledger-paid")
    assert page.external_requests == []


def test_paying_a_tranche_paid_after_the_date_shown_moves_the_date(page, demo_server):
    """The ledger opens at the round's date (2018-10-08); a tranche paid after it reads 应拨付 there. Before:
    recording it answered 已于 … 登记拨付 …台账已刷新, and the row still read 应拨付 with its button."""
    report = ledger_report(demo_server, role="admin")
    store = demo_server["store"]
    community, k, paid_on = next(
        (c["community_id"], t["tranche"], d["paid_on"]) for c in report["communities"] for t in c["tranches"]
        if t["status"] == "due" for d in store.disbursements(ROUND, c["community_id"])
        if d["tranche"] == t["tranche"] and d["paid_on"] > report["as_of"])
    open_ledger(page, demo_server["url"], demo_server["tokens"]["admin"])
    cell = tranche_cell(page, community, k)
    expect(cell).to_have_attribute("data-status", "due")
    cell.get_by_role("button", name=re.compile("登记.*拨付")).click()
    dialog = page.locator("#lg-dialog")
    dialog.get_by_label("拨付日期").fill(report["as_of"])
    dialog.get_by_role("button", name="确认登记").click()
    expect(page.locator("#lg-form-error")).to_contain_text(
        f"这笔资金已于 {paid_on} 登记拨付，不能重复登记。台账已刷新。统计日期已改为 {paid_on}，以显示这笔拨付。")
    expect(page.locator("#lg-as-of")).to_have_value(paid_on)
    expect(tranche_cell(page, community, k)).to_have_attribute("data-status", "paid")
    assert [d["tranche"] for d in store.disbursements(ROUND, community)].count(k) == 1  # nothing recorded twice


def test_district_key_records_its_funds_in_place(page, demo_server):
    # a tranche held only for the district's money (the demo has some), or one made so here
    before = ensure_funding(demo_server)
    candidates = open_tranches(demo_server, before, prefer="held")
    if not candidates:  # no funding in the demo: S = 500,000 fen, cumulative 150,000 / 400,000 fen
        cid = unfunded_community(demo_server, ("contract_signed", "works_completed"), district="heping")
        put_funding(demo_server, cid, approved_budget_fen=1_000_001, district_funds_in_place_fen=150_000)
        candidates = [(c, c["tranches"][1]) for c in ledger_report(demo_server)["communities"] if c["community_id"] == cid]
    community, tranche = candidates[0]
    if tranche["status"] == "due":  # the admin records less of the district's money than the tranche needs
        set_funds(demo_server, community, cumulative_fen(community, tranche["tranche"]) - 1)
        community = next(c for c in ledger_report(demo_server)["communities"]
                         if c["community_id"] == community["community_id"])
        tranche = community["tranches"][tranche["tranche"] - 1]
    assert tranche["status"] == "held" and tranche["reasons"] == ["district_match_missing"]
    cid, k, district = community["community_id"], tranche["tranche"], community["district_id"]
    need, funds = cumulative_fen(community, k), community["district_funds_in_place_fen"]
    assert need > funds
    r = call(demo_server, "admin", "POST", "/keys", json={"role": "district", "name": "区住建局资金科",
                                                         "district_id": district})
    assert r.status_code == 201, r.text
    demo_server["tokens"]["district_" + district] = token = r.json()["token"]

    open_ledger(page, demo_server["url"], token)
    api = ledger_report(demo_server, role="district_" + district)
    name = api["districts"][0]["name_zh"]
    expect(page.locator("#lg-scope")).to_have_text(f"本区：{name}")
    expect(page.locator("#lg-district")).to_be_hidden()
    assert {c["district_id"] for c in api["communities"]} == {district}
    assert page.locator("#lg-table tbody tr[data-community]").count() == len(api["communities"])
    assert district_rows(page) == expected_rows(api)
    assert page.locator("#lg-table button[data-action='pay']").count() == 0  # payments are the admin's
    cell = tranche_cell(page, cid, k)
    expect(cell).to_have_attribute("data-status", "held")
    expect(cell).to_contain_text(f"区级配套资金未同步到位：区级应到位 {yuan(need)} 元，还差 {yuan(need - funds)} 元")

    row = page.locator(f"#lg-table tr[data-community='{cid}']")
    row.get_by_role("button", name=re.compile("修改.*区级资金到位金额")).click()
    field = row.get_by_label("区级资金到位（元）")
    expect(field).to_be_focused()
    assert field.input_value() == format(Decimal(funds).scaleb(-2), ".2f")
    field.fill("四千")
    row.get_by_role("button", name="保存").click()
    expect(row.locator(".form-error")).to_contain_text("金额应为元")
    field.fill(yuan(need))  # with thousands separators, as shown
    row.get_by_role("button", name="保存").click()
    cell = tranche_cell(page, cid, k)
    expect(cell).to_have_attribute("data-status", "due")
    expect(cell).to_contain_text("● 应拨付")
    ordinal = {1: "第一笔", 2: "第二笔", 3: "第三笔"}[k]
    expect(page.locator("#lg-status")).to_contain_text("已保存")
    expect(page.locator("#lg-status")).to_contain_text(f"{ordinal}已不再暂缓，可以拨付")
    row = page.locator(f"#lg-table tr[data-community='{cid}']")
    assert row.locator("td[data-col='funds'] .amount").inner_text() == yuan(need)
    shot(page, "dashboard-ledger-district")

    # the API agrees: a new version by the district key, only the funds changed; the tranche due
    funding = call(demo_server, "district_" + district, "GET", f"/rounds/{ROUND}/communities/{cid}/funding").json()
    assert (funding["district_funds_in_place_fen"], funding["approved_budget_fen"]) == (need, community["approved_budget_fen"])
    assert [v["district_funds_in_place_fen"] for v in funding["history"]][-2:] == [funds, need]
    after = ledger_report(demo_server, role="district_" + district)
    mine = next(c for c in after["communities"] if c["community_id"] == cid)
    assert (mine["tranches"][k - 1]["status"], mine["tranches"][k - 1]["amount_fen"]) == ("due", tranche["amount_fen"])
    assert district_rows(page) == expected_rows(after)
    assert page.external_requests == []


def test_over_commitment_warning(page, demo_server):
    # a closed round of 2018 whose city budget cannot carry its subsidy and its reward reserve
    round_id = "zz-ledger-budget"
    body = {"round_id": round_id, "year": 2018, "rubric_id": "shenyang-2018", "title": "市级资金预算偏紧的测算轮次",
            "opens_at": "2018-01-01T00:00:00+08:00", "closes_at": "2018-01-31T23:59:59+08:00",
            "quotas": {"heping": 52}, "reward": {"pool_fen": 500_000, "district_share_pct": 40, "top_districts": 1},
            "city_budget_fen": 1_000_000, "progress_as_of": "2018-10-08"}
    r = call(demo_server, "admin", "POST", "/rounds", json=body)
    assert r.status_code in (200, 201), r.text
    assert call(demo_server, "admin", "POST", f"/rounds/{round_id}/close").status_code == 200
    put_funding(demo_server, "heping-001", round_id=round_id, approved_budget_fen=2_000_000)
    api = ledger_report(demo_server, round_id=round_id)
    assert (api["uncommitted_fen"], api["over_committed"]) == (-500_000, True)

    open_ledger(page, demo_server["url"], demo_server["tokens"]["leadership"], f"?round={round_id}")
    warning = page.locator("#lg-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("市级资金超额承诺")
    expect(warning).to_contain_text("已承诺的市级补贴 10,000.00 元加上以奖代补预留资金 5,000.00 元，"
                                    "超出市级资金预算 10,000.00 元，超出 5,000.00 元")
    uncommitted = page.locator("#lg-budget [data-figure='uncommitted']")
    expect(uncommitted.locator("dd")).to_have_text("-5,000.00 元")
    assert uncommitted.evaluate("e => getComputedStyle(e.querySelector('dd')).color") == "rgb(180, 35, 24)"  # red
    expect(page.locator("#lg-budget [data-figure='city_budget'] dd")).to_have_text("10,000.00 元")
    shot(page, "dashboard-ledger-over-committed")

    # the demo round's own budget: the warning follows its ledger
    page.get_by_label("测评轮次").select_option(ROUND)
    wait_until(page, "document.getElementById('lg-as-of').value === '2018-10-08' && "
                     "!document.getElementById('lg-budget').textContent.includes('10,000.00 元')")
    demo = ledger_report(demo_server)
    assert page.locator("#lg-warning").is_visible() == demo["over_committed"]


# -- the survey on residents' own phones (SPEC §14, issue 16) ---------------------------------------

WECHAT_UA = ("Mozilla/5.0 (Linux; Android 13; V2218A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Version/4.0 Chrome/111.0.5563.116 Mobile Safari/537.36 XWEB/5197 MMWEBSDK/20230805 MMWEBID/2585 "
             "MicroMessenger/8.0.41.2441(0x28002951) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64")
PHONE_ROUND = "phone-2026"
PHONE_COMMUNITY = "heping-901"


@pytest.fixture(scope="module")
def phone_server(tmp_path_factory):
    """A service of its own with an open round (the demo round closed in 2018, and a link expires with its round):
    one community of 120 households and its round, open from yesterday for a month."""
    instance = tmp_path_factory.mktemp("phone") / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORING_")} | {
        "SCORING_INSTANCE_PATH": str(instance)}
    cli = [sys.executable, "-m", "scoring_service.cli"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "seed", "shenyang-2018"], env=env, check=True, capture_output=True)
    out = subprocess.run([*cli, "keys", "create", "--role", "admin", "--name", "管理员"], env=env, check=True,
                         capture_output=True, text=True)
    admin = out.stdout.strip().splitlines()[-1]
    port = free_port()
    server = LiveServer(str(instance / "scoring.sqlite3"), instance, workers=1, port=port,
                        extra_env={"SCORING_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"})
    with server:
        api = f"{server.url}/api/v1"
        headers = {"Authorization": f"Bearer {admin}"}
        community = {"community_id": PHONE_COMMUNITY, "name_zh": "和平区光荣街小区", "district_id": "heping",
                     "households": 120, "renovation_year": 2026, "has_elevator": False, "heating_retrofit": True}
        r = requests.put(f"{api}/communities/{PHONE_COMMUNITY}", json=community, headers=headers)
        assert r.status_code in (200, 201), r.text
        now = datetime.now(timezone.utc).replace(microsecond=0)
        round_ = {"round_id": PHONE_ROUND, "year": 2026, "rubric_id": "shenyang-2018", "title": "2026年老旧小区改造民意验收",
                  "opens_at": (now - timedelta(days=1)).isoformat(), "closes_at": (now + timedelta(days=30)).isoformat(),
                  "quotas": {"heping": 1}, "reward": {"pool_fen": 100_000, "district_share_pct": 40, "top_districts": 1}}
        r = requests.post(f"{api}/rounds", json=round_, headers=headers)
        assert r.status_code == 201, r.text
        app = make_app(str(instance / "scoring.sqlite3"), instance, SECRET_KEY=None)
        yield {"url": server.url, "admin": admin, "store": app.extensions["scoring"].store}


def new_link(phone_server) -> dict:
    r = requests.post(f"{phone_server['url']}/api/v1/rounds/{PHONE_ROUND}/communities/{PHONE_COMMUNITY}/survey-links",
                      headers={"Authorization": f"Bearer {phone_server['admin']}"})
    assert r.status_code == 201, r.text
    return r.json()


def link_info(phone_server, token) -> dict:
    r = requests.get(f"{phone_server['url']}/api/v1/link", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def phone(chromium, phone_server):
    """A 375 x 812 phone with WeChat's user agent; console errors and CSP reports collected."""
    context = chromium.new_context(viewport={"width": 375, "height": 812}, device_scale_factor=2, is_mobile=True,
                                   has_touch=True, user_agent=WECHAT_UA, locale="zh-CN")
    page = context.new_page()
    page.external_requests, page.console_errors = [], []
    page.on("request", lambda r: r.url.startswith(phone_server["url"]) or r.url.startswith("data:")
            or page.external_requests.append(r.url))
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    context.close()


def answer_phone_survey(page, levels) -> int:
    """Answer every screen (levels in turn, None skips) until the survey leaves the questions; the screens shown."""
    screens = 0
    while page.locator("#question.active").count():
        level = levels[screens % len(levels)]
        if level is None:
            page.get_by_role("button", name="不了解，跳过").click()
        else:
            page.get_by_role("button", name=level, exact=True).click()
        screens += 1
    return screens


def stored_online(phone_server, link_id) -> list[dict]:
    return [r for r in phone_server["store"].iter_responses(PHONE_ROUND) if r.get("link_id") == link_id]


def test_phone_survey_as_a_resident(phone, phone_server):
    link = new_link(phone_server)
    assert link["url"] == f"{phone_server['url']}/s/{link['token']}"
    before = link_info(phone_server, link["token"])["participants"]
    phone.goto(link["url"])
    device = {c["name"]: c for c in phone.context.cookies()}["sd"]
    assert device["httpOnly"] and device["sameSite"] == "Lax" and len(device["value"]) >= 16
    phone.locator("#choose.active").wait_for()
    assert phone.locator("#community").inner_text() == "和平区光荣街小区"
    assert phone.locator("#participants").inner_text() == str(before)
    shot(phone, "phone-welcome")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scrolling

    phone.get_by_role("button", name="本小区居民").click()
    phone.get_by_role("button", name="下一步").click()  # no household: refused on the page
    expect(phone.locator("#household-error")).to_contain_text("请填写门牌号")
    phone.get_by_role("textbox", name="门牌号").fill("7栋3单元501室")
    phone.get_by_role("button", name="下一步").click()
    phone.locator("#question.active").wait_for()
    shot(phone, "phone-question")
    box = phone.get_by_role("button", name="非常满意", exact=True).bounding_box()
    assert box["height"] >= 44 and box["width"] >= 300  # large touch targets
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    screens = answer_phone_survey(phone, ["满意"])
    phone.locator("#thanks.active").wait_for()
    applicable = 9 + 1  # no elevator, heating retrofitted
    assert screens == applicable + 1  # one screen per applicable item, plus overall
    wait_until(phone, f"document.getElementById('participants-after').textContent === '{before + 1}'")
    shot(phone, "phone-thanks")
    assert phone.locator("#pending").inner_text() == "0"
    assert link_info(phone_server, link["token"])["participants"] == before + 1

    [stored] = stored_online(phone_server, link["link_id"])
    assert (stored["channel"], stored["respondent_type"], stored["overall"]) == ("online", "resident", 4)
    assert stored["device_id"] == device["value"] and stored["household_hash"]
    assert set(stored["answers"].values()) == {4} and len(stored["answers"]) == applicable
    assert phone.console_errors == [] and phone.external_requests == []


def test_phone_survey_as_the_public_offline_first(phone, phone_server):
    link = new_link(phone_server)
    phone.goto(link["url"])
    phone.locator("#choose.active").wait_for()
    before = int(phone.locator("#participants").inner_text())
    phone.context.set_offline(True)  # the signal drops after the page loaded: the answers wait on the phone
    phone.get_by_role("button", name="社会公众").click()
    screens = answer_phone_survey(phone, ["非常满意", None, "一般"])
    phone.locator("#thanks.active").wait_for()
    assert "联网后将自动提交" in phone.locator("#thanks-text").inner_text()
    assert phone.locator("#pending").inner_text() == "1" and stored_online(phone_server, link["link_id"]) == []
    shot(phone, "phone-offline")
    phone.context.set_offline(False)
    wait_until(phone, "document.getElementById('pending').textContent === '0'")
    [stored] = stored_online(phone_server, link["link_id"])
    assert (stored["channel"], stored["respondent_type"]) == ("online", "public")
    assert not stored.get("household_hash")
    given = [[5, None, 3][i % 3] for i in range(screens)]  # the items' answers, then overall
    assert sorted(stored["answers"].values()) == sorted(v for v in given[:-1] if v is not None)
    assert stored["overall"] == given[-1]
    assert link_info(phone_server, link["token"])["participants"] == before + 1
    assert phone.console_errors == [] and phone.external_requests == []


def test_phone_big_text_and_contrast_persist(phone, phone_server):
    link = new_link(phone_server)
    phone.goto(link["url"])
    phone.locator("#choose.active").wait_for()
    size = "parseFloat(getComputedStyle(document.getElementById('as-public')).fontSize)"
    normal = phone.evaluate(size)
    phone.get_by_role("button", name="大字").click()
    phone.get_by_role("button", name="高对比度").click()
    assert phone.evaluate(size) >= normal * 1.25
    phone.reload()
    phone.locator("#choose.active").wait_for()
    assert phone.evaluate(size) >= normal * 1.25  # still big after a reload
    expect(phone.get_by_role("button", name="大字")).to_have_attribute("aria-pressed", "true")
    expect(phone.get_by_role("button", name="高对比度")).to_have_attribute("aria-pressed", "true")
    assert phone.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(0, 0, 0)"
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    shot(phone, "phone-large-contrast")
    phone.get_by_role("button", name="社会公众").click()
    box = phone.get_by_role("button", name="非常满意", exact=True).bounding_box()
    assert box["height"] >= 60 and box["x"] + box["width"] <= 375
    shot(phone, "phone-large-question")
    phone.get_by_role("button", name="大字").click()
    phone.reload()
    phone.locator("#choose.active").wait_for()
    assert phone.evaluate(size) == normal
    assert phone.console_errors == []


def test_phone_survey_says_what_went_wrong(phone, phone_server):
    link = new_link(phone_server)
    admin = {"Authorization": f"Bearer {phone_server['admin']}"}
    r = requests.delete(f"{phone_server['url']}/api/v1/rounds/{PHONE_ROUND}/communities/{PHONE_COMMUNITY}"
                        f"/survey-links/{link['link_id']}", headers=admin)
    assert r.status_code == 200
    phone.goto(link["url"])  # a revoked link: the service's 401
    phone.locator("#failed.active").wait_for()
    assert "链接已失效" in phone.locator("#failed-text").inner_text()

    # a household number with no number in it: the service's 422 naming household_ref, said on the page
    live = new_link(phone_server)
    phone.goto(live["url"])
    phone.get_by_role("button", name="本小区居民").click()
    phone.get_by_role("textbox", name="门牌号").fill("栋-单元")
    phone.get_by_role("button", name="下一步").click()
    answer_phone_survey(phone, ["满意"])
    phone.locator("#refused.active").wait_for()
    assert phone.locator("#refused-text").inner_text() == "请填写正确的门牌号。"
    assert stored_online(phone_server, live["link_id"]) == []

    # what the service may answer to an upload, each in Chinese on the page
    answers = iter([
        {"status": 429, "headers": {"Retry-After": "1"}, "json": {"code": 429, "message": "Too Many Requests"}},
        {"status": 200, "json": None},  # filled in below with the response's own id
    ])

    def batch(route):
        reply = next(answers, None) or {"status": 409, "json": {"code": 409, "error": "round_closed"}}
        body = reply["json"]
        if body is None:
            sent = route.request.post_data_json["responses"][0]
            body = {"created": 0, "duplicate": 0, "rejected": 1,
                    "results": [{"response_id": sent["response_id"], "status": "conflict",
                                 "error": "public_cap_reached"}]}
        route.fulfill(status=reply["status"], headers=reply.get("headers", {}), json=body)

    phone.route("**/surveys/batch", batch)
    phone.goto(live["url"])
    phone.locator("#choose.active").wait_for()
    phone.get_by_role("button", name="社会公众").click()
    answer_phone_survey(phone, ["满意"])
    expect(phone.locator("#status")).to_contain_text("提交过于频繁，请稍后再试")
    phone.locator("#refused.active").wait_for(timeout=15000)  # retried after Retry-After: the cap is full
    assert "社会公众参与名额已满" in phone.locator("#refused-text").inner_text()
    phone.get_by_role("button", name="返回首页").click()
    phone.get_by_role("button", name="社会公众").click()
    answer_phone_survey(phone, ["一般"])
    phone.locator("#refused.active").wait_for(timeout=15000)
    assert "测评已结束" in phone.locator("#refused-text").inner_text()
    assert phone.locator("#status").inner_text() == ""  # said once, not in a banner above it too
    shot(phone, "phone-round-closed")
    phone.get_by_role("button", name="返回首页").click()
    phone.get_by_role("button", name="社会公众").click()
    phone.wait_for_timeout(3000)  # the kept answer is retried (and refused again) meanwhile
    assert phone.locator("#question.active").count() == 1  # a retry does not take the respondent off the survey
    assert phone.console_errors == [] and phone.external_requests == []


def test_admin_makes_a_survey_link_from_the_dashboard(chromium, phone_server):
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    console_errors = []
    page.on("console", lambda m: m.type == "error" and not m.text.startswith("Failed to load resource")
            and console_errors.append(m.text))
    url = phone_server["url"]
    page.goto(f"{url}/dashboard?round={PHONE_ROUND}")
    page.get_by_label("访问密钥").fill(phone_server["admin"])
    page.get_by_role("button", name="保存").click()
    row = page.locator(f"#community-table tbody tr[data-community='{PHONE_COMMUNITY}']")
    row.wait_for()
    expect(page.locator("#community-actions-col")).to_be_visible()
    row.get_by_role("button", name="生成链接").click()
    page.locator("#link-dialog[open]").wait_for()
    link_url = page.locator("#link-url").input_value()
    assert link_url.startswith(f"{url}/s/l_")
    assert "和平区光荣街小区" in page.locator("#link-context").inner_text()
    token = link_url.rsplit("/", 1)[1]
    assert link_info(phone_server, token)["community_id"] == PHONE_COMMUNITY  # a working link
    listed = requests.get(f"{url}/api/v1/rounds/{PHONE_ROUND}/communities/{PHONE_COMMUNITY}/survey-links",
                          headers={"Authorization": f"Bearer {phone_server['admin']}"}).json()["items"]
    assert token.split(".")[0] in [item["link_id"] for item in listed]
    shot(page, "dashboard-survey-link")
    with page.expect_download() as download:
        page.get_by_role("button", name="下载海报 PDF").click()
    assert download.value.suggested_filename.endswith(".pdf")
    with open(download.value.path(), "rb") as fh:
        assert fh.read(5) == b"%PDF-"
    page.get_by_role("button", name="关闭").click()
    assert page.locator("#link-dialog[open]").count() == 0
    assert console_errors == []
    context.close()


def test_survey_link_refusal_reads_in_chinese(page, demo_server):
    # the demo's aftercare round is open but its closing time (September 2019) has passed by the server's
    # clock, so the service refuses a link (409 round_closed); the page once showed its English message
    sign_in(page, demo_server["url"], demo_server["tokens"]["admin"])
    expect(page.get_by_label("测评轮次")).to_have_value(KIOSK_ROUND)
    row = page.locator("#community-table tbody tr[data-community='heping-001']")
    row.get_by_role("button", name="生成链接").click()
    name = row.locator("td").nth(2).inner_text()
    expect(page.locator("#results-message")).to_have_text(
        f"为“{name}”生成链接失败：本轮测评已截止（截止时间已过），新链接会立即失效，不能再生成。")
    assert page.locator("#link-dialog[open]").count() == 0


# -- 整改台账 (SPEC §13, §16; issue 15 item 5) ----------------------------------------------------

RECTIFICATIONS = f"/rounds/{ROUND}/rectifications"
RX_STATUS = {"open": "待整改", "submitted": "已提交", "reopened": "复验未通过", "verified": "已复验"}


def rectification_list(demo_server, role="leadership", **query) -> dict:
    r = call(demo_server, role, "GET", RECTIFICATIONS, params=query)
    assert r.status_code == 200, r.text
    return r.json()


def card(page, item_id):
    return page.locator(f"#rx-items li.rx-item[data-item='{item_id}']")


def shown_items(page) -> list[str]:
    return page.locator("#rx-items li.rx-item").evaluate_all("cards => cards.map((c) => c.dataset.item)")


def thumbnails_loaded(page, selector: str) -> bool:
    """Every thumbnail under ``selector`` is shown from a blob: URL and decoded (naturalWidth > 0)."""
    return page.locator(selector).evaluate(
        "(box) => { const imgs = Array.from(box.querySelectorAll('img')); return imgs.length > 0 && "
        "imgs.every((i) => i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:')); }")


def open_rectification_tab(page):
    page.get_by_role("tab", name="整改台账").click()
    expect(page.get_by_role("tab", name="整改台账")).to_have_attribute("aria-selected", "true")
    page.locator("#rx-items li.rx-item").first.wait_for()


def test_rectification_tab_for_leadership(page, demo_server):
    console_errors = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    sign_in(page, demo_server["url"], demo_server["tokens"]["leadership"])
    expect(page.get_by_label("测评轮次")).to_have_value(KIOSK_ROUND)
    open_rectification_tab(page)  # an aftercare round opens no items: the tab moves to the 2018 round
    expect(page.get_by_label("测评轮次")).to_have_value(ROUND)
    expect(page.locator("#round-note")).to_contain_text("已切换")
    api = rectification_list(demo_server)
    assert page.locator("#rx-as-of").input_value() == api["as_of"] == "2018-10-08"
    assert shown_items(page) == [i["id"] for i in api["items"]]  # every item, in the list's order

    # the counts per district, as the API counts them
    rows = page.locator("#rx-district-table tbody tr")
    assert rows.count() == len(api["districts"])
    for d in api["districts"]:
        cells = page.locator(f"#rx-district-table tr[data-district='{d['district_id']}'] td").all_inner_texts()
        median = d["median_days_to_verification"]
        assert cells == [str(d[k]) for k in ("open", "submitted", "reopened", "verified", "overdue")] + [
            "—" if median is None else f"{median:g}"], d

    # an item: the check's text beside its photo (thumbnail loaded through the key), points, severity, dates
    first = api["items"][0]
    box = card(page, first["id"])
    assert box.locator("[data-col=check]").inner_text() == first["check_text_zh"]
    assert box.locator("[data-col=points]").inner_text() == f"得分 {first['points']:g} / {first['max_points']:g} 分"
    assert box.locator("[data-col=status]").inner_text() == RX_STATUS[first["status"]]
    assert box.locator("[data-col=opened_on]").inner_text() == f"发现 {first['opened_on']}"
    assert box.locator("[data-col=due_on]").inner_text() == f"整改期限 {first['due_on']}"
    wait_until(page, f"document.querySelector(\"li[data-item='{first['id']}'] [data-col=evidence] img\")"
               "?.naturalWidth > 0")
    assert thumbnails_loaded(page, f"li[data-item='{first['id']}'] [data-col=evidence]")

    # a verified item: the district's answer with its photos and the agency's re-inspection (复验)
    verified = next(i for i in api["items"] if i["status"] == "verified")
    box = card(page, verified["id"])
    box.scroll_into_view_if_needed()
    v = verified["verifying"]
    agencies = {a["agency_id"]: a["name"] for a in call(demo_server, "leadership", "GET", "/agencies").json()["items"]}
    assert box.locator("[data-col=verifying] .rx-verified-by").inner_text() == (
        f"复验：{agencies[v['agency_id']]}，{v['on']}，第 {v['version']} 版，得分 {v['points']:g} 分")
    answer = verified["responses"][0]
    assert f"{answer['fixed_on']} 整改反馈：{answer['note']}" in box.locator(".rx-responses").inner_text()
    wait_until(page, f"Array.from(document.querySelectorAll(\"li[data-item='{verified['id']}'] img\"))"
               ".every((i) => i.naturalWidth > 0)")
    assert thumbnails_loaded(page, f"li[data-item='{verified['id']}'] .rx-responses")
    assert thumbnails_loaded(page, f"li[data-item='{verified['id']}'] [data-col=verifying]")
    assert box.get_by_role("button", name="整改反馈").count() == 0  # leadership reads only

    # overdue in red, with the days past the due date
    late = [i for i in api["items"] if i["overdue"]]
    assert late and page.locator("#rx-items li.overdue").count() == len(late)
    box = card(page, late[0]["id"])
    days = (datetime.fromisoformat(api["as_of"]) - datetime.fromisoformat(late[0]["due_on"])).days
    assert box.locator("[data-col=overdue]").inner_text() == f"逾期 {days} 天"
    assert box.locator("[data-col=overdue]").evaluate("e => getComputedStyle(e).color") == "rgb(180, 35, 24)"
    assert card(page, verified["id"]).locator("[data-col=overdue]").count() == 0

    # the whole photo opens in a dialog, fetched with the key too
    card(page, verified["id"]).locator(".rx-responses button.thumb").first.click()
    expect(page.locator("#rx-viewer")).to_be_visible()
    wait_until(page, "document.getElementById('rx-viewer-img').naturalWidth > 0")
    assert page.locator("#rx-viewer-img").evaluate("i => [i.naturalWidth, i.naturalHeight]") == [480, 360]
    page.get_by_role("button", name="关闭").click()
    shot(page, "dashboard-rectification")

    # filters: status, district, 仅看逾期 (and together), as the API filters
    panel = page.locator("#panel-rectification")
    panel.get_by_label("整改状态").select_option(label="已复验")
    expected = [i["id"] for i in rectification_list(demo_server, status="verified")["items"]]
    wait_until(page, f"document.querySelectorAll('#rx-items li.rx-item').length === {len(expected)}")
    assert shown_items(page) == expected and len(expected) < len(api["items"])
    assert set(page.locator("#rx-items [data-col=status]").all_inner_texts()) == {"已复验"}
    panel.get_by_label("整改状态").select_option(label="全部")
    panel.get_by_label("所在区").select_option(label="大东区")
    expected = [i["id"] for i in rectification_list(demo_server, district_id="dadong")["items"]]
    wait_until(page, f"document.querySelectorAll('#rx-items li.rx-item').length === {len(expected)}")
    assert shown_items(page) == expected
    assert set(page.locator("#rx-items .rx-district").all_inner_texts()) == {"大东区"}
    panel.get_by_label("所在区").select_option(label="全部")
    panel.get_by_label("仅看逾期").check()
    expected = [i["id"] for i in rectification_list(demo_server, overdue="true")["items"]]
    wait_until(page, f"document.querySelectorAll('#rx-items li.rx-item').length === {len(expected)}")
    assert shown_items(page) == expected == [i["id"] for i in late]
    panel.get_by_label("所在区").select_option(label="和平区")
    expected = [i["id"] for i in rectification_list(demo_server, overdue="true", district_id="heping")["items"]]
    wait_until(page, f"document.querySelectorAll('#rx-items li.rx-item').length === {len(expected)}")
    assert shown_items(page) == expected and 0 < len(expected) < len(late)

    assert page.external_requests == []
    assert [m for m in console_errors if not m.startswith("Failed to load resource")] == []


def small_jpeg(text: str) -> bytes:
    from io import BytesIO

    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 480), (70, 140, 90))
    ImageDraw.Draw(image).rectangle((80, 120, 560, 400), fill=(236, 228, 214))
    ImageDraw.Draw(image).text((100, 140), text, fill=(0, 0, 0))
    out = BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_district_key_answers_a_rectification_item_with_a_photo(page, demo_server):
    import hashlib

    console_errors = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    sign_in(page, demo_server["url"], demo_server["tokens"]["district"])
    expect(page.get_by_role("tab", name="进度督办")).to_have_attribute("aria-selected", "true")
    page.get_by_label("测评轮次").select_option(ROUND)
    open_rectification_tab(page)
    expect(page.locator("#rx-scope")).to_have_text("本区：和平区")
    expect(page.locator("#rx-district")).to_be_hidden()
    api = rectification_list(demo_server, "district")
    assert shown_items(page) == [i["id"] for i in api["items"]] and {i["district_id"] for i in api["items"]} == {"heping"}
    # an item not yet answered; verified items take no answer
    item = next(i for i in api["items"] if i["status"] == "open")
    verified = next(i for i in api["items"] if i["status"] == "verified")
    assert card(page, verified["id"]).get_by_role("button", name="整改反馈").count() == 0

    box = card(page, item["id"])
    box.get_by_role("button", name="整改反馈").click()
    dialog = page.locator("#rx-dialog")
    expect(dialog).to_be_visible()
    photos = dialog.get_by_label("整改后照片")
    assert (photos.get_attribute("accept"), photos.get_attribute("capture")) == ("image/*", "environment")
    assert photos.get_attribute("type") == "file"
    dialog.get_by_label("整改说明").fill("路灯已全部更换并通电")
    dialog.get_by_role("button", name="提交").click()
    expect(page.locator("#rx-form-error")).to_contain_text("请至少选择一张整改后的照片")
    jpeg = small_jpeg("fixed")
    photos.set_input_files(files=[{"name": "fixed.jpg", "mimeType": "image/jpeg", "buffer": jpeg}])
    dialog.get_by_label("整改完成日期").fill("2018-10-06")

    # the first answer is lost on the way; the retry sends the same response id, recorded once
    posted = []

    def flaky(route):
        posted.append(route.request.post_data_json)
        if len(posted) == 1:
            route.abort()
        else:
            route.continue_()

    page.route("**/rectifications/*/responses", flaky)
    dialog.get_by_role("button", name="提交").click()
    expect(page.locator("#rx-form-error")).to_contain_text("网络连接失败")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="提交").click()
    expect(dialog).to_be_hidden()
    assert len(posted) == 2 and posted[0] == posted[1]  # the same id and content
    sha = hashlib.sha256(jpeg).hexdigest()
    assert posted[1]["evidence"] == [sha] and posted[1]["fixed_on"] == "2018-10-06"
    expect(page.locator("#rx-done")).to_contain_text("已提交")

    # the list refreshed: the item is 已提交 with the answer and its photo
    box = card(page, item["id"])
    expect(box.locator("[data-col=status]")).to_have_text("已提交")
    assert "2018-10-06 整改反馈：路灯已全部更换并通电" in box.locator(".rx-responses").inner_text()
    wait_until(page, f"document.querySelector(\"li[data-item='{item['id']}'] .rx-responses img\")?.naturalWidth > 0")
    assert thumbnails_loaded(page, f"li[data-item='{item['id']}'] .rx-responses")
    after = next(i for i in rectification_list(demo_server, "district")["items"] if i["id"] == item["id"])
    assert after["status"] == "submitted" and len(after["responses"]) == 1
    assert [e["sha256"] for e in after["responses"][0]["evidence"]] == [sha]
    assert after["responses"][0]["response_id"] == posted[0]["response_id"]
    shot(page, "dashboard-rectification-district")
    assert page.external_requests == []
    assert [m for m in console_errors if not m.startswith("Failed to load resource")] == []


FIELD_ERRORS_JS = r"""() => {
  const messages = [[/^Not a valid integer\.$/, () => "必须是整数"],
                    [/^must not be after today \((\d{4}-\d{2}-\d{2}), China time\)$/, (m) => `不能晚于今天（${m[1]}）`]];
  const names = {votes: "表决票数", participants: "参与表决的户数", reached_on: "完成日期"};
  const errors = {reached_on: ["must not be after today (2019-09-20, China time)", "Unknown field."],
                  votes: {participants: ["Not a valid integer."], extra: ["Not a valid integer."]}};
  const words = window.Dashboard.fieldErrors;
  return [words({errors}, {names, messages, nested: true}), words({errors}, {names, messages}),
          words({errors: {}, message: "Not a valid integer."}, {names, messages}), words({message: "as written"})];
}"""


def test_service_refusals_read_in_chinese_beside_the_forms(page, demo_server):
    """One helper, Dashboard.fieldErrors, words the service's 422s beside the supervision, ledger and
    rectification forms (the first two are seen in their own tests): its rules, then the rectification form."""
    sign_in(page, demo_server["url"], demo_server["tokens"]["district"])
    page.get_by_label("测评轮次").select_option(ROUND)
    open_rectification_tab(page)
    assert page.evaluate(FIELD_ERRORS_JS) == [
        # nested (the milestone form): a nested field by its own name, else "parent.field"
        "完成日期：不能晚于今天（2019-09-20）；完成日期：Unknown field.；参与表决的户数：必须是整数；表决票数.extra：必须是整数",
        # flat (the ledger and rectification forms): a value that is not a list as JSON
        '完成日期：不能晚于今天（2019-09-20）；完成日期：Unknown field.；'
        '表决票数：{"participants":["Not a valid integer."],"extra":["Not a valid integer."]}',
        "必须是整数",  # no field named: the message itself
        "as written",  # no pattern matches: as the service wrote it
    ]

    # the rectification form shows a 422 through it (the service's answer stubbed: nothing is stored)
    item = next(i for i in rectification_list(demo_server, "district")["items"] if i["status"] == "open")
    refused = {"code": 422, "status": "Unprocessable Entity", "message": "Unprocessable Entity",
               "errors": {"fixed_on": [f"must not be before the item opened ({item['opened_on']})"],
                          "note": ["Longer than maximum length 2000."]}}
    page.route("**/api/v1/attachments", lambda route: route.fulfill(status=201, json={"sha256": "0" * 64}))
    page.route("**/rectifications/*/responses", lambda route: route.fulfill(status=422, json=refused))
    card(page, item["id"]).get_by_role("button", name="整改反馈").click()
    dialog = page.locator("#rx-dialog")
    dialog.get_by_label("整改说明").fill("路灯已全部更换并通电")
    dialog.get_by_label("整改后照片").set_input_files(
        files=[{"name": "fixed.jpg", "mimeType": "image/jpeg", "buffer": small_jpeg("refused")}])
    dialog.get_by_role("button", name="提交").click()
    expect(page.locator("#rx-form-error")).to_have_text(
        f"未能提交：整改完成日期：不能早于发现问题的日期（{item['opened_on']}）；整改说明：不能超过 2000 个字。")
    expect(dialog).to_be_visible()
    assert page.external_requests == []
