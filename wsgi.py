"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, `flask --app wsgi …`."""

import sys

from connector import create_app
from connector.errors import ConfigError

try:
    app = create_app()
except ConfigError as err:
    # What to fix, in one line, instead of a traceback that ends with it (every CLI command and
    # each gunicorn worker start here). Exit 3 is gunicorn's "worker failed to boot": the master
    # stops, where another code would respawn the worker forever (a bad setting, then a HUP; a bad
    # mapping edit no longer stops a worker gunicorn replaces: `mappings.inherited`).
    print(f"configuration error: {err}", file=sys.stderr)
    sys.exit(3)
