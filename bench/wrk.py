"""HTTP load from ``wrk`` (Debian's package, installed by ``make bench``), with unique ids per request.

The POST benchmarks used to send their load from Python processes on the same two cores as the server,
so both the service and the bare baseline partly measured the client. ``wrk`` is a C load generator
(event loop, LuaJIT for the request bodies): the Lua script below makes every request's ``response_id``
(a UUID) and household unique, for the single-survey POST and for batches, and both sides of a ratio
get the same threads, connections and duration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: where ``make wrk`` unpacks Debian's package when it cannot install it (no root)
LOCAL = ROOT / "tools" / "wrk"

#: threads and connections of every wrk run: one client thread (a fifth of a core at the rates here),
#: enough connections to keep both gunicorn workers' threads busy
THREADS = 1
CONNECTIONS = 8

SCRIPT = r"""
-- arguments: path mode(single|batch) batch_size communities(comma separated) item_codes(comma separated) token
-- submitted_at; each request goes to the next of the communities in turn (a batch to one community, as a
-- kiosk's upload)
local counter = 0
local made = 0
local sent = 0

function setup(thread)
  made = made + 1
  thread:set("tid", made)
end

function init(args)
  path, mode, size, token, submitted = args[1], args[2], tonumber(args[3]), args[6], args[7]
  communities = {}
  for c in string.gmatch(args[4], "[^,]+") do communities[#communities + 1] = c end
  codes = {}
  for code in string.gmatch(args[5], "[^,]+") do codes[#codes + 1] = code end
  math.randomseed(os.time() * 1000 + tid * 7919 + math.floor(os.clock() * 1e6))
  -- a random prefix per thread and run, a counter per request: ids never repeat across runs on one database
  prefix = string.format("%08x-%04x-4%03x-%04x-", math.random(0, 0x7fffffff), tid, math.random(0, 0xfff),
                         0x8000 + math.random(0, 0x3fff))
  run = math.random(1, 999999)
  headers = {["Content-Type"] = "application/json"}
  if token ~= nil and token ~= "" then headers["Authorization"] = "Bearer " .. token end
end

local function survey(community)
  counter = counter + 1
  local answers = {}
  for i, code in ipairs(codes) do answers[i] = string.format('"%s":%d', code, math.random(1, 5)) end
  return string.format(
    '{"response_id":"%s%012x","community_id":"%s","submitted_at":"%s",' ..
    '"answers":{%s},"overall":%d,"household_ref":"%d-%d-%d"}',
    prefix, counter, community, submitted, table.concat(answers, ","), math.random(1, 5), tid, run, counter)
end

request = function()
  local body
  sent = sent + 1
  local community = communities[(sent - 1) % #communities + 1]
  if mode == "batch" then
    local items = {}
    for i = 1, size do items[i] = survey(community) end
    body = '{"responses":[' .. table.concat(items, ",") .. ']}'
  else
    body = survey(community)
  end
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def binary() -> tuple[str, dict]:
    """The wrk command and the environment it needs (the unpacked package's libraries)."""
    found = shutil.which("wrk")
    if found:
        return found, dict(os.environ)
    local = LOCAL / "usr" / "bin" / "wrk"
    if local.exists():
        libs = [str(p) for p in (LOCAL / "usr" / "lib").glob("*-linux-gnu")]
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join([*libs, os.environ.get("LD_LIBRARY_PATH", "")])}
        return str(local), env
    raise RuntimeError("wrk not found: run `make wrk` (Debian package wrk)")


def run(url: str, path: str, *, token: str | None = None, seconds: float = 10.0, mode: str = "single",
        batch: int = 1, community: str | tuple[str, ...] = "heping-001", codes: tuple[str, ...] = ("cleaning", "order", "repairs"),
        submitted_at: str = "2019-09-20T10:00:00+08:00", threads: int = THREADS,
        connections: int = CONNECTIONS) -> dict:
    """POSTs to ``url + path`` for ``seconds``: requests/s of successful answers, latency percentiles,
    errors (any non-2xx/3xx answer or socket error is one). Several communities: each request goes to the
    next in turn."""
    communities = ",".join((community,) if isinstance(community, str) else community)
    command, env = binary()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(SCRIPT)
    try:
        out = subprocess.run(
            [command, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
             "-s", script.name, url.rstrip("/") + path, "--", path, mode, str(batch), communities, ",".join(codes),
             token or "", submitted_at],
            env=env, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    finally:
        os.unlink(script.name)
    line = next(x for x in out.splitlines() if x.startswith("WRK_JSON "))
    data = json.loads(line[len("WRK_JSON "):])
    errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
    ok = data["requests"] - data["status"]
    seconds_run = data["duration_us"] / 1e6
    return {"rps": ok / seconds_run, "ok": ok, "errors": errors, "seconds": seconds_run,
            "p50_ms": data["p50_us"] / 1000, "p90_ms": data["p90_us"] / 1000, "p99_ms": data["p99_us"] / 1000,
            "threads": threads, "connections": connections, "batch": batch}
