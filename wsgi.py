"""WSGI entry point: `gunicorn -c gunicorn.conf.py wsgi:app`, `flask --app wsgi …`."""

import sys

from connector import create_app
from connector.errors import ConfigError

try:
    app = create_app()
except ConfigError as err:
    # What to fix, in one line, instead of a traceback that ends with it (every CLI command and
    # each gunicorn worker start here).
    print(f"configuration error: {err}", file=sys.stderr)
    sys.exit(2)
