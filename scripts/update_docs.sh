#!/usr/bin/env bash
# Regenerate the README's settings table and .env.example from the settings classes.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m spr.demo.settings_doc --env > .env.example
.venv/bin/python - <<'PY'
import re
from pathlib import Path
from spr.demo.settings_doc import markdown_table
readme = Path("README.md")
text = readme.read_text()
new = "<!-- settings:start -->\n" + markdown_table() + "\n<!-- settings:end -->"
readme.write_text(re.sub(r"<!-- settings:start -->.*?<!-- settings:end -->", lambda _: new, text, flags=re.S))
PY
