#!/usr/bin/env bash
# Install the Debian packages that the tests drive for real: chromium renders the HTML
# reports headless and pdftoppm (poppler-utils) rasterises the PDF pages.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${missing[*]}; install them with: sudo apt-get install ${missing[*]}" >&2
    echo "system-deps: the tests that need them will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
