"""Run the service under gunicorn, as in production (``scoring-service serve``)."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication


class GunicornServer(BaseApplication):
    """gunicorn with the app factory; each worker builds its own app after the fork."""

    def __init__(self, options: dict, app_config: dict | None = None):
        self.options = options
        self.app_config = app_config
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        from . import create_app

        return create_app(self.app_config)


def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 2, **options) -> None:
    """Serve with gunicorn (sync workers; SQLite and MongoDB clients open lazily per worker)."""
    settings = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "max_requests": 20000,
        "max_requests_jitter": 2000,
        "accesslog": None,  # the app logs each request as JSON with its request id
        "errorlog": "-",
        **options,
    }
    GunicornServer(settings).run()
