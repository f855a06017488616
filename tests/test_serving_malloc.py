"""The workers' allocator settings (ops.server.tune_malloc, gunicorn's ``on_starting`` hook).

Run in fresh interpreters: glibc's parameters are per process and cannot be reset.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, json, os, sys
from scoring_service.ops.server import gunicorn_settings

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Mallinfo2
accepted = gunicorn_settings()["on_starting"](None) if sys.argv[1] == "tuned" else {}
big = bytearray(4_000_000)  # mapped on its own (over any threshold); freeing it raises glibc's default one
del big
report = bytearray(1_000_000)  # a report body after it
print(json.dumps({"accepted": accepted, "mapped": mallinfo2().hblkhd}))
"""


def probe(mode: str, env: dict | None = None) -> dict:
    import os

    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **(env or {})})
    return json.loads(out.stdout.strip().splitlines()[-1])


def glibc() -> bool:
    import platform

    return platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc(), reason="glibc's allocator parameters")
def test_workers_map_large_blocks_on_their_own_after_a_larger_one_was_freed():
    """Without the settings glibc raises its mmap threshold to the 4 MB block freed, and the next 1 MB
    body comes from the heap; with them it is mapped on its own (and goes back to the system when freed)."""
    untuned, tuned = probe("plain"), probe("tuned")
    assert untuned["mapped"] < 1_000_000
    assert tuned["mapped"] >= 1_000_000
    assert tuned["accepted"] == {"MALLOC_MMAP_THRESHOLD_": 131072, "MALLOC_TRIM_THRESHOLD_": 131072,
                                 "MALLOC_ARENA_MAX": 2}


@pytest.mark.skipif(not glibc(), reason="glibc's allocator parameters")
def test_a_parameter_the_environment_sets_is_left_to_it():
    tuned = probe("tuned", {"MALLOC_ARENA_MAX": "4"})
    assert "MALLOC_ARENA_MAX" not in tuned["accepted"]
    assert set(tuned["accepted"]) == {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}


def test_a_worker_imports_openpyxl_only_when_a_workbook_is_asked_for(tmp_path):
    """openpyxl costs every worker some 8 MB at import; workbooks are a rare download."""
    import os

    code = ("import sys; from scoring_service import create_app; "
            f"create_app({{'INSTANCE_PATH': {str(tmp_path)!r}, 'SECRET_KEY': 'x'}}); "
            "before = 'openpyxl' in sys.modules; "
            "from scoring_service.reports.exports import to_xlsx; data = to_xlsx('t', ['a'], [['=1']]); "
            "print(before, 'openpyxl' in sys.modules, data[:2] == b'PK')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "SCORING_SECRET_KEY": "x"})
    assert out.stdout.split() == ["False", "True", "True"]
