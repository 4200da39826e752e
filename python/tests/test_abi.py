"""The ctypes layer (flashkm/_lib.py) against the C header it re-types by hand
(include/flashkm.h): struct layouts and constants as a C compiler sees them,
and the functions' parameters as the header declares them. A field, constant
or argument added to one and not the other fails here, not in a user's run."""
import ctypes
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from flashkm import _lib

HEADER_DIR = pathlib.Path(__file__).resolve().parents[2] / "include"
HEADER = HEADER_DIR / "flashkm.h"

STRUCTS = {  # ctypes class -> C type
    _lib.IterationStats: "fkm_iteration_stats",
    _lib.LoopOrder: "fkm_loop_order",
    _lib.Profile: "fkm_profile",
    _lib.Params: "fkm_params",
    _lib.Source: "fkm_source",
    _lib.MemoryPlan: "fkm_memory_plan",
}
# module constant prefix -> C prefix
CONSTANT_PREFIXES = {
    "BACKEND_": "FKM_BACKEND_", "DTYPE_": "FKM_DTYPE_", "METRIC_": "FKM_METRIC_",
    "ASSIGN_": "FKM_ASSIGN_", "LOG_": "FKM_LOG_", "SIMD_": "FKM_SIMD_", "INIT_": "FKM_INIT_",
    "PROBE_": "FKM_PROBE_", "FKM_": "FKM_",
}


def compiler():
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        pytest.fail("no C compiler (cc or gcc) to read include/flashkm.h with")
    return cc


def constants():
    out = {}
    for name, value in vars(_lib).items():
        if not isinstance(value, int) or isinstance(value, bool) or name.startswith("_"):
            continue
        for prefix, c_prefix in CONSTANT_PREFIXES.items():
            if name.startswith(prefix):
                out[name] = c_prefix + name[len(prefix):]
                break
    for value, c_name in _lib._STATUS_NAMES.items():
        out["_STATUS_NAMES[%d]" % value] = c_name
    return out


def c_layout(tmp_path):
    """What the compiler says: sizeof of each struct, offset and size of each
    field ctypes declares, and the value of each constant."""
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "flashkm.h"', "int main(void) {"]
    for cls, ctype in STRUCTS.items():
        lines.append('  printf("%s sizeof %%zu\\n", sizeof(%s));' % (ctype, ctype))
        for field, _ in cls._fields_:
            lines.append('  printf("%s.%s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                         % (ctype, field, ctype, field, ctype, field))
    for py, c in constants().items():
        lines.append('  printf("%s %%lld\\n", (long long)(%s));' % (c, c))
    lines += ["  return 0;", "}"]
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    exe = tmp_path / "layout"
    r = subprocess.run([compiler(), "-std=c11", "-I", str(HEADER_DIR), str(src), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, "the header and _lib.py disagree on a name:\n" + r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    layout = {}
    for line in out.splitlines():  # "T sizeof N", "T.field OFFSET SIZE", "NAME VALUE"
        if " sizeof " in line:
            key, _, value = line.rpartition(" ")
        else:
            key, value = line.split(" ", 1)
        layout[key] = value
    return layout


def test_struct_layouts_equal_the_compilers(tmp_path):
    layout = c_layout(tmp_path)
    for cls, ctype in STRUCTS.items():
        assert int(layout[ctype + " sizeof"]) == ctypes.sizeof(cls), (
            "%s: the C struct has %s bytes, ctypes %d (a field missing on one side?)"
            % (ctype, layout[ctype + " sizeof"], ctypes.sizeof(cls)))
        for field, ftype in cls._fields_:
            offset, size = (int(v) for v in layout["%s.%s" % (ctype, field)].split())
            assert (getattr(cls, field).offset, ctypes.sizeof(ftype)) == (offset, size), (
                "%s.%s: C offset %d size %d, ctypes offset %d size %d"
                % (ctype, field, offset, size, getattr(cls, field).offset, ctypes.sizeof(ftype)))


def test_constants_equal_the_headers(tmp_path):
    layout = c_layout(tmp_path)
    for py, c in constants().items():
        value = (int(py[len("_STATUS_NAMES["):-1]) if py.startswith("_STATUS_NAMES[")
                 else getattr(_lib, py))
        assert int(layout[c]) == value, "%s = %d in _lib.py, %s = %s in the header" % (
            py, value, c, layout[c])


# ---------------------------------------------------------------- functions

def header_text():
    return re.sub(r"/\*.*?\*/", " ", HEADER.read_text(), flags=re.S)


# the header's function-pointer typedefs: typedef R (*name)(...)
FN_POINTERS = tuple(re.findall(r"typedef[^;{]*\(\s*\*\s*(\w+)\s*\)", header_text()))
ENUMS = tuple(re.findall(r"typedef\s+enum\s+\w*\s*\{[^}]*\}\s*(\w+)\s*;", header_text()))


def c_class(t):
    """An ABI class of a C parameter or return type: (kind, bytes)."""
    t = re.sub(r"\b(const|struct|enum)\b", " ", t).strip()
    if "*" in t or t in FN_POINTERS:
        return ("pointer", 8)
    if t == "void":
        return None
    sizes = {"int64_t": 8, "size_t": 8, "unsigned": 4, "int": 4, "double": 8, "float": 4}
    if t in ("double", "float"):
        return ("float", sizes[t])
    if t in sizes:
        return ("int", sizes[t])
    if t in ENUMS:
        return ("int", 4)
    raise AssertionError("a C type this test does not know: %r" % t)


def ctypes_class(t):
    if t is None:
        return None
    if t in (ctypes.c_void_p, ctypes.c_char_p) or issubclass(t, (ctypes._Pointer,
                                                                 ctypes._CFuncPtr)):
        return ("pointer", 8)
    if t in (ctypes.c_float, ctypes.c_double):
        return ("float", ctypes.sizeof(t))
    return ("int", ctypes.sizeof(t))


def header_prototypes():
    text = header_text()
    protos = {}
    for m in re.finditer(r"FKM_API\s+([^;(]*?)\b(fkm_\w+)\s*\(([^)]*)\)\s*;", text):
        ret, name, args = m.group(1).strip(), m.group(2), m.group(3).strip()
        params = [] if args in ("", "void") else [
            re.sub(r"\s*\b\w+$", "", a.strip()) for a in args.split(",")]
        protos[name] = (ret, params)
    return protos


def test_function_signatures_follow_the_header():
    assert "fkm_progress_fn" in FN_POINTERS and "fkm_status" in ENUMS, (FN_POINTERS, ENUMS)
    protos = header_prototypes()
    assert "fkm_train" in protos and len(protos) >= 20, sorted(protos)
    lib = _lib.lib()
    for name in _lib._SIGNATURES:
        assert name in protos, "_lib.py declares %s, which the header does not" % name
        ret, params = protos[name]
        f = getattr(lib, name)
        assert len(f.argtypes) == len(params), "%s: %d arguments in the header, %d in ctypes" % (
            name, len(params), len(f.argtypes))
        for i, (c, py) in enumerate(zip(params, f.argtypes)):
            assert c_class(c) == ctypes_class(py), "%s argument %d: C %r, ctypes %r" % (
                name, i, c, py)
        assert c_class(ret) == ctypes_class(f.restype), "%s returns C %r, ctypes %r" % (
            name, ret, f.restype)
