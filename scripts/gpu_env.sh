# Sourced by scripts/gpu_check.sh and scripts/full_study.sh: the Python to use and its packages.
# On a GPU machine without Hydra or MLflow, the wheels copied along in .whl/ (bash
# scripts/gpu_check.sh --fetch-wheels) are installed once into /tmp/grubench_site; grubench
# itself runs from src/, uninstalled.
PY=${PYTHON:-python3}
SITE=/tmp/grubench_site
if compgen -G ".whl/*.whl" > /dev/null && ! $PY -c "import hydra, mlflow" 2>/dev/null; then
    if [ ! -f "$SITE/.installed" ]; then
        t0=$SECONDS
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
            && touch "$SITE/.installed" || echo "gpu_env: installing .whl/ failed" >&2
        echo "gpu_env: installed $(ls .whl/*.whl | wc -l) wheels in $((SECONDS - t0)) s"
    fi
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
if ! $PY -c "import grubench" 2>/dev/null; then
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1

# pack NAME FILES...: tar.gz FILES (relative to the current directory) into $OUT/NAME, leaving
# out checkpoints; a file over 16 MiB is reported and cut to its first member, so that the
# results stay small enough to copy back.
pack() {
    local name=$1; shift
    [ -n "${OUT:-}" ] || return 0
    local existing=()
    for f in "$@"; do [ -e "$f" ] && existing+=("$f"); done
    tar -czf "$OUT/$name" --exclude='*.ckpt' --exclude='*.partial' "${existing[@]}" 2>/dev/null \
        || tar -czf "$OUT/$name" --files-from /dev/null
    if [ "$(stat -c %s "$OUT/$name")" -gt $((16 * 1024 * 1024)) ]; then
        echo "pack: $name is over 16 MiB; keeping only its first file" >&2
        tar -czf "$OUT/$name" --exclude='*.ckpt' "${existing[0]}"
    fi
}
