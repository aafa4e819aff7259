#!/usr/bin/env bash
# Chromium for the browser tests (tests marked `browser`, driven by Playwright with
# executable_path=/usr/bin/chromium: Playwright's own browser downloads are not reachable
# here). Installs Debian's `chromium` package, and a Chinese font so the screenshots are
# readable, when missing; refreshes the package lists only if the first attempt fails. Needs
# root (CI and these machines run as root); otherwise it says so and the browser tests skip
# outside CI.
set -euo pipefail
CHROMIUM=/usr/bin/chromium
FONT_PACKAGE=fonts-wqy-zenhei
missing=()
[[ -x $CHROMIUM ]] || missing+=(chromium)
dpkg-query -W -f='${Status}' "$FONT_PACKAGE" 2>/dev/null | grep -q "ok installed" || missing+=("$FONT_PACKAGE")
if ((${#missing[@]} == 0)); then exit 0; fi
if [[ $(id -u) != 0 ]]; then
  echo "ensure_chromium: ${missing[*]} missing and installing needs root; browser tests skip without chromium" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
if ! install; then
  apt-get update -qq >/dev/null
  install
fi
echo "ensure_chromium: installed ${missing[*]} ($($CHROMIUM --version 2>/dev/null || echo '?'))"
