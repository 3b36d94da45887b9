"""The source-format tests import their fixtures from source_fixtures.py (a uniquely named module)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
