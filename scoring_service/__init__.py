"""Scoring service for old residential community renovation (老旧小区改造提质)."""

from .app import create_app

__all__ = ["create_app"]
