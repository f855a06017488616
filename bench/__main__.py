"""Run the benchmarks and write ``bench/RESULTS.md``.

    python -m bench            # everything (national size takes a few minutes to generate)
    python -m bench --quick    # smaller national round, shorter load phases

Every figure is reported as a ratio against a baseline measured in the same
run, because the machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import post_load  # noqa: E402
from bench.synthetic import ROUND_ID, make_round  # noqa: E402
from tests.live_server import LiveServer  # noqa: E402  (the tests' gunicorn helper)
from scoring_service.domain.rounds import covered_years  # noqa: E402
from scoring_service.domain.rubric_schema import load_rubric_file  # noqa: E402

RUBRIC = load_rubric_file(ROOT / "rubrics" / "shenyang-2018.json")
#: the demo's open round (seed --demo publishes shenyang-2018 and opens the 2019 aftercare round over the same
#: 120 communities), where surveys are still taken
DEMO_ROUND = "shenyang-2019-aftercare"
DEMO_RUBRIC = load_rubric_file(ROOT / "rubrics" / "shenyang-aftercare.json")
PY = sys.executable


def log(*args):
    print(*args, flush=True)


def start_server(kind: str, env: dict, workers: int = 2) -> LiveServer:
    """The service (``env`` of an instance) or the bare baseline under the same gunicorn settings, ready.

    Both log at INFO, as production does: the service its access log, the baseline only ``/readyz``.
    """
    instance = Path(env["SCORING_INSTANCE_PATH"])
    if kind == "bare":
        return LiveServer(None, instance / "bare-baseline", workers, command=("-m", "bench.serve")).start()
    return LiveServer(env.get("SCORING_DATABASE_URL"), instance, workers, extra_env=env).start()


def cli(env, *args) -> str:
    return subprocess.run([PY, "-m", "scoring_service.cli", *args], env={**os.environ, **env}, check=True,
                          capture_output=True, text=True, cwd=ROOT).stdout


def demo_instance(base: Path, database_url: str | None = None) -> dict:
    instance = base / "instance"
    env = {"SCORING_INSTANCE_PATH": str(instance), "SCORING_SECRET_KEY": "bench-secret"}
    if database_url:
        env["SCORING_DATABASE_URL"] = database_url
    cli(env, "init")
    cli(env, "seed", "shenyang-2018", "--demo")
    env["KIOSK"] = cli(env, "keys", "create", "--role", "kiosk", "--name", "bench", "--community",
                       "heping-001").strip().splitlines()[-1]
    env["ADMIN"] = cli(env, "keys", "create", "--role", "admin", "--name", "bench").strip().splitlines()[-1]
    return env


# -- 1. single-survey POST throughput ---------------------------------------------------

def bench_post(env: dict, seconds: float) -> dict:
    """wrk (bench/wrk.py: one client thread, the same connections and duration for both sides), each
    request a new response_id and household."""
    from bench import wrk

    load = os.getloadavg()[0]
    bare = start_server("bare", env)
    base = wrk.run(bare.url, "/echo", seconds=seconds)
    bare.stop()
    scoring = start_server("scoring", env)
    target = wrk.run(scoring.url, f"/api/v1/rounds/{DEMO_ROUND}/surveys", token=env["KIOSK"], seconds=seconds)
    scoring.stop()
    return {"bare_rps": base["rps"], "scoring_rps": target["rps"], "ratio": target["rps"] / base["rps"],
            "scoring_p50_ms": target["p50_ms"], "bare_p50_ms": base["p50_ms"],
            "errors": target["errors"] + base["errors"], "client": f"wrk -t{wrk.THREADS} -c{wrk.CONNECTIONS}",
            "load_before_after": [load, os.getloadavg()[0]]}


# -- 2. batch ingest ---------------------------------------------------------------------

def batch_payload(n: int = 1000) -> dict:
    rng = np.random.default_rng(int(time.time()))
    codes = DEMO_RUBRIC.item_codes
    return {"responses": [
        {"response_id": str(uuid.uuid4()), "community_id": "heping-001", "submitted_at": "2019-09-20T10:00:00+08:00",
         "answers": {c: int(rng.integers(1, 6)) for c in codes}, "overall": int(rng.integers(1, 6)),
         "channel": "kiosk"} for _ in range(n)]}


def bench_batch(env: dict, batches: int, seconds: float | None = None, communities: int = 1) -> dict:
    """Batches of 1000 new responses from wrk against validation alone. ``communities`` > 1: each batch goes
    to the next of that many of the round's communities in turn (as many kiosks uploading), posted with
    the admin key (a kiosk key is bound to one community); otherwise all to heping-001 with its kiosk key."""
    from scoring_service.api.surveys import BatchSchema, SurveySchema

    payloads = [batch_payload() for _ in range(batches)]
    # baseline: marshmallow validation alone of the same payloads
    schema, envelope = SurveySchema(), BatchSchema()
    started = time.perf_counter()
    for payload in payloads:
        for item in envelope.load(payload)["responses"]:
            schema.load(item)
    validation = batches * 1000 / (time.perf_counter() - started)

    from bench import wrk
    from scoring_service.store import open_store

    instance = Path(env["SCORING_INSTANCE_PATH"])
    store = open_store(env.get("SCORING_DATABASE_URL") or str(instance / "scoring.sqlite3"))
    before = store.count_responses(DEMO_ROUND)
    targets: tuple[str, ...] = ("heping-001",)
    if communities > 1:
        round_ = store.get_round(DEMO_ROUND)
        targets = tuple(c["community_id"] for c in store.list_communities(
            renovation_years=list(covered_years(round_)))[:communities])
    server = start_server("scoring", env)
    # wrk: batches of 1000 new responses (ids and households unique), the POST figure's connections
    load = wrk.run(server.url, f"/api/v1/rounds/{DEMO_ROUND}/surveys/batch",
                   token=env["KIOSK"] if communities == 1 else env["ADMIN"], mode="batch", batch=1000,
                   community=targets, codes=tuple(DEMO_RUBRIC.item_codes), seconds=seconds or max(5.0, batches / 2))
    server.stop()
    stored = store.count_responses(DEMO_ROUND) - before
    store.close()
    # every batch wrk saw answered was stored whole; those still in flight when wrk stopped were stored
    # too but are not counted
    assert load["errors"] == 0 and 1000 * load["ok"] <= stored <= 1000 * (load["ok"] + load["connections"]), (
        load, stored)
    ingest = load["rps"] * 1000
    return {"validation_rps": validation, "ingest_rps": ingest, "ratio": ingest / validation,
            "client": f"wrk -t{load['threads']} -c{load['connections']}", "batches": load["ok"],
            "communities": len(targets)}


# -- 3/4. ranking latency ------------------------------------------------------------------

def ranking_latency(env: dict, round_id: str, repeats: int, also: tuple[str, ...] = ()) -> dict:
    """District ranking through the app: cold (a write just invalidated every cache) and warm."""
    from bench.appclient import leadership_client

    app, client, headers = leadership_client(env)
    store = app.extensions["scoring"].store
    url = f"/api/v1/rounds/{round_id}/rankings/districts"
    assert client.get(url, headers=headers).status_code == 200
    round_ = store.get_round(round_id)
    community = store.list_communities(renovation_years=list(covered_years(round_)))[0]["community_id"]
    codes = app.extensions["scoring"].rubric(round_["rubric_id"]).item_codes
    n_items = len(codes)

    def survey_write():
        """What happens all day during acceptance: one more resident response."""
        store.add_responses(round_id, [{
            "response_id": str(uuid.uuid4()), "round_id": round_id, "community_id": community,
            "respondent_type": "resident", "household_hash": None, "content_hash": "bench",
            "levels": [4] * (n_items + 1), "answers": dict.fromkeys(codes, 4), "overall": 4,
            "submitted_at": round_["opens_at"]}], n_items)

    def reference_write():
        """Rare: an administrator edits reference data (every cache is rebuilt)."""
        store.put_agency({"agency_id": "bench-touch", "name": uuid.uuid4().hex})

    def timed(path):
        started = time.perf_counter()
        assert client.get(path, headers=headers).status_code == 200
        return time.perf_counter() - started

    cold, warm, after_reference = [], [], []
    others: dict[str, list[float]] = {path: [] for path in also}
    for _ in range(repeats):
        survey_write()
        cold.append(timed(url))
        warm.append(timed(url))
        for path in also:  # other score endpoints, each after its own survey write
            survey_write()
            others[path].append(timed(f"/api/v1/rounds/{round_id}/{path}"))
    for _ in range(max(2, repeats // 5)):
        reference_write()
        after_reference.append(timed(url))
    store.close()

    def pct(xs, q):
        return 1000 * float(np.percentile(xs, q))

    result = {"cold_p50_ms": pct(cold, 50), "cold_p99_ms": pct(cold, 99), "warm_p50_ms": pct(warm, 50),
              "after_reference_write_p50_ms": pct(after_reference, 50)}
    result.update({f"{path} cold_p99_ms": pct(xs, 99) for path, xs in others.items()})
    return result


def national_instance(base: Path, communities: int, responses: int) -> dict:
    from scoring_service.store.sqlite import SQLiteStore

    instance = base / f"national-{responses}"
    instance.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(instance / "scoring.sqlite3")
    store.init()
    started = time.perf_counter()
    make_round(store, RUBRIC, communities, responses, log=lambda *a: None)
    log(f"    generated {communities} communities / {responses} responses in {time.perf_counter() - started:.0f} s")
    store.close()
    return {"SCORING_INSTANCE_PATH": str(instance), "SCORING_SECRET_KEY": "bench-secret"}


# -- 5. peak memory of one worker ------------------------------------------------------------

#: what the memory figure's worker serves: the rankings, the rewards and one community's score
SCORE_PATHS = ("rankings/districts", "rankings/communities", "rewards", "communities/c000001/score")


def worker_memory(env: dict, round_id: str, paths: tuple[str, ...] = SCORE_PATHS, writes=None) -> dict:
    """VmHWM of the one gunicorn worker that served ``paths`` of the round, each once, in order; with
    ``writes`` (a callable), once more after ``writes()``."""
    admin = None
    from scoring_service import create_app
    from scoring_service.services.keys import new_key

    app = create_app({"INSTANCE_PATH": env["SCORING_INSTANCE_PATH"], "SECRET_KEY": "bench-secret"})
    record, admin = new_key("admin", "bench")
    app.extensions["scoring"].store.create_key(record)
    server = start_server("scoring", env, workers=1)
    headers = {"Authorization": f"Bearer {admin}"}

    def serve():
        for path in paths:
            r = requests.get(f"{server.url}/api/v1/rounds/{round_id}/{path}", headers=headers, timeout=300)
            assert r.status_code == 200, (path, r.status_code)

    serve()
    if writes is not None:
        writes()
        serve()
    pid = server.worker_pids()[0]
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    server.stop()
    return {"peak_mb": peak_kb / 1024}


# -- 6. MongoDB store (FerretDB) -------------------------------------------------------------------

def ferretdb(base: Path):
    launcher = ROOT / "tools" / "ferretdb-launcher" / "bin" / "ferretdb-launcher"
    if not launcher.exists():
        return None, None
    proc = subprocess.Popen([str(launcher), "-dir", str(base / "ferretdb")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return proc, proc.stdout.readline().decode().strip()


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import pymongo

    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "flask": importlib.metadata.version("flask"), "pymongo": pymongo.__version__, "sqlite": sqlite3.sqlite_version,
            "kernel": platform.release()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write RESULTS.md again from the raw numbers it holds (after "
                             "bench/NOTES.md changed)")
    args = parser.parse_args()
    if args.render:
        results = raw_results(ROOT / "bench" / "RESULTS.md")
        write_results(results, results.get("quick", False))
        return
    seconds = 4.0 if args.quick else 10.0
    national = (2000, 300_000) if args.quick else (20_000, 3_000_000)
    results: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="scoring-bench-") as tmp:
        base = Path(tmp)
        log("demo round (SQLite) …")
        demo = demo_instance(base / "demo")
        # the load figures (1, 1b, 2) write tens of thousands of responses from one key within seconds: they
        # get a copy of the demo, so that the figures read afterwards (3, 10, 12) see the demo as seeded, not
        # a round full of kiosk bursts
        shutil.copytree(base / "demo", base / "demo-load")
        loaded = {**demo, "SCORING_INSTANCE_PATH": str(base / "demo-load" / "instance")}
        log("1. single-survey POST vs bare Flask …")
        results["post"] = bench_post(loaded, seconds)
        log(f"   {results['post']}")
        log("1b. where a survey POST's time goes (profiled worker, bare and service again, without fsync) …")
        from bench import postprofile

        results["post_profile"] = postprofile.measure(loaded, seconds)
        log("\n".join(postprofile.table(results["post_profile"])))
        log("2. batch ingest vs validation alone …")
        results["batch"] = bench_batch(loaded, 10 if args.quick else 20)
        log(f"   {results['batch']}")
        log("3. district ranking latency, demo's open round …")
        results["rank_demo"] = ranking_latency(demo, DEMO_ROUND, 30, also=(
            "communities/heping-001/score", "rankings/communities", "rewards"))
        log(f"   {results['rank_demo']}")
        log("12. rectification list of the demo round after one write …")
        from bench import parttwo

        results["rectifications_demo"] = parttwo.measure_demo(demo, base, repeats=30)
        log(f"   {results['rectifications_demo']}")
        log("3/4. national rounds …")
        small = national_instance(base, national[0], national[1] // 10)
        results["rank_small"] = ranking_latency(small, ROUND_ID, 5)
        log(f"   {national[1] // 10}: {results['rank_small']}")
        big = national_instance(base, *national)
        results["rank_national"] = ranking_latency(big, ROUND_ID, 10)
        log(f"   {national[1]}: {results['rank_national']}")
        results["growth"] = results["rank_national"]["cold_p50_ms"] / results["rank_small"]["cold_p50_ms"]
        log("10. anomaly flags after one survey write: demo size, national rounds …")
        from bench import anomalies

        results["anomalies_demo"] = anomalies.anomaly_latency(demo, DEMO_ROUND, total=anomalies.DEMO_RESPONSES)
        results["anomalies_small"] = anomalies.anomaly_latency(small, ROUND_ID)
        results["anomalies_national"] = anomalies.anomaly_latency(big, ROUND_ID)
        log(f"   {results['anomalies_demo']}\n   {results['anomalies_small']}\n   {results['anomalies_national']}")
        log("5. peak memory of one worker at national size …")
        results["memory"] = worker_memory(big, ROUND_ID)
        log(f"   {results['memory']}")
        log("6. MongoDB store on FerretDB …")
        proc, uri = ferretdb(base)
        if proc:
            mongo = demo_instance(base / "mongo", uri.rstrip("/") + "/bench")
            # a batch of 1000 takes FerretDB seconds: a longer window, so that several are answered in it
            # first spread over eight communities (eight kiosks uploading), then all into one community's
            # journal at once (its worst case: writers of other processes ask for the same numbers)
            results["mongo_batch_spread"] = bench_batch(mongo, 5, seconds=30.0, communities=8)
            log(f"   {results['mongo_batch_spread']}")
            results["mongo_batch"] = bench_batch(mongo, 5, seconds=30.0)
            log(f"   {results['mongo_batch']}")
            from bench import mongo as mongo_bench  # 6b and 6c: the ranking at the demo's size and at 10x

            results["mongo_rank"] = mongo_bench.growth(mongo, DEMO_ROUND, ranking_latency)
            proc.stdin.close()
            proc.wait(10)
        log("7, 8, 11. part two at national size: one round with milestones, funding and rectification items; "
            "supervision report, ledger and rectification list after one write, one worker's peak memory …")
        env, results["parttwo_built"] = parttwo.sqlite_instance(base, national[0], national[1] // 10)
        results["parttwo"] = parttwo.measure(env, repeats=20, memory=worker_memory)
        log("9. evidence upload: a 5 MiB JPEG through gunicorn vs writing it with fsync and reading it with Pillow …")
        from bench import attachments

        results["attachments"] = attachments.measure(base / "attachments", repeats=20)
        log(f"   {results['attachments']}")
        results["national_size"] = {"communities": national[0], "responses": national[1]}
        results["quick"] = args.quick
    write_results(results, args.quick)


def raw_results(path: Path) -> dict:
    """The raw numbers of the run that wrote ``path`` (its JSON block)."""
    text = path.read_text(encoding="utf-8")
    start = text.index("```json\n") + len("```json\n")
    return json.loads(text[start:text.index("\n```", start)])


def write_results(r: dict, quick: bool) -> None:
    m = r["machine"]
    n = r["national_size"]
    target = {"post": 0.30, "batch": 0.60, "demo": 20.0, "national": 500.0, "growth": 1.3, "memory": 300.0}

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    rows = [
        (f"1. single-survey POST throughput / bare Flask endpoint (same gunicorn, 2 workers; load from "
         f"`{r['post'].get('client', 'Python processes')}`, a new response_id and household each request)",
         f"{r['post']['scoring_rps']:.0f} / {r['post']['bare_rps']:.0f} req/s = **{r['post']['ratio']:.2f}**",
         "≥ 0.30", verdict(r["post"]["ratio"] >= target["post"])),
        ("2. batch ingest (1000/request) / marshmallow validation alone",
         f"{r['batch']['ingest_rps']:.0f} / {r['batch']['validation_rps']:.0f} responses/s = "
         f"**{r['batch']['ratio']:.2f}**", "≥ 0.60", verdict(r["batch"]["ratio"] >= target["batch"])),
        ("3a. district ranking, demo's open round (2019 aftercare, 120 communities), after a survey write: p50 / p99",
         f"**{r['rank_demo']['cold_p50_ms']:.1f}** / {r['rank_demo']['cold_p99_ms']:.1f} ms "
         f"(cached: {r['rank_demo']['warm_p50_ms']:.2f} ms; after a reference-data write: "
         f"{r['rank_demo']['after_reference_write_p50_ms']:.1f} ms)", "p50 ≤ 20 ms",
         verdict(r["rank_demo"]["cold_p50_ms"] <= target["demo"])),
        (f"3b. district ranking, national round ({n['communities']} communities, {n['responses']:,} responses), "
         "after a survey write: p50 / p99",
         f"**{r['rank_national']['cold_p50_ms']:.0f}** / {r['rank_national']['cold_p99_ms']:.0f} ms "
         f"(cached: {r['rank_national']['warm_p50_ms']:.2f} ms; after a reference-data write: "
         f"{r['rank_national']['after_reference_write_p50_ms']:.0f} ms)", "p50 ≤ 500 ms",
         verdict(r["rank_national"]["cold_p50_ms"] <= target["national"])),
        (f"4. ranking time at {n['responses']:,} / at {n['responses'] // 10:,} responses (same communities)",
         f"{r['rank_national']['cold_p50_ms']:.0f} / {r['rank_small']['cold_p50_ms']:.0f} ms = "
         f"**{r['growth']:.2f}×**", "≤ 1.3×", verdict(r["growth"] <= target["growth"])),
        ("5. peak memory of one worker at national size (VmHWM)", f"**{r['memory']['peak_mb']:.0f} MB**",
         "≤ 300 MB", verdict(r["memory"]["peak_mb"] <= target["memory"])),
    ]
    if "parttwo" in r:
        from bench.parttwo import figures as parttwo_figures

        rows += parttwo_figures(r["parttwo"], r["parttwo_built"])
    if "rectifications_demo" in r:
        from bench.parttwo import demo_figures

        rows += demo_figures(r["rectifications_demo"])
    if "anomalies_demo" in r:
        from bench.anomalies import demo_figure, growth_figure

        name, measured, target_text, met = demo_figure(r["anomalies_demo"])
        rows.append((f"10a. {name}", measured, target_text, met))
        name, measured, target_text, met = growth_figure(r["anomalies_national"], r["anomalies_small"])
        rows.append((f"10b. {name}", measured, target_text, met))
    if "attachments" in r:
        from bench.attachments import figure as upload_figure

        rows.append(upload_figure(r["attachments"]))
    extra = {k: v for k, v in r["rank_demo"].items() if k.endswith("cold_p99_ms") and k != "cold_p99_ms"}
    if extra:
        rows.append(("3c. other score endpoints, demo's open round, after a survey write: p99",
                     ", ".join(f"`{k.split()[0]}` {v:.1f} ms" for k, v in extra.items()), "≪ 100 ms",
                     verdict(max(extra.values()) < 100)))
    if "mongo_batch_spread" in r:
        spread = r["mongo_batch_spread"]
        rows.append((f"6a. MongoDB store (FerretDB 1.24, SQLite backend): batch ingest / validation alone, each "
                     f"batch to the next of {spread['communities']} communities (as that many kiosks uploading)",
                     f"{spread['ingest_rps']:.0f} / {spread['validation_rps']:.0f} "
                     f"responses/s = **{spread['ratio']:.2f}**", "reported", ""))
    if "mongo_batch" in r:
        rows.append(("6a′. the same, every batch to one community (eight uploads into one community's journal "
                     "at once: its worst case)",
                     f"{r['mongo_batch']['ingest_rps']:.0f} / {r['mongo_batch']['validation_rps']:.0f} "
                     f"responses/s = **{r['mongo_batch']['ratio']:.2f}**", "reported", ""))
    if "mongo_rank" in r:
        from bench.mongo import figures as mongo_figures

        rows += mongo_figures(r["mongo_rank"])
    lines = [
        "# Benchmark results",
        "",
        f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}; Python {m['python']}, "
        f"numpy {m['numpy']}, Flask {m['flask']}, pymongo {m['pymongo']}, SQLite {m['sqlite']}."
        + (" **Quick run** (smaller national round)." if quick else ""),
        "Load comes from separate client processes on loopback; every figure is a ratio against a baseline "
        "measured in the same run. Regenerate with `make bench`.",
        "",
        "| figure | measured | target | |",
        "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
    ]
    if "post_profile" in r:
        from bench.postprofile import table as post_table

        lines += ["## Where a single-survey POST's time goes (figure 1, profiled in this run)", "",
                  "bench/postprofile.py: the service under the same gunicorn settings and wrk load as figure 1, its "
                  "parts timed in the workers (CPU of their own thread, exclusive of the parts nested in them), "
                  "then runs back to back with the bare endpoint, as served and with fsync off (benchmark only). "
                  "`python -m bench.postprofile` runs it alone.", "",
                  *post_table(r["post_profile"]), ""]
    lines += [
        "Raw numbers:",
        "",
        "```json",
        json.dumps({k: v for k, v in r.items()}, indent=1, ensure_ascii=False),
        "```",
        "",
    ]
    notes = ROOT / "bench" / "NOTES.md"
    if notes.exists():
        lines += [notes.read_text()]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines), encoding="utf-8")
    log("\n".join(lines[:len(rows) + 8]))


if __name__ == "__main__":
    main()
