"""gunicorn configuration for production:

    PROMETHEUS_MULTIPROC_DIR=/tmp/metrics gunicorn -c deploy/gunicorn.conf.py 'scoring_service:create_app()'

Settings come from ``scoring_service.ops.server.gunicorn_settings`` (the same ones
``scoring-service serve`` uses); ``SCORING_HOST``, ``SCORING_PORT`` and
``SCORING_WORKERS`` override bind address and worker count.
"""

from scoring_service.ops.server import gunicorn_settings, prepare_metrics_dir

prepare_metrics_dir()
globals().update(gunicorn_settings())
wsgi_app = "scoring_service:create_app()"
