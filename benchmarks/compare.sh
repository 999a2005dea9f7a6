#!/usr/bin/env bash
# Reference recipe vs. the project's extraction: same files, same run, one after the other.
#
# Usage (from the project root):
#   bash benchmarks/compare.sh [AUDIO_DIR] [-- extra arguments for benchmarks/features.py]
#
#   AUDIO_DIR     searched recursively for .wav/.flac/.mp3/.ogg/.aif(f); default $SER_SAMPLE_DIR,
#                 else ../shared/corpora-sample
#   SEED=...      reference script (default /work/shared/bench/seed_features.py)
#   PYTHON=...    interpreter (default .venv/bin/python if present, else python3)
#   BLAS_THREADS=1  run both with one BLAS/OpenMP thread (default: library default)
#
# Prints the reference JSON line, ours, and the ratio of audio_s_per_cpu_s (ours / reference).
set -euo pipefail

dir="${1:-${SER_SAMPLE_DIR:-../shared/corpora-sample}}"
if (( $# > 0 )); then shift; fi
if [[ "${1:-}" == "--" ]]; then shift; fi
seed="${SEED:-/work/shared/bench/seed_features.py}"
python="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
if [[ -n "${BLAS_THREADS:-}" ]]; then
    export OPENBLAS_NUM_THREADS="$BLAS_THREADS" OMP_NUM_THREADS="$BLAS_THREADS" MKL_NUM_THREADS="$BLAS_THREADS"
fi

[[ -f benchmarks/features.py ]] || { echo "compare.sh: run from the project root" >&2; exit 2; }
[[ -d "$dir" ]] || { echo "compare.sh: $dir is not a folder; pass the audio folder as the first argument" >&2; exit 2; }
[[ -f "$seed" ]] || { echo "compare.sh: reference script $seed not found; set SEED=/path/to/seed_features.py" >&2; exit 2; }

list="$(mktemp)"
trap 'rm -f "$list"' EXIT
find "$dir" -type f \( -iname '*.wav' -o -iname '*.flac' -o -iname '*.mp3' -o -iname '*.ogg' \
    -o -iname '*.aif' -o -iname '*.aiff' \) | LC_ALL=C sort > "$list"
[[ -s "$list" ]] || { echo "compare.sh: no audio files under $dir" >&2; exit 2; }

ref="$("$python" "$seed" "$list")"
ours="$("$python" benchmarks/features.py "$list" "$@")"
echo "reference: $ref"
echo "ours:      $ours"
"$python" - "$ref" "$ours" <<'PY'
import json, sys
ref, ours = (json.loads(s) for s in sys.argv[1:3])
print(f"ratio:     {ours['audio_s_per_cpu_s'] / ref['audio_s_per_cpu_s']:.1f}x audio-seconds per CPU-second")
PY
