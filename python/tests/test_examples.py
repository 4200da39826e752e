"""The examples the README shows run as shipped (python/examples)."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def test_quickstart_prints_identical_centroids(faiss):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(EXAMPLES.parent)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    r = subprocess.run([sys.executable, str(EXAMPLES / "quickstart.py")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "centroids identical, bit for bit" in r.stdout, r.stdout
    assert "profile faiss-%s" % faiss.__version__ in r.stdout, r.stdout


def readme_python_blocks():
    readme = (EXAMPLES.parents[1] / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", readme, re.S)


BLOCKS = readme_python_blocks()


def test_the_readme_has_its_python_examples():
    assert len(BLOCKS) >= 5, "the README's Python examples were not found"


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_block_runs(faiss, i):
    """Each ```python block of the README runs as written, in a fresh
    namespace (a block that needs a name it does not define fails). A block
    that imports torch runs where torch is installed (Debian's CI run; the
    pip-wheel virtual environments skip it, saying so)."""
    code = BLOCKS[i]
    if re.search(r"^import torch\b", code, re.M):
        pytest.importorskip("torch")
    try:
        exec(compile(code, "README.md python block %d" % i, "exec"), {"__name__": "readme"})
    finally:
        import flashkm
        flashkm.unpatch()
