"""Scoring service for old residential community renovation (老旧小区改造提质)."""

__all__ = ["create_app"]


def __getattr__(name: str):
    # The app factory (and with it Flask) loads on first use, so the pure parts of the package
    # (scoring/, domain/) import without the web stack.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
