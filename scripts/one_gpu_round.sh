#!/usr/bin/env bash
# One SPR round on a machine with ONE GPU, with docker compose (README, "Deploying on GPU machines").
# vLLM and the trainer cannot hold the card together, so a round runs in this order:
#   1. serve: redis, vllm (the base model, or it plus the last round's adapter), generator, scorer,
#      scorer-worker;
#   2. publish this round's region tasks (`spr regions`, a source name per round so that its task ids
#      are new), wait until every task is generated and every group scored (the queue drained);
#   3. stop vllm, the generator and the scorers (the card is free);
#   4. train: the trainer pulls the round's pairs and trains the next round from the last adapter,
#      writing $SPR_OUTPUT_DIR/adapter;
#   5. the next round (`--round N+1`) serves that adapter: the generator loads /output/adapter into
#      vLLM (--enable-lora), no merge.
#
#   scripts/one_gpu_round.sh --round 1 --annotations /data/annotations.json
#   scripts/one_gpu_round.sh --round 2 --annotations /data/annotations.json
#   scripts/one_gpu_round.sh --round 1 --annotations /data/annotations.json --dry-run   # print only
#
# Paths are as the containers see them (/data is SPR_DATA_DIR). Settings come from .env as for
# `docker compose up`; SPR_VLLM_GPUS, SPR_SCORER_GPUS and SPR_TRAINER_GPUS all default to GPU 0.
# SPR_COMPOSE_COMMAND: the compose command (default `docker compose`; `docker-compose` for v1).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    echo "usage: $0 --round N --annotations /data/FILE [--config /app/...yaml] [--wait-s S] [--dry-run]" >&2
    exit 2
}

round=""
annotations=""
config="/app/trainer/configs/qwen2vl-7b-1gpu.yaml"
wait_s=86400
dry_run=0
read -r -a compose <<< "${SPR_COMPOSE_COMMAND:-docker compose}"
while [ $# -gt 0 ]; do
    case "$1" in
        --round) round="${2:-}"; shift 2 ;;
        --annotations) annotations="${2:-}"; shift 2 ;;
        --config) config="${2:-}"; shift 2 ;;
        --wait-s) wait_s="${2:-}"; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        -h|--help) usage ;;
        *) echo "$0: unknown argument $1" >&2; usage ;;
    esac
done
if ! [[ "$round" =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: --round must be a whole number >= 1 (got '${round}')" >&2
    exit 2
fi
if [ -z "$annotations" ]; then
    echo "$0: --annotations is required: the dataset file as the containers see it, e.g. /data/annotations.json" >&2
    exit 2
fi
if ! [[ "$wait_s" =~ ^[1-9][0-9]*$ ]]; then
    echo "$0: --wait-s must be a whole number of seconds >= 1 (got '${wait_s}')" >&2
    exit 2
fi
if [ "$dry_run" = 0 ] && [ ! -f .env ]; then
    echo "$0: no .env here: cp .env.example .env and set the folders (README, 'Deploying on GPU machines')" >&2
    exit 2
fi

run() {
    echo "+ $*"
    if [ "$dry_run" = 0 ]; then
        "$@"
    fi
}

# Round 1 samples the base model; round N > 1 the adapter round N - 1 trained.
if [ "$round" -gt 1 ]; then
    export SPR_GENERATOR_ADAPTER=/output/adapter
    output_dir="${SPR_OUTPUT_DIR:-}"
    if [ -z "$output_dir" ] && [ -f .env ]; then
        output_dir="$(sed -n 's/^SPR_OUTPUT_DIR=//p' .env | tail -n 1)"
    fi
    if [ "$dry_run" = 0 ] && [ -n "$output_dir" ] && [ ! -d "$output_dir/adapter" ]; then
        echo "$0: round $round needs the adapter of round $((round - 1)) in \$SPR_OUTPUT_DIR/adapter: run --round $((round - 1)) first" >&2
        exit 2
    fi
else
    export SPR_GENERATOR_ADAPTER=
fi
echo "== round $round: serve (SPR_GENERATOR_ADAPTER=${SPR_GENERATOR_ADAPTER:-none})"
run "${compose[@]}" up -d redis vllm generator scorer scorer-worker

echo "== round $round: publish the region tasks"
run "${compose[@]}" run --rm scorer regions --annotations "$annotations" --source "spr-round-$round" --seed "$round"

echo "== round $round: wait until every task is generated and every candidate group scored"
# spr:tasks (group generators) and spr:candidates (group scorers): nothing pending, nothing undelivered.
read -r -d '' DRAIN_CHECK <<'PY' || true
import json, sys
status = json.load(sys.stdin)
busy = [
    f"{stream['name']}/{group['name']}: {group['pending']} pending, {group['lag']} waiting"
    for stream in status["streams"] if stream["name"] in ("spr:tasks", "spr:candidates")
    for group in stream["groups"] if group["pending"] or group["lag"] is None or group["lag"]
]
print("; ".join(busy) or "drained", file=sys.stderr)
sys.exit(1 if busy else 0)
PY
drained() {
    "${compose[@]}" run --rm -T scorer queue status --json | python3 -c "$DRAIN_CHECK"
}
if [ "$dry_run" = 0 ]; then
    deadline=$((SECONDS + wait_s))
    until drained; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$0: the queue did not drain within ${wait_s} s: see 'docker compose logs generator scorer-worker' and 'docker compose run --rm scorer queue status'" >&2
            exit 1
        fi
        sleep $((wait_s < 30 ? wait_s : 30))
    done
else
    echo "+ (poll '${compose[*]} run --rm -T scorer queue status --json' until spr:tasks and spr:candidates are drained)"
fi

echo "== round $round: free the GPU"
run "${compose[@]}" stop generator vllm scorer scorer-worker

echo "== round $round: train"
run "${compose[@]}" --profile train run --rm trainer train --config "$config" --from-queue --until-empty

echo "== round $round done: the adapter is \$SPR_OUTPUT_DIR/adapter; next: $0 --round $((round + 1)) --annotations $annotations"
