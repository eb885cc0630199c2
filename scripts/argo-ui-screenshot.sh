#!/usr/bin/env bash
# Refresh docs/argo-ui-agent-step.png, the Argo UI on a finished run's agent step with its log
# open: runs tests/cluster/test_argo_ui.py against the running cluster (`make cluster-up`), which
# makes the run, starts `argo server` on a loopback port and takes the screenshot in headless
# Chromium (`make system-deps` installs it) while it checks what the page shows.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PY:-.venv/bin/python}
ARGO_UI_SCREENSHOT="$PWD/docs/argo-ui-agent-step.png" \
  "$python" -m pytest tests/cluster/test_argo_ui.py -x -q -p no:cacheprovider
echo "[argo-ui-screenshot] wrote docs/argo-ui-agent-step.png"
