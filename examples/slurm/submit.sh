#!/bin/bash
# Submits the array of SHARDS trace tasks, then the merge once all of them succeeded.
#   DATA=/shared/gsm8k/train.jsonl OUT=/shared/run1 SHARDS=8 examples/slurm/submit.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SHARDS=${SHARDS:-4}
export DATA OUT SHARDS LRO="${LRO:-npx lro-native}" MODEL="${MODEL:-organism}" TRACE_ARGS="${TRACE_ARGS:-}"
array=$(sbatch --parsable --array=0-$((SHARDS - 1)) ${SBATCH_ARGS:-} "$here/trace-array.sbatch")
merge=$(sbatch --parsable --dependency=afterok:"${array%%;*}" ${SBATCH_ARGS:-} "$here/merge.sbatch")
echo "array job $array, merge job $merge"
