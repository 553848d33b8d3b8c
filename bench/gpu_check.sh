#!/usr/bin/env bash
# One go on a CUDA machine (e.g. an H200 session): the CUDA tests, the pipeline benchmark,
# the network-alone FPS and its batch-6 vs batch-1 step, everything written under $OUT
# (default out/gpu_check).
#
#   bash bench/gpu_check.sh              # on a GPU: ~5-10 minutes (torch.compile ~1 min of it)
#   QUICK=1 bash bench/gpu_check.sh      # shorter benches
#   PYTHON=/opt/venv/bin/python bash bench/gpu_check.sh
#
# It needs a Python with CUDA torch, numpy, opencv, onnx (and onnxruntime-gpu for the ONNX
# Runtime/TensorRT rows): by default .venv/bin/python if it exists, else python3. Without a GPU
# it runs anyway: the CUDA tests skip and the benches run their CPU rows in --quick mode, so
# the script itself is checked on any machine. Exit status: that of the CUDA tests.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/gpu_check}
mkdir -p "$out"
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

log() { echo "gpu_check: $*" | tee -a "$out/summary.txt"; }
: > "$out/summary.txt"

if ! "$python" -c 'import torch, numpy, cv2, onnx' 2>"$out/imports.txt"; then
  log "missing packages for $python: $(tail -1 "$out/imports.txt")"
  exit 2
fi
cuda=$("$python" -c 'import torch; print(int(torch.cuda.is_available()))')
"$python" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "gpus", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])' \
  | tee -a "$out/summary.txt"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi > "$out/nvidia-smi.txt" 2>&1
  log "driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
fi
quick=()
if [ "${QUICK:-0}" = 1 ] || [ "$cuda" = 0 ]; then
  quick=(--quick)
  [ "$cuda" = 0 ] && log "no CUDA GPU: CUDA tests will skip, benches run --quick on the CPU"
fi

# 1. CUDA tests (the device pipeline, the existing CUDA tests of the Segmenter and model).
log "tests -> $out/tests.txt"
"$python" -m pytest -q -p no:cacheprovider -rs test/test_cuda_pipeline.py \
  test/test_segmenter.py test/test_model.py test/test_fuse.py test/test_frame_pipeline.py \
  > "$out/tests.txt" 2>&1
tests=$?
log "tests exit status $tests: $(tail -1 "$out/tests.txt")"

# 2. Camera frame -> labels, every path and device (docs/benchmarks.md).
log "bench_pipeline -> $out/bench_pipeline.md"
"$python" -m bench.bench_pipeline "${quick[@]}" > "$out/bench_pipeline.md" 2> "$out/bench_pipeline.err"
log "bench_pipeline exit status $?"

# 3. The network alone at the paper's Cityscapes sizes (targets: X39 >= 1000 FPS, R18 >= 900).
log "bench_network -> $out/bench_network.md"
net_args=(--configs xception39:1536x768 resnet18:2048x1024)
[ "$cuda" = 0 ] && net_args=(--configs xception39:640x360 --iters 2)
"$python" -m bench.bench_network "${net_args[@]}" > "$out/bench_network.md" 2> "$out/bench_network.err"
log "bench_network exit status $?"

# 4. Batch 6 against batch 1 at 1280x720, Xception39: six cameras in one forward pass
#    (issue 19 target on a GPU: the batch-6 step <= 2x the batch-1 step).
log "bench_network batches -> $out/bench_network_batch.md"
batch_args=(--configs xception39:1280x720 --batches 1 6 --no-cpu)
[ "$cuda" = 0 ] && batch_args=(--configs xception39:320x180 --batches 1 6 --iters 2)
"$python" -m bench.bench_network "${batch_args[@]}" > "$out/bench_network_batch.md" \
  2> "$out/bench_network_batch.err"
log "bench_network batches exit status $?"
exit $tests
