#!/usr/bin/env bash
# The README's five-minute tour, runnable: starts `kassa serve` in a fresh
# data directory, then register → a teller's cash deposit → a transfer by
# phone → the history → the audit journal, printing each command's output.
set -euo pipefail
KASSA=${KASSA:-./target/debug/kassa}
DIR=$(mktemp -d)
PORT=${PORT:-18080}
API=http://127.0.0.1:$PORT/api/v1
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
"$KASSA" serve --data-dir "$DIR" --listen 127.0.0.1:$PORT --terminal-listen 127.0.0.1:0 >"$DIR/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.2; done
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
show() { echo "\$ $1"; }

show "curl -s -X POST $API/auth/register -H 'content-type: application/json' -d '{\"first_name\": \"Olga\", ...}'"
REG=$(curl -s -X POST $API/auth/register -H 'content-type: application/json' -d '{"first_name":"Olga","last_name":"Ivanova","phone":"+375 (29) 333-44-55","email":"olga@example.com","password":"correct horse battery","passport_number":"MP3334455","personal_id":"3334455A001PB5"}')
echo "$REG" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["access_token"]=d["access_token"][:16]+"…"; d["refresh_token"]=d["refresh_token"][:16]+"…"; print(json.dumps(d, indent=1))'
OLGA=$(echo "$REG" | json '["access_token"]')
curl -s -X POST $API/auth/register -H 'content-type: application/json' -d '{"first_name":"Ivan","last_name":"Petrov","phone":"+375297776655","email":"ivan@example.com","password":"another good passphrase","passport_number":"MP7776655","personal_id":"7776655A001PB5"}' >/dev/null
IVAN=$(curl -s -X POST $API/auth/login -H 'content-type: application/json' -d '{"login":"+375297776655","password":"another good passphrase"}' | json '["access_token"]')
OPEN='{"kind":"current","currency":"BYN","consents":[{"document":"terms","version":"2026-01"}]}'
show "curl -s -X POST $API/accounts -H \"authorization: Bearer \$OLGA\" -H 'content-type: application/json' -d '$OPEN'"
ACC=$(curl -s -X POST $API/accounts -H "authorization: Bearer $OLGA" -H 'content-type: application/json' -d "$OPEN")
echo "$ACC"
NUMBER=$(echo "$ACC" | json '["number"]'); ID=$(echo "$ACC" | json '["id"]')
curl -s -X POST $API/accounts -H "authorization: Bearer $IVAN" -H 'content-type: application/json' -d "$OPEN" >/dev/null

show "printf 'teller-pass-2026\n' | kassa staff add --login teller1 --role teller --password-stdin"
printf 'teller-pass-2026\n' | "$KASSA" staff add --data-dir "$DIR" --login teller1 --role teller --password-stdin
TELLER=$(curl -s -X POST $API/auth/login -H 'content-type: application/json' -d '{"login":"teller1","password":"teller-pass-2026"}' | json '["access_token"]')
show "curl -s -X POST $API/staff/cash/deposits -H \"authorization: Bearer \$TELLER\" -H 'Idempotency-Key: desk-0001' -d '{\"account\": \"$NUMBER\", \"amount\": \"150.00\", \"currency\": \"BYN\"}'"
curl -s -X POST $API/staff/cash/deposits -H "authorization: Bearer $TELLER" -H 'content-type: application/json' -H 'Idempotency-Key: desk-0001' -d "{\"account\":\"$NUMBER\",\"amount\":\"150.00\",\"currency\":\"BYN\"}"; echo
show "curl -s '$API/recipients?phone=%2B375297776655&currency=BYN' -H \"authorization: Bearer \$OLGA\""
curl -s "$API/recipients?phone=%2B375297776655&currency=BYN" -H "authorization: Bearer $OLGA"; echo
show "curl -s -X POST $API/transfers -H \"authorization: Bearer \$OLGA\" -H 'Idempotency-Key: pay-ivan-1' -d '{\"from_account\": \"$ID\", \"to_phone\": \"+375297776655\", \"amount\": \"42.50\", \"currency\": \"BYN\", \"description\": \"Lunch\"}'"
curl -s -X POST $API/transfers -H "authorization: Bearer $OLGA" -H 'content-type: application/json' -H 'Idempotency-Key: pay-ivan-1' -d "{\"from_account\":\"$ID\",\"to_phone\":\"+375297776655\",\"amount\":\"42.50\",\"currency\":\"BYN\",\"description\":\"Lunch\"}"; echo
show "curl -s $API/accounts/$ID/transactions -H \"authorization: Bearer \$OLGA\""
curl -s "$API/accounts/$ID/transactions" -H "authorization: Bearer $OLGA" | python3 -m json.tool --indent 1
ADMIN_PW=$(cat "$DIR/admin-password")
printf 'manager-pass-2026\n' | "$KASSA" staff add --data-dir "$DIR" --login manager1 --role manager --password-stdin >/dev/null
MANAGER=$(curl -s -X POST $API/auth/login -H 'content-type: application/json' -d '{"login":"manager1","password":"manager-pass-2026"}' | json '["access_token"]')
show "curl -s '$API/staff/audit?limit=4' -H \"authorization: Bearer \$MANAGER\""
curl -s "$API/staff/audit?limit=4" -H "authorization: Bearer $MANAGER" | python3 -m json.tool --indent 1
show "kassa audit verify"
"$KASSA" audit verify --data-dir "$DIR"
: "$ADMIN_PW"
