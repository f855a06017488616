"""The baseline: a bare Flask JSON endpoint under the same gunicorn configuration."""

from flask import Flask, jsonify, request


def create_bare_app() -> Flask:
    app = Flask(__name__)

    @app.post("/echo")
    def echo():
        body = request.get_json()
        return jsonify(received=len(body)), 201

    return app
