"""The README's curl walk-through works as written, against gunicorn serving the demo rounds (2018 published,
the 2019 aftercare round open)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .live_server import LiveServer

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## API walk-through", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(not any(Path(p, "curl").exists() for p in os.environ["PATH"].split(":")), reason="no curl")
def test_readme_walkthrough(tmp_path):
    instance = tmp_path / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCORING_")} | {
        "SCORING_INSTANCE_PATH": str(instance)}
    cli = [sys.executable, "-m", "scoring_service.cli"]
    subprocess.run([*cli, "init"], env=env, check=True, capture_output=True)
    subprocess.run([*cli, "seed", "shenyang-2018", "--demo"], env=env, check=True, capture_output=True)
    admin = subprocess.run([*cli, "keys", "create", "--role", "admin", "--name", "readme"], env=env, check=True,
                           capture_output=True, text=True).stdout.strip().splitlines()[-1]
    server = LiveServer(str(instance / "scoring.sqlite3"), instance, workers=2,
                        extra_env={"SCORING_SECRET_KEY": (instance / "secret_key").read_text()})
    with server:
        result = subprocess.run(["bash", "-e", "-c", walkthrough()], cwd=tmp_path, capture_output=True, text=True,
                                env={**os.environ, "BASE": server.url, "ADMIN": admin}, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    assert "201" in lines and "200" in lines
    assert lines.index("201") < lines.index("200")
    assert (tmp_path / "rankings.csv").read_bytes().startswith("\ufeff排名".encode())
    assert (tmp_path / "districts.xlsx").stat().st_size > 1000
    assert (tmp_path / "supervision.pdf").read_bytes().startswith(b"%PDF")  # the 督办通报
    assert '"changed_reason":"以竣工验收备案日期为准"' in result.stdout  # the correction, with its reason
    assert '"status":"published"' in result.stdout  # the publish call
    # the aftercare round (SPEC §15): the score with its 2018 baseline, the 前治后乱 list as the README tells it
    assert re.search(r'^\{"baseline":\d+\.\d+,"change":-?\d', result.stdout, re.M)
    listed = re.search(r'^\{"communities":\[\{"baseline":\d+\.\d+,"baseline_round_id":"shenyang-2018",'
                       r'"change":-(\d+\.\d+),"community_id":"sujiatun-002"', result.stdout, re.M)
    assert listed and float(listed.group(1)) >= 10  # 南湖新村3期 fell most
    assert '"fallen_items":[{' in result.stdout
    assert '{"items":[{"grade_counts":' in result.stdout  # the district's history
    assert result.stdout.count('{"districts":[') == 2  # read with a key, then without one
    assert re.search(r"^[0-9a-f]{64}  -$", result.stdout, re.M)


def test_the_rectification_answer_carries_the_districts_own_photo():
    """Before: the README's district answered an item with $PHOTO, the agency's upload of the defect, which the
    district may not name until an inspection of its district does (422 'no attachment this key may read'), and
    which is not a photo of the fix anyway."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = text.split("**Rectification items", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    answer = re.search(r'"evidence": \["\'\$(\w+)\'"\]', snippet)
    assert answer, snippet
    upload = re.search(rf'^{answer.group(1)}=\$\(curl -sf -X POST "\$BASE/attachments" -H "\$\(auth \$(\w+)\)"',
                       snippet, re.M)
    assert upload and upload.group(1) == "DISTRICT", snippet


def test_every_setting_the_readme_and_deploy_files_name_is_read_by_the_service():
    """A SCORING_* variable in the README or deploy/ that no code reads would be set by an operator for nothing."""
    from scoring_service.config import Config

    named = set(re.findall(r"SCORING_([A-Z][A-Z_]*[A-Z])", "".join(
        p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "deploy").rglob("*"))]
        if p.is_file())))
    code = "".join(p.read_text(encoding="utf-8") for p in [*(ROOT / "scoring_service").rglob("*.py"),
                                                            ROOT / "tests" / "conftest.py"])
    unread = {name for name in named if not hasattr(Config, name) and f'"SCORING_{name}"' not in code
              and f"'SCORING_{name}'" not in code}
    assert not unread, unread
