#!/usr/bin/env bash
# Loads a small demo data set through the command API: 3 stores, 5 products,
# and one receipt per store and product. Writes the ids to $STATE/demo.json.
#
# Environment:
#   STOCKFLOW_COMMAND_URL  command service (default http://$STOCKFLOW_COMMAND_LISTEN,
#                          i.e. http://127.0.0.1:8081)
#   STOCKFLOW_TOKEN        sent as "Authorization: Bearer ..." when set
#   STOCKFLOW_ADMIN_USERNAME, STOCKFLOW_ADMIN_PASSWORD
#                          when STOCKFLOW_TOKEN is not set and both are, a token
#                          is taken from POST /v1/sessions first
#
# Every write carries a fixed Idempotency-Key, so running it again within the
# service's idempotency window replays the first answers instead of failing
# on duplicate SKUs.
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
sf_need curl python3

API="${STOCKFLOW_COMMAND_URL:-http://${STOCKFLOW_COMMAND_LISTEN:-127.0.0.1:8081}}"
API="${API%/}"
OUT="$STATE/demo.json"
RESP="$(mktemp)"
trap 'rm -f "$RESP"' EXIT

# json_get KEY: print field KEY of the JSON object on stdin.
json_get() {
  python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}

# json_obj key=value ...: a JSON object of strings; key:=value for raw JSON.
json_obj() {
  python3 - "$@" <<'PY'
import json, sys
obj = {}
for arg in sys.argv[1:]:
    if ":=" in arg:
        k, v = arg.split(":=", 1)
        obj[k] = json.loads(v)
    else:
        k, v = arg.split("=", 1)
        obj[k] = v
print(json.dumps(obj))
PY
}

# post PATH IDEMPOTENCY_KEY BODY: POST, require 201 (or 200 for a replay),
# print the response body.
post() {
  local path="$1" key="$2" body="$3" code
  local args=(-sS -o "$RESP" -w '%{http_code}' --max-time 15
    -H 'Content-Type: application/json' -H "Idempotency-Key: $key"
    -X POST --data-binary "$body")
  if [ -n "${STOCKFLOW_TOKEN:-}" ]; then
    args+=(-H "Authorization: Bearer $STOCKFLOW_TOKEN")
  fi
  code="$(curl "${args[@]}" "$API$path")" || sf_die "POST $API$path: no answer (is the command service up?)"
  case "$code" in
    200 | 201) cat "$RESP" ;;
    *)
      sf_log "POST $path answered $code: $(head -c 500 "$RESP")"
      [ "$code" = 401 ] && sf_log "hint: set STOCKFLOW_TOKEN (an admin token), or STOCKFLOW_ADMIN_USERNAME and STOCKFLOW_ADMIN_PASSWORD"
      exit 1
      ;;
  esac
}

if [ -z "${STOCKFLOW_TOKEN:-}" ] && [ -n "${STOCKFLOW_ADMIN_USERNAME:-}" ] && [ -n "${STOCKFLOW_ADMIN_PASSWORD:-}" ]; then
  code="$(curl -sS -o "$RESP" -w '%{http_code}' --max-time 15 -H 'Content-Type: application/json' \
    -X POST --data-binary "$(json_obj username="$STOCKFLOW_ADMIN_USERNAME" password="$STOCKFLOW_ADMIN_PASSWORD")" \
    "$API/v1/sessions")" || sf_die "POST $API/v1/sessions: no answer"
  [ "$code" = 201 ] || sf_die "login as $STOCKFLOW_ADMIN_USERNAME answered $code: $(head -c 300 "$RESP")"
  STOCKFLOW_TOKEN="$(json_get token <"$RESP")"
  export STOCKFLOW_TOKEN
fi

STORES=("Downtown|12 Main Street" "Harbour|3 Quay Road" "Airport|Terminal 2")
PRODUCTS=(
  "DEMO-001|Espresso beans 1 kg|coffee|19.99|5"
  "DEMO-002|Filter papers x100|coffee|3.49|10"
  "DEMO-003|Ceramic mug|homeware|8.50|5"
  "DEMO-004|Steel kettle|homeware|34.00|2"
  "DEMO-005|Oat milk 1 l|grocery|2.25|20"
)

store_ids=()
i=0
for s in "${STORES[@]}"; do
  i=$((i + 1))
  IFS='|' read -r name location <<<"$s"
  id="$(post /v1/stores "stockflow-demo-store-$i" "$(json_obj name="$name" location="$location")" | json_get id)"
  [ -n "$id" ] || sf_die "store $name: no id in the answer"
  store_ids+=("$id")
  sf_log "store   $name -> $id"
done

# One manager per demo store: signs up (viewer), then the admin makes it the
# store's manager. Passwords are generated once and kept, readable by this
# user only, in $STATE/demo-managers ("username password" per line).
MANAGERS="$STATE/demo-managers"
if [ ! -s "$MANAGERS" ]; then
  (umask 077 && : >"$MANAGERS")
  for i in "${!store_ids[@]}"; do
    printf 'demo-manager-%d %s\n' "$((i + 1))" "$(head -c 18 /dev/urandom | base64 | tr -d '/+=\n')" >>"$MANAGERS"
  done
  chmod 600 "$MANAGERS"
fi
i=0
while read -r uname upass; do
  sid="${store_ids[$i]:-}"
  i=$((i + 1))
  [ -n "$sid" ] || break
  code="$(curl -sS -o "$RESP" -w '%{http_code}' --max-time 15 -H 'Content-Type: application/json' \
    -X POST --data-binary "$(json_obj username="$uname" email="$uname@demo.invalid" password="$upass")" \
    "$API/v1/users")" || sf_die "POST $API/v1/users: no answer"
  case "$code" in
    201) uid="$(json_get id <"$RESP")" ;;
    409) sf_log "user $uname exists already"; continue ;;
    *) sf_die "sign-up of $uname answered $code: $(head -c 300 "$RESP")" ;;
  esac
  code="$(curl -sS -o "$RESP" -w '%{http_code}' --max-time 15 -H 'Content-Type: application/json' \
    -H "Authorization: Bearer ${STOCKFLOW_TOKEN:-}" -X PATCH \
    --data-binary "$(json_obj role=manager store_ids:="[\"$sid\"]")" \
    "$API/v1/users/$uid")" || sf_die "PATCH $API/v1/users/$uid: no answer"
  [ "$code" = 200 ] || sf_die "making $uname manager answered $code: $(head -c 300 "$RESP")"
  sf_log "manager $uname -> store $sid (password in $MANAGERS)"
done <"$MANAGERS"

product_ids=()
for p in "${PRODUCTS[@]}"; do
  IFS='|' read -r sku name category price reorder <<<"$p"
  id="$(post /v1/products "stockflow-demo-product-$sku" \
    "$(json_obj sku="$sku" name="$name" category="$category" price="$price" reorder_level:="$reorder")" | json_get id)"
  [ -n "$id" ] || sf_die "product $sku: no id in the answer"
  product_ids+=("$id")
  sf_log "product $sku -> $id"
done

receipts=0
for si in "${!store_ids[@]}"; do
  for pi in "${!product_ids[@]}"; do
    qty=$((10 * (pi + 1) + 5 * si))
    post "/v1/stores/${store_ids[$si]}/transactions" "stockflow-demo-receipt-$si-$pi" \
      "$(json_obj product_id="${product_ids[$pi]}" type=receipt quantity:="$qty" reference=demo)" >/dev/null
    receipts=$((receipts + 1))
  done
done
sf_log "$receipts receipts posted"

python3 - "$OUT" "${#store_ids[@]}" "${store_ids[@]}" "${product_ids[@]}" <<'PY'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
ids = sys.argv[3:]
with open(out, "w") as f:
    json.dump({"stores": ids[:n], "products": ids[n:]}, f, indent=2)
    f.write("\n")
PY
sf_log "ids written to $OUT"
