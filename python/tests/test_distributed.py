"""Distributed runs through the Python door (docs/distributed.md):
mpiexec starts 1 to 3 ranks of mpi_worker.py, each training on its rows
with comm=, and each must get the one-process bits. Needs Debian's
openmpi-bin and python3-mpi4py (scripts/setup-deps.sh installs them; the
README's test command sets FLASHKM_REQUIRE_MPI=1, so there they never
skip)."""
import os
import shutil
import subprocess
import sys

import pytest

WORKER = os.path.join(os.path.dirname(__file__), "mpi_worker.py")


def _mpi_or_skip():
    have = shutil.which("mpiexec") is not None
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        have = False
    if not have:
        if os.environ.get("FLASHKM_REQUIRE_MPI") == "1":
            pytest.fail("mpiexec or mpi4py is missing and FLASHKM_REQUIRE_MPI=1")
        pytest.skip("no mpiexec or mpi4py (Debian: openmpi-bin, python3-mpi4py)")


def _mpi_env(**extra):
    """The ranks' environment: OpenMPI as root, one OpenMP thread a rank,
    shared-memory copies without cross-memory attach, NVLink multicast off
    (docs/distributed.md)."""
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMP_NUM_THREADS="1", OMPI_MCA_btl_vader_single_copy_mechanism="none",
                NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1",
                NVSHMEM_DISABLE_NVLS="1", **extra)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_every_rank_gets_the_one_process_bits(ranks):
    _mpi_or_skip()
    env = _mpi_env()
    r = subprocess.run(["mpiexec", "-np", str(ranks), "--oversubscribe", sys.executable,
                        "-m", "mpi4py", WORKER], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("blobs", "blobs_uneven_subsampled_weighted", "float16_spherical",
                 "fashion_mnist"):
        assert r.stdout.count(": %s: rows" % name) == ranks, r.stdout


def test_the_readme_example_runs_as_shown():
    """python/examples/distributed.py, shown verbatim in the README, on 2
    ranks."""
    _mpi_or_skip()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    example = os.path.join(root, "python", "examples", "distributed.py")
    with open(os.path.join(root, "README.md")) as f:
        assert open(example).read() in f.read(), "the README's copy of distributed.py differs"
    env = _mpi_env(PYTHONPATH=os.pathsep.join([os.path.join(root, "python"),
                                               os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(["mpiexec", "-np", "2", "--oversubscribe", sys.executable, "-m", "mpi4py",
                        example], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 ranks: the one-process centroids, bit for bit" in r.stdout, r.stdout + r.stderr


def test_a_communicator_must_be_mpi4py():
    import flashkm
    from flashkm import _lib
    ctx = _lib.Context("cpu")
    with pytest.raises(TypeError):
        ctx.set_comm(3)
    assert ctx.rank == (0, 1)
    ctx.close()
