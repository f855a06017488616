"""Operations: serving with gunicorn, rate limits, metrics, structured logs, backups."""
