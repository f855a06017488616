"""Uploading a 5 MiB photo (SPEC §13, issue 15) through the real server, against writing and reading it alone.

    python -m bench.attachments                 # 20 uploads, SQLite, 2 gunicorn workers
    python -m bench.attachments --repeats 50

The photo is a 12-megapixel JPEG (4000 × 3000, a phone camera's) of about 5 MiB. Each upload sends new
bytes (the same photo with a numbered JPEG comment, so the server does all its work every time) as a
multipart form, as the dashboard's file input does, to ``POST /api/v1/attachments`` of the service under
gunicorn (``tests/live_server.py``). The baseline is what any service storing the photo has to do at the
least: write the same bytes to a file in the same folder with fsync, and read them with Pillow
(``Image.open`` + ``load``). Target: upload p50 ≤ 3 × baseline p50. Raw-body uploads are timed too.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.live_server import LiveServer  # noqa: E402  (the tests' gunicorn helper)

TARGET_RATIO = 3.0
MIB = 1024 * 1024


def log(*args):
    print(*args, flush=True)


def photo(target_bytes: int = 5 * MIB, seed: int = 15) -> bytes:
    """A 4000 × 3000 JPEG (gradients and sensor-like noise) of at least ``target_bytes``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = 3000, 4000
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], axis=-1).astype(np.int16)
    for amplitude in range(24, 80, 2):
        noise = rng.integers(-amplitude, amplitude + 1, size=base.shape, dtype=np.int16)
        out = io.BytesIO()
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
        if out.tell() >= target_bytes:
            return out.getvalue()
    raise RuntimeError("could not make a photo that large")


def numbered(data: bytes, n: int) -> bytes:
    """The same JPEG with a comment segment holding ``n`` after its start marker: new bytes, same pixels."""
    comment = f"bench upload {n}".encode()
    return data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]


def baseline(data: bytes, folder: Path, repeats: int) -> list[float]:
    """Seconds to write ``data`` to a new file with fsync and read it with Pillow (open + load)."""
    from PIL import Image

    times = []
    for n in range(repeats):
        started = time.perf_counter()
        path = folder / f"baseline-{n}.jpg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        times.append(time.perf_counter() - started)
        path.unlink()
    return times


def instance(base: Path) -> tuple[dict, str]:
    """An initialised SQLite instance and an agency key's token."""
    from scoring_service import create_app
    from scoring_service.services.keys import new_key

    folder = base / "instance"
    env = {"SCORING_INSTANCE_PATH": str(folder), "SCORING_SECRET_KEY": "bench-secret"}
    app = create_app({"INSTANCE_PATH": str(folder), "SECRET_KEY": "bench-secret", "RATELIMIT_ENABLED": False,
                      "LOG_LEVEL": "WARNING"})
    store = app.extensions["scoring"].store
    store.put_agency({"agency_id": "bench-agency", "name": "测评机构"})
    record, token = new_key("agency", "bench", agency_id="bench-agency")
    store.create_key(record)
    store.close()
    return env, token


def upload_latency(env: dict, token: str, data: bytes, repeats: int, workers: int = 2) -> dict:
    """Upload p50/p99 through gunicorn (multipart and raw), each upload new bytes, beside the baseline."""
    folder = Path(env["SCORING_INSTANCE_PATH"])
    headers = {"Authorization": f"Bearer {token}"}
    multipart, raw = [], []
    with LiveServer(None, folder, workers, extra_env=env) as server:
        session = requests.Session()
        url = f"{server.url}/api/v1/attachments"
        warm = session.post(url, headers=headers, timeout=60,
                            files={"file": ("warm.jpg", numbered(data, -1), "image/jpeg")})
        assert warm.status_code == 201, warm.text[:300]
        for n in range(repeats):
            body = numbered(data, n)
            started = time.perf_counter()
            r = session.post(url, headers=headers, files={"file": (f"photo-{n}.jpg", body, "image/jpeg")}, timeout=60)
            multipart.append(time.perf_counter() - started)
            assert r.status_code == 201, r.text[:300]
            body = numbered(data, repeats + n)
            started = time.perf_counter()
            r = session.post(url, headers={**headers, "Content-Type": "image/jpeg"}, data=body, timeout=60)
            raw.append(time.perf_counter() - started)
            assert r.status_code == 201, r.text[:300]
    # the baseline writes where the service wrote, on the same file system
    base = baseline(data, folder, repeats)

    def ms(xs, q):
        return 1000 * float(np.percentile(xs, q))

    return {"photo_mib": len(data) / MIB, "repeats": repeats,
            "upload_p50_ms": ms(multipart, 50), "upload_p99_ms": ms(multipart, 99),
            "raw_upload_p50_ms": ms(raw, 50), "baseline_p50_ms": ms(base, 50),
            "ratio": statistics.median(multipart) / statistics.median(base)}


def measure(base: Path, repeats: int, workers: int = 2) -> dict:
    log("    making the photo …")
    data = photo()
    env, token = instance(base)
    return upload_latency(env, token, data, repeats, workers)


def figure(result: dict) -> tuple[str, str, str, str]:
    """The figure, what was measured, the target and the verdict (a RESULTS.md table row)."""
    ok = result["ratio"] <= TARGET_RATIO
    return (f"9. upload of a {result['photo_mib']:.1f} MiB JPEG (12 Mpx, multipart, SQLite, 2 workers) / writing "
            "the same bytes with fsync and reading them with Pillow (open + load): p50",
            f"{result['upload_p50_ms']:.0f} / {result['baseline_p50_ms']:.0f} ms = **{result['ratio']:.2f}×** "
            f"(p99 {result['upload_p99_ms']:.0f} ms; raw body {result['raw_upload_p50_ms']:.0f} ms)",
            f"≤ {TARGET_RATIO:g}×", "met" if ok else "**missed**")


def row(result: dict) -> str:
    return "| " + " | ".join(figure(result)) + " |"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scoring-bench-attachments-") as tmp:
        log("attachments: 5 MiB JPEG uploads through gunicorn …")
        result = measure(Path(tmp), args.repeats, args.workers)
        log(row(result))
    print(json.dumps({"attachments": result}, indent=1))


if __name__ == "__main__":
    main()
