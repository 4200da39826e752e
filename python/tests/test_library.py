"""Finding and loading the C library."""
import os
import subprocess
import sys

import pytest

import flashkm

PKG = os.path.join(os.path.dirname(__file__), "..")


def run_python(code, env):
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=PKG,
                          capture_output=True, text=True)


def test_library_version_matches_the_package():
    assert flashkm.version() == flashkm.__version__
    assert os.path.isfile(flashkm.library_path())


def test_flashkm_library_env_var_is_honoured():
    if "FLASHKM_LIBRARY" not in os.environ:
        pytest.skip("FLASHKM_LIBRARY is not set")
    assert flashkm.find_library() == os.environ["FLASHKM_LIBRARY"]
    assert flashkm.library_path() == os.environ["FLASHKM_LIBRARY"]


def test_missing_library_is_a_clear_error():
    env = dict(os.environ, FLASHKM_LIBRARY="/nonexistent/libflashkm.so")
    r = run_python("import flashkm\n"
                   "try:\n    flashkm.Kmeans(4, 2).train([[0.0] * 4] * 4)\n"
                   "except flashkm.LibraryNotFound as e:\n    print('LNF', e)\n", env)
    assert "LNF FLASHKM_LIBRARY=/nonexistent/libflashkm.so: no such file" in r.stdout, r.stderr


def test_context_reports_backend_and_device():
    ctx = flashkm.Context("cpu")
    assert ctx.backend == "cpu" and "CPU" in ctx.device_name
    ctx.close()
