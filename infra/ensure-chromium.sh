#!/usr/bin/env bash
# Install Debian's Chromium for the browser test when it is missing and we may install.
# Playwright's own browser download cannot work offline; it drives /usr/bin/chromium.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing Debian chromium for the browser test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
else
  echo "==> chromium not found and cannot be installed here; the browser test will report it" >&2
fi
