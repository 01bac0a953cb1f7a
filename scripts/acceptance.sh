#!/usr/bin/env bash
# Acceptance on a real cluster: provision, run both jobs, wait for health, ask a question
# through the API and through the app's file mode, kill a rank, wait for the watchdog to heal
# the ring, print the timings. Nothing here runs in CI (there is no Nomad there).
#
#   NOMAD_ADDR=https://server:4646 NOMAD_TOKEN=<management token> \
#     scripts/acceptance.sh [--no-provision] [--vars FILE] [--kill-rank 1]
#
# The ring's variables are the file the playbook renders next to the inventory
# ($(dirname $INVENTORY)/ring.vars.hcl); --vars names another rendered file.
#
# Needs: nomad CLI, curl, python3 (and the repo's .venv for the app's file mode, espeak-ng for
# the question). The controller must reach the cluster addresses (API port of rank 0).
set -euo pipefail

cd "$(dirname "$0")/.."
PROVISION=1
RING_VARS=
KILL_RANK=1
INVENTORY=${INVENTORY:-inventory.yaml}
HEAL_LIMIT=${HEAL_LIMIT:-90}
START_LIMIT=${START_LIMIT:-900}
while [ $# -gt 0 ]; do
  case "$1" in
    --no-provision) PROVISION=0 ;;
    --vars) RING_VARS=$2; shift ;;
    --kill-rank) KILL_RANK=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

die() { echo "acceptance: $*" >&2; exit 1; }
say() { echo "== $*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
RING_VARS=${RING_VARS:-$(dirname "$INVENTORY")/ring.vars.hcl}
need_ring_vars() {
  [ -f "$RING_VARS" ] || die "$RING_VARS does not exist: run the playbook (it renders the ring's variables there)"
  VARS=(-var-file="$RING_VARS")
}
# Without provisioning, the rendered file must already be there: say so before anything else.
[ "$PROVISION" = 1 ] || need_ring_vars
: "${NOMAD_ADDR:?set NOMAD_ADDR to the Nomad API of the cluster}"
: "${NOMAD_TOKEN:?set NOMAD_TOKEN to a management token (setup applies ACL policies)}"
command -v nomad >/dev/null || die "the nomad CLI is not on PATH"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

# json '<python expression on d>' < document
json() {
  "$PY" -c "import json,sys; d=json.load(sys.stdin); print($1)"
}

if [ "$PROVISION" = 1 ]; then
  say "provision the cluster (ansible-playbook -i $INVENTORY playbook.yaml)"
  ansible-playbook -i "$INVENTORY" playbook.yaml
fi

need_ring_vars
say "check the jobs (ring variables: $RING_VARS)"
"$PY" -m jobcheck.check jobs/ --var-file "primacpp=$RING_VARS"
nomad job validate "${VARS[@]}" jobs/primacpp.nomad.hcl
nomad job validate jobs/pipecatapp.nomad.hcl

say "API key in Nomad Variables (nomad/jobs/primacpp, item api_key)"
if ! nomad var get nomad/jobs/primacpp >/dev/null 2>&1; then
  key=$("$PY" -c "import secrets; print(secrets.token_urlsafe(32))")
  # The spec comes on stdin, so the key never appears in a process list.
  nomad var put -in=hcl - >/dev/null <<EOF
path = "nomad/jobs/primacpp"
items {
  api_key = "$key"
}
EOF
  unset key
fi
API_KEY=$(nomad var get -out=json nomad/jobs/primacpp | json 'd["Items"]["api_key"]')

say "ACL policies for the watchdog and the app (workload identities)"
nomad acl policy apply -namespace default -job primacpp -group watchdog -task watchdog \
  -description "ring watchdog: read the ring, restart its allocations" \
  primacpp-watchdog jobs/primacpp-watchdog.policy.hcl
nomad acl policy apply -namespace default -job pipecatapp \
  -description "voice app: read the LLM API key" \
  pipecatapp-llm-key jobs/pipecatapp-llm-key.policy.hcl

say "run the ring and the app"
T_START=$(now)
nomad job run -detach "${VARS[@]}" jobs/primacpp.nomad.hcl
nomad job run -detach jobs/pipecatapp.nomad.hcl

api_url() {
  nomad operator api /v1/service/primacpp-api 2>/dev/null \
    | json '"http://%s:%s" % (d[0]["Address"], d[0]["Port"]) if d else ""' 2>/dev/null || true
}
# one_token URL -> exit 0 when the ring answers one token within 20 s
one_token() {
  curl -fsS -m 20 "$1/v1/chat/completions" -H "Authorization: Bearer $API_KEY" \
    -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"ping"}],"max_tokens":1}' >/dev/null 2>&1
}
# wait_answering LIMIT_SECONDS
wait_answering() {
  local deadline=$(( $(date +%s) + $1 )) url
  while [ "$(date +%s)" -lt "$deadline" ]; do
    url=$(api_url)
    if [ -n "$url" ] && one_token "$url"; then echo "$url"; return 0; fi
    sleep 2
  done
  return 1
}

say "wait for the ring to answer (at most ${START_LIMIT}s)"
URL=$(wait_answering "$START_LIMIT") || die "the ring did not answer within ${START_LIMIT}s"
RING_START=$(since "$T_START")
echo "ring answers at $URL after ${RING_START}s"

say "ask a question through the API (streamed)"
T_Q=$(now)
curl -fsS -N -m 120 "$URL/v1/chat/completions" -H "Authorization: Bearer $API_KEY" \
  -H 'Content-Type: application/json' \
  -d '{"stream":true,"max_tokens":64,"messages":[{"role":"user","content":"What is the capital of France?"}]}' \
  | "$PY" -c '
import json, sys, time
start = time.monotonic(); first = None; n = 0; text = []
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("data: ") or line == "data: [DONE]":
        continue
    delta = json.loads(line[6:])["choices"][0].get("delta", {}).get("content")
    if delta:
        n += 1; text.append(delta); first = first or time.monotonic()
end = time.monotonic()
rate = (n - 1) / (end - first) if first and n > 1 and end > first else 0
print("answer:", "".join(text).strip())
print(f"first token {first - start if first else -1:.2f}s, {n} tokens, {rate:.1f} tokens/s")
'
echo "question answered in $(since "$T_Q")s"

say "ask through the app's file mode"
if command -v espeak-ng >/dev/null && [ -x .venv/bin/python ]; then
  work=$(mktemp -d)
  espeak-ng -v en-us -w "$work/q.wav" "What is the capital of France?"
  sox "$work/q.wav" -r 16000 -c 1 "$work/q16.wav"
  T_APP=$(now)
  PIPECATAPP_LLM_API_KEY=$API_KEY .venv/bin/python -m pipecatapp -t file \
    --input "$work/q16.wav" --output "$work/a.wav" --timeline "$work/timeline.jsonl" \
    --llm-url "$URL/v1"
  echo "app file mode: $(since "$T_APP")s, reply in $work/a.wav, timeline $work/timeline.jsonl"
else
  echo "skipped: needs espeak-ng and the repo's .venv"
fi

say "kill rank $KILL_RANK and wait for the watchdog to heal the ring (limit ${HEAL_LIMIT}s)"
ALLOC=$(nomad job allocs -json primacpp \
  | json "next(a['ID'] for a in d if a['TaskGroup']=='rank-$KILL_RANK' and a['ClientStatus']=='running')")
T_KILL=$(now)
nomad alloc signal -s SIGKILL "$ALLOC" rank
sleep 1
wait_answering "$HEAL_LIMIT" >/dev/null || die "the ring did not heal within ${HEAL_LIMIT}s"
HEAL=$(since "$T_KILL")
WATCHDOG=$(nomad job allocs -json primacpp \
  | json "next(a['ID'] for a in d if a['TaskGroup']=='watchdog' and a['ClientStatus']=='running')")
nomad alloc logs -stderr "$WATCHDOG" watchdog | tail -n 8

say "timings"
echo "ring start (job run to first answer): ${RING_START}s"
echo "recovery after killing rank $KILL_RANK: ${HEAL}s (limit ${HEAL_LIMIT}s)"
