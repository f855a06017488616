"""Start gunicorn for a benchmark: the scoring service or the bare baseline, same settings."""

import sys

from scoring_service.ops.server import GunicornServer, gunicorn_settings, prepare_metrics_dir

if __name__ == "__main__":
    kind, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    prepare_metrics_dir()
    if kind == "bare":
        from bench.bare_app import create_bare_app

        GunicornServer(gunicorn_settings("127.0.0.1", port, workers), app_factory=create_bare_app).run()
    else:
        GunicornServer(gunicorn_settings("127.0.0.1", port, workers)).run()
