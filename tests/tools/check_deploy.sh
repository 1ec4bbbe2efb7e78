#!/usr/bin/env bash
# check_deploy: the deployment files of deploy/ pass a real validator each.
#
#   systemd  deploy/systemd/*.service: `systemd-analyze verify` on copies
#            whose ExecStart names the built binaries (and deploy/migrate.sh)
#            instead of the install paths; any warning fails (an unknown
#            key is only a warning to systemd).
#   compose  deploy/compose/compose.yaml: `docker compose config` when the
#            compose plugin is there, and always the compose-spec JSON
#            schema (check-jsonschema --builtin-schema vendor.compose-spec).
#   k8s      deploy/k8s/*.yaml: kubernetes-validate --strict against
#            Kubernetes 1.30 (unknown fields fail).
# Each validator is first shown a doctored copy that it must refuse, so the
# check cannot pass because a tool accepts anything.
#
# The Python tools are pinned in tests/requirements.txt and installed into
# a virtual environment (STOCKFLOW_TOOLS_VENV, default
# ~/.cache/stockflow/tools-venv) when missing or when the file changed.
#
# Usage: tests/tools/check_deploy.sh [BUILD_DIR]   (default <repo>/build)
# Exit: 0 all valid, 1 something invalid, 2 cannot run.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
VENV="${STOCKFLOW_TOOLS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stockflow/tools-venv}"
REQ="$ROOT/tests/requirements.txt"
K8S_VERSION=1.30.0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
bad=0
say() { printf 'check_deploy: %s\n' "$*"; }
cannot() { say "cannot run: $*" >&2; exit 2; }
failed() { say "FAILED: $*" >&2; bad=1; }

# ---- tools ----
command -v systemd-analyze >/dev/null || cannot "systemd-analyze not found (install-deps.sh installs systemd)"
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/check-jsonschema" ] || [ ! -x "$VENV/bin/kubernetes-validate" ] \
    || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing the pinned tools of tests/requirements.txt into $VENV"
  python3 -m venv "$VENV" || cannot "python3 -m venv $VENV failed (python3-venv)"
  "$VENV/bin/pip" install -q -r "$REQ" || cannot "pip install -r $REQ failed"
  echo "$want" >"$stamp"
fi

# ---- systemd ----
# verify_unit FILE: systemd-analyze verify FILE; fails on an error or any
# output on stderr.
verify_unit() {
  local out
  out="$(cd "$(dirname "$1")" && systemd-analyze verify "./$(basename "$1")" 2>&1 >/dev/null)"
  local rc=$?
  [ "$rc" -eq 0 ] && [ -z "$out" ] && return 0
  printf '%s\n' "$out" | sed 's/^/    /' >&2
  return 1
}
# localise SRC DST: the unit with the install paths replaced by this tree's.
localise() {
  sed -e "s#^ExecStart=/usr/bin/stockflow-\\([a-z]*\\)#ExecStart=$BUILD/services/\\1/stockflow-\\1#" \
      -e "s#^ExecStart=/usr/lib/stockflow/migrate.sh#ExecStart=$ROOT/deploy/migrate.sh#" \
      "$1" >"$2"
}
units=("$ROOT"/deploy/systemd/*.service)
[ -e "${units[0]}" ] || cannot "no deploy/systemd/*.service"
for svc in command query projector; do
  [ -x "$BUILD/services/$svc/stockflow-$svc" ] || cannot "$BUILD/services/$svc/stockflow-$svc is not built"
done
mkdir -p "$TMP/units" "$TMP/bad"
localise "$ROOT/deploy/systemd/stockflow-query.service" "$TMP/bad/stockflow-query.service"
sed -i 's/^\[Service\]$/[Service]\nProtectSystm=strict/' "$TMP/bad/stockflow-query.service"
verify_unit "$TMP/bad/stockflow-query.service" 2>/dev/null \
  && failed "systemd-analyze verify accepted a unit with a misspelt key"
for u in "${units[@]}"; do
  localise "$u" "$TMP/units/$(basename "$u")"
  if verify_unit "$TMP/units/$(basename "$u")"; then
    say "systemd: $(basename "$u") ok"
  else
    failed "systemd: $(basename "$u")"
  fi
done

# ---- compose ----
compose="$ROOT/deploy/compose/compose.yaml"
sed 's/^  postgres:$/  postgres:\n    restart_policy: always/' "$compose" >"$TMP/bad-compose.yaml"
"$VENV/bin/check-jsonschema" -q --builtin-schema vendor.compose-spec "$TMP/bad-compose.yaml" >/dev/null 2>&1 \
  && failed "the compose-spec schema accepted an unknown service key"
if "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$compose"; then
  say "compose: compose.yaml matches the compose-spec schema"
else
  failed "compose: compose.yaml does not match the compose-spec schema"
fi
if docker compose version >/dev/null 2>&1; then
  if POSTGRES_PASSWORD=x docker compose -f "$compose" config -q; then
    say "compose: docker compose config ok"
  else
    failed "compose: docker compose config"
  fi
else
  say "compose: no docker compose plugin here; the schema check stands alone"
fi

# ---- k8s ----
manifests=("$ROOT"/deploy/k8s/*.yaml)
[ -e "${manifests[0]}" ] || cannot "no deploy/k8s/*.yaml"
sed 's/^  replicas: 2$/  replicas: 2\n  replica: 2/' "$ROOT/deploy/k8s/40-query.yaml" >"$TMP/bad-k8s.yaml"
grep -q '^  replica: 2$' "$TMP/bad-k8s.yaml" || cannot "could not doctor 40-query.yaml"
"$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet "$TMP/bad-k8s.yaml" >/dev/null 2>&1 \
  && failed "kubernetes-validate accepted an unknown field"
if "$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet "${manifests[@]}"; then
  say "k8s: ${#manifests[@]} files valid for Kubernetes $K8S_VERSION (strict)"
else
  failed "k8s: manifests"
fi

[ "$bad" -eq 0 ] && say "ok" || say "some deployment files are invalid"
exit "$bad"
