"""WSGI entry of the scoring API: one app per Gunicorn worker (see gunicorn.conf.py)."""

from persona.serving.app import create_app

app = create_app()
