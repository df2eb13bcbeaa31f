"""Where this checkout is: the one place the repository root is computed."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
