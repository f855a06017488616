"""The baseline: a bare Flask JSON endpoint under the same gunicorn configuration."""

import logging

from flask import Flask, jsonify, request

from scoring_service.ops.observability import configure_logging

log = logging.getLogger("bench.bare")


def create_bare_app() -> Flask:
    app = Flask(__name__)
    configure_logging("INFO")

    @app.get("/readyz")
    def readyz():
        """Logged like the service's access log: the live-server helper waits for this line from every worker."""
        log.info("request", extra={"method": "GET", "path": "/readyz", "status": 200})
        return jsonify(status="ready")

    @app.post("/echo")
    def echo():
        body = request.get_json()
        return jsonify(received=len(body)), 201

    return app
