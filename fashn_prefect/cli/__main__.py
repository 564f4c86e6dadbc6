"""``python -m fashn_prefect.cli``."""

import sys

from fashn_prefect.cli.app import app

sys.exit(app())
