#!/usr/bin/env bash
# Issue 5's GPU figures in one short run on a lent GPU machine (the `device` tool), prepared here
# so that a session with a GPU spends its few minutes measuring, not building.
#
#   bench/device_check.sh prepare   # here: build, strip and pack what the device needs (~2 min warm)
#   bench/device_check.sh run       # there: carry [".gpu", ".gl"], timeout_s 540
#
# `prepare` writes `.gpu/` (the `objlab` CLI and the engine's training tests, stripped and xz-packed:
# a release build is ~90 MB stripped, over the 64 MiB the device tool carries) and downloads the
# Vulkan loader packages into `.gl/` (the device README's recipe: the image has NVIDIA's driver
# but no loader). Both folders are in `.gitignore`.
#
# `run` unpacks them and, on the GPU, in this order (the figures first, in case time runs out):
#   1. objlab's baby GPT on wgpu over Vulkan, 500 steps, in two processes (steps/s, launches, MFU),
#      then a third with `capture=0` (every step launched kernel by kernel: what the captured
#      step buys);
#   2. the same model in PyTorch eager on CUDA (bench/pytorch_baby_gpt.py), so the ratio holds;
#   3. engine/tests/training.rs, whose wgpu tests check every hand-written kernel's values and
#      gradients against flex, on the real GPU, `OBJLAB_REQUIRE_WGPU=1` so that a missing adapter fails instead of skipping;
#   4. a kernel profile of baby GPT on the GPU (each launch waited for and timed, capture off):
#      which kernels a step's time goes to, for the next step if the ratio is short.
# Everything it prints is also under $OUT (device_check.log) for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
prepare)
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/objlab/target}"
    cargo build --release -p objlab-cli
    engine_tests=$(cargo test --release -p objlab-engine -p objlab-kernels -p objlab-cli -p xtask --no-run \
        --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="training" and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])')
    mkdir -p .gpu
    for pair in "objlab:$CARGO_TARGET_DIR/release/objlab" "engine_tests:$engine_tests"; do
        name=${pair%%:*} path=${pair#*:}
        strip -o ".gpu/$name" "$path"
        xz -T0 -6 -f ".gpu/$name"
    done
    if ! ls .gl/*.deb >/dev/null 2>&1; then
        mkdir -p .gl /tmp/amd64/partial
        o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
        # shellcheck disable=SC2086
        apt-get $o update -qq
        # shellcheck disable=SC2086
        (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    du -ch .gpu/* .gl/* | tail -1
    echo 'prepared: now `run` with command "bench/device_check.sh run", carry [".gpu", ".gl"], timeout_s 540'
    ;;
run)
    OUT="${OUT:-/tmp/device_check}"
    mkdir -p "$OUT"
    exec > >(tee "$OUT/device_check.log") 2>&1
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    fi
    bin=/tmp/objlab-bin
    mkdir -p $bin
    for name in objlab engine_tests; do xz -dc ".gpu/$name.xz" >"$bin/$name"; chmod +x "$bin/$name"; done
    nvidia-smi -L || true
    steps="${STEPS:-500}"
    # Twice: the first process on a fresh machine autotunes (and trained 2.5x slower once,
    # docs/performance.md, Next steps 4); the second finds cubecl's on-disk cache.
    for round in 1 2; do
        echo "== objlab, wgpu over Vulkan ($steps steps, process $round)"
        timeout 200 "$bin/objlab" bench --preset baby-gpt --device gpu --steps "$steps" \
            --data assets/tinyshakespeare.txt ${SOFTWARE:+--software} || echo "objlab bench failed: $?"
    done
    # The same without the captured step (each step launched kernel by kernel, as before the
    # twenty-fifth session): what replaying the forward and backward pass buys on this GPU.
    echo "== objlab, wgpu over Vulkan, capture=0 ($steps steps)"
    timeout 120 "$bin/objlab" bench --preset baby-gpt --device gpu --steps "$steps" --set capture=0 \
        --data assets/tinyshakespeare.txt ${SOFTWARE:+--software} || echo "objlab bench failed: $?"
    echo "== PyTorch eager, CUDA ($steps steps)"
    timeout 120 python3 bench/pytorch_baby_gpt.py --device cuda --steps "$steps" \
        --data assets/tinyshakespeare.txt || echo "PyTorch bench failed: $?"
    echo "== engine/tests/training.rs on this GPU"
    # engine/tests/training.rs (the wgpu tests and the rest); the assets from this checkout
    CARGO_MANIFEST_DIR="$PWD/engine" OBJLAB_REQUIRE_WGPU=1 timeout 150 "$bin/engine_tests" || echo "engine tests failed: $?"
    echo "== objlab kernel profile, wgpu over Vulkan (${PROFILE_STEPS:-20} steps, each launch timed)"
    timeout 90 "$bin/objlab" bench --preset baby-gpt --device gpu --steps "${PROFILE_STEPS:-20}" --kernel-profile \
        --data assets/tinyshakespeare.txt ${SOFTWARE:+--software} || echo "kernel profile failed: $?"
    ;;
*)
    echo "usage: bench/device_check.sh prepare|run" >&2
    exit 2
    ;;
esac
