#!/usr/bin/env bash
# Per-iteration time of `flashkm train` with P MPI ranks (docs/distributed.md
# "Cost"): a compute-bound run (262,144 x 64, k = 1024) at P = 1 and 2 with
# one OpenMP thread per rank, and one process with 2 threads; a
# communication-bound run (8192 x 128, k = 4096: 2.1 MB of chains per
# iteration) at P = 1..4, whose time besides the search is the update and
# the messages. Prints the median ms/iter of iterations 2.. (the iteration
# statistics' times from --json) and checks every P's centroids against
# P = 1 byte for byte.
# usage: bench/mpi_scaling.sh BUILD_DIR [WORKDIR]
set -eu
cli=$(realpath "$1/cli/flashkm") work=${2:-/tmp/flashkm-mpi-scaling}
mkdir -p "$work" && cd "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# NVLink multicast off (docs/distributed.md), also for CUDA ranks
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
/usr/bin/python3 - <<'PY'
import numpy as np
rs = np.random.RandomState(2)
c = rs.randn(300, 64) * 4
np.save("compute.npy", (c[rs.randint(0, 300, 262144)] + rs.randn(262144, 64)).astype(np.float32))
np.save("comm.npy", np.random.RandomState(3).randn(8192, 128).astype(np.float32))
PY
median() { # json -> "total search" medians in ms
  /usr/bin/python3 -c "
import json, statistics as st, sys
s = json.load(open(sys.argv[1]))['iteration_stats']
t = [s[i]['time'] - s[i - 1]['time'] for i in range(1, len(s))]
ts = [s[i]['time_search'] - s[i - 1]['time_search'] for i in range(1, len(s))]
print('%.2f ms/iter, search %.2f, rest %.2f' % (1e3 * st.median(t), 1e3 * st.median(ts),
      1e3 * (st.median(t) - st.median(ts))))" "$1"
}
run() { # name P threads input k extra...
  local name=$1 np=$2 th=$3 in=$4 k=$5
  shift 5
  OMP_NUM_THREADS=$th mpiexec -np "$np" --oversubscribe --bind-to none "$cli" train "$in" -k "$k" \
    --faiss-profile flashkm --threads "$th" -q -o "$name.npy" --json "$name.json" "$@"
  echo "$name: P = $np, $th thread(s) per rank: $(median "$name.json")"
}
run compute_p1_t1 1 1 compute.npy 1024 --niter 6
run compute_p1_t2 1 2 compute.npy 1024 --niter 6
run compute_p2_t1 2 1 compute.npy 1024 --niter 6
cmp compute_p1_t1.npy compute_p2_t1.npy && cmp compute_p1_t1.npy compute_p1_t2.npy
for np in 1 2 3 4; do
  run comm_p$np "$np" 1 comm.npy 4096 --niter 8 --max-points-per-centroid 2 2>/dev/null
  cmp comm_p1.npy "comm_p$np.npy"
done
echo "every P: the centroids of P = 1, byte for byte"
