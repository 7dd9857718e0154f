"""``python -m persona.data ...`` is ``persona data ...``."""

import sys

from persona.cli import main

raise SystemExit(main(["data", *sys.argv[1:]]))
