"""The bare baseline under the service's gunicorn settings: ``python -m bench.serve --port P --workers W``.

Takes the options of ``scoring-service serve``, so ``tests/live_server.py`` starts either.
"""

import argparse

from bench.bare_app import create_bare_app
from scoring_service.ops.server import GunicornServer, gunicorn_settings, prepare_metrics_dir

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    prepare_metrics_dir()
    GunicornServer(gunicorn_settings(args.host, args.port, args.workers), app_factory=create_bare_app).run()
