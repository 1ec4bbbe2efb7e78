#!/usr/bin/env bash
# Installs the judge's packages (tests/parse/package-lock.json: parse 8.6.0
# and what it needs) into tests/parse/node_modules with `npm ci`, only when
# the lock file changed since the last install (a stamp file holds its
# sha256), so repeated runs cost nothing. Needs node >= 20.19 and npm
# (Debian 12: deploy/local/install-deps.sh installs them). npm's output goes
# to $PARSE_JUDGE_LOG (default $TMPDIR or /tmp, stockflow-parse-judge-npm.log).
#
#   tests/parse/install.sh        exit 0 when installed, 1 when npm ci
#                                 failed, 2 when node or npm is missing
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG="${PARSE_JUDGE_LOG:-${TMPDIR:-/tmp}/stockflow-parse-judge-npm.log}"
command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "tests/parse/install.sh: node and npm are needed (deploy/local/install-deps.sh)" >&2; exit 2; }
major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$major" -ge 20 ] || { echo "tests/parse/install.sh: node $(node --version) is too old (>= 20.19)" >&2; exit 2; }
STAMP="$HERE/node_modules/.stockflow-lock.sha256"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$(sha256sum <"$HERE/package-lock.json")" ]; then
  echo "tests/parse/install.sh: npm ci in $HERE" >&2
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >"$LOG" 2>&1 \
    || { tail -n 20 "$LOG" >&2; echo "tests/parse/install.sh: npm ci failed (log $LOG)" >&2; exit 1; }
  sha256sum <"$HERE/package-lock.json" >"$STAMP"
fi
