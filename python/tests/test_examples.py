"""The examples the README shows run as shipped (python/examples)."""
import os
import pathlib
import subprocess
import sys

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
    import re
    readme = (EXAMPLES.parents[1] / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", readme, re.S)


def test_every_python_block_of_the_readme_runs(faiss):
    """Each ```python block of the README runs as written, in a fresh
    namespace (a block that needs a name it does not define fails)."""
    blocks = readme_python_blocks()
    assert len(blocks) >= 4, "the README's Python examples were not found"
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, "README.md python block %d" % i, "exec"), {"__name__": "readme"})
        finally:
            import flashkm
            flashkm.unpatch()
