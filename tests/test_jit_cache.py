"""numba's disk cache lives in the user's cache directory, never beside the package's
source (issue 19: files left in site-packages shadowed a later editable install)."""
import os
import subprocess
import sys
import textwrap

import pytest

from metfaces_build.core import jit

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cache_dir_precedence():
    assert jit.cache_dir({"NUMBA_CACHE_DIR": "/n", "METFACES_CACHE_DIR": "/m"}) == "/n"
    assert jit.cache_dir({"METFACES_CACHE_DIR": "/m", "XDG_CACHE_HOME": "/x"}) == \
        os.path.join("/m", "numba")
    if sys.platform.startswith("linux"):
        assert jit.cache_dir({"XDG_CACHE_HOME": "/x"}) == "/x/metfaces-build/numba"
        assert jit.cache_dir({}) == os.path.expanduser("~/.cache/metfaces-build/numba")


def _files(root, suffixes=(".nbi", ".nbc")):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs if f.endswith(suffixes))


def _run_kernel(tmp_path, env_extra):
    """Compile and run a kernel from a module in a package folder of its own, in a fresh
    interpreter (numba reads its config at import), with the given environment."""
    pytest.importorskip("numba")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "kern.py").write_text(textwrap.dedent("""
        from metfaces_build.core.jit import compiled

        def _add(a, b):
            return a + b

        def run():
            return compiled(_add)(2, 3)
    """))
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "METFACES_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(env_extra, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]),
               PYTHONDONTWRITEBYTECODE="1")
    out = subprocess.run([sys.executable, "-c", "import pkg.kern as k; print(k.run())"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5"
    return pkg


def test_kernel_cache_goes_to_the_user_cache_dir(tmp_path):
    cache = tmp_path / "xdg"
    pkg = _run_kernel(tmp_path, {"XDG_CACHE_HOME": str(cache)})
    assert _files(str(pkg)) == []                       # nothing beside the source
    assert _files(str(cache / "metfaces-build" / "numba"))  # .nbi and .nbc there instead


def test_metfaces_cache_dir_and_numba_cache_dir_override(tmp_path):
    mine = tmp_path / "mine"
    pkg = _run_kernel(tmp_path, {"METFACES_CACHE_DIR": str(mine),
                                 "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    assert _files(str(pkg)) == [] and _files(str(mine / "numba"))
    assert not (tmp_path / "xdg").exists()


def test_unwritable_cache_dir_compiles_without_a_disk_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    pkg = _run_kernel(tmp_path, {"METFACES_CACHE_DIR": str(blocker)})
    assert _files(str(pkg)) == []
