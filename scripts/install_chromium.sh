#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's end-to-end test (tests/web/test_web_browser.py,
# driven by Playwright with executable_path=/usr/bin/chromium). Idempotent: does nothing when
# /usr/bin/chromium exists. Needs root (CI runs as root). Never runs `playwright install`:
# browser downloads are not reachable here, Debian's package is.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q chromium
echo "chromium: $(/usr/bin/chromium --version)"
