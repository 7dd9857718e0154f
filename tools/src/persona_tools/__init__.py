"""Development tooling of the persona stack, installed editable into .venv/dev only.

Benchmarks (``persona_tools.bench``), the Compose stack test and the Telegram Bot API stand-in
(``persona_tools.stack_test``, ``persona_tools.telegram_stub``), the Mage UI screenshots
driving headless Chromium through Playwright (``persona_tools.screenshots``,
``persona_tools.browser``) and repository upkeep (``persona_tools.devtools``). These modules
import the shipped ``persona`` package; ``persona`` never imports them, and no image installs
them.
"""

from pathlib import Path

# tools/src/persona_tools/__init__.py -> the repository (the tools run from a checkout only).
REPO_ROOT = Path(__file__).resolve().parents[3]
