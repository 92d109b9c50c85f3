"""--executor dask: the same detect and align outputs as local runs, over a LocalCluster of
two worker processes; the executor's ordering, per-worker setup and errors."""
from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
from PIL import Image

from metfaces_build.core.errors import UsageError


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    import cloudpickle
    # the helper functions below travel to the workers by value (tests/ is not importable there)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as c:
        yield c.scheduler_address
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


# ---- the executor ----------------------------------------------------------------------

def _mark_setup(folder):
    """An initializer that leaves one marker file per call, named by process."""
    import os
    import uuid
    open(os.path.join(folder, f"{os.getpid()}-{uuid.uuid4().hex}"), "w").close()


def _square_with_pid(x):
    import os
    import time
    time.sleep(0.01 * (x % 3))  # finish out of order
    return x * x, os.getpid()


def _fail_on_3(x):
    if x == 3:
        raise ValueError("task 3 is broken")
    return x


def _broken_setup():
    raise FileNotFoundError("/only/on/the/client/model.dat")


def test_imap_ordered_and_setup_once_per_worker_process(cluster, tmp_path):
    from metfaces_build.infra.dask_executor import DaskExecutor
    ex = DaskExecutor(cluster, _mark_setup, (str(tmp_path),))
    out = list(ex.imap(_square_with_pid, range(40)))
    assert [r for r, _ in out] == [x * x for x in range(40)]
    pids = {pid for _, pid in out}
    assert pids and os.getpid() not in pids
    markers = [p.name.split("-")[0] for p in tmp_path.iterdir()]
    assert sorted(markers) == sorted(str(p) for p in pids)  # once in each process that worked
    # unordered: every result, once
    ex = DaskExecutor(cluster)
    assert sorted(r for r, _ in ex.imap(_square_with_pid, range(25), ordered=False)) == \
        [x * x for x in range(25)]


def test_task_errors_are_raised_here(cluster):
    from metfaces_build.infra.dask_executor import DaskExecutor
    it = DaskExecutor(cluster).imap(_fail_on_3, range(8))
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="task 3 is broken"):
        next(it)


def test_setup_failure_on_a_worker_is_a_usage_error(cluster):
    from metfaces_build.infra.dask_executor import DaskExecutor
    with pytest.raises(UsageError, match="shared filesystem"):
        list(DaskExecutor(cluster, _broken_setup).imap(_fail_on_3, range(2)))


# ---- the stages: dask output == local output --------------------------------------------

def _face_images(folder: Path) -> None:
    """Four face photos (a real face in several sizes and mirrorings) and a faceless one."""
    from test_detect import face_photo
    folder.mkdir()
    photo = face_photo()
    photo.save(folder / "a.jpg", quality=92)
    photo.transpose(Image.FLIP_LEFT_RIGHT).save(folder / "b.png")
    photo.resize((photo.width * 3, photo.height * 3), Image.LANCZOS).save(folder / "c.jpg", quality=90)
    photo.rotate(8, expand=True).save(folder / "d.png")
    Image.new("RGB", (300, 200), (90, 120, 60)).save(folder / "e.png")


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_detect_and_align_same_output_as_local(cluster, tmp_path, cli):
    src = tmp_path / "src"
    _face_images(src)
    runs = {}
    for kind, extra in (("local", ["--workers", 2]), ("dask", ["--executor", "dask",
                                                               "--scheduler", cluster])):
        out = tmp_path / kind
        rc, stdout, err = cli("detect", "--images", src, "--out", out / "faces.json", "--quiet",
                              *extra)
        assert rc == 0, err
        rc, stdout, err = cli("align", "--json", out / "faces.json", "--source-images", src,
                              "--output-dir", out / "crops", "--size", 256, "--quiet", *extra)
        assert rc == 0, err
        runs[kind] = _tree(out)
    assert runs["dask"] == runs["local"]
    faces = json.loads(runs["local"]["faces.json"])
    assert {f["obj_id"] for f in faces} == {"a", "b", "c", "d"}
    assert len([n for n in runs["local"] if n.startswith("crops/") and n.endswith(".png")]) == len(faces)


def test_random_shift_align_same_as_local(cluster, tmp_path, cli):
    """Pre-drawn shifts: MetFaces-U crops do not depend on where they were computed."""
    src = tmp_path / "src"
    _face_images(src)
    assert cli("detect", "--images", src, "--out", tmp_path / "faces.json", "--quiet",
               "--workers", 1)[0] == 0
    trees = []
    for extra in (["--workers", 1], ["--executor", "dask", "--scheduler", cluster]):
        out = tmp_path / f"u{len(trees)}"
        rc, _, err = cli("align", "--json", tmp_path / "faces.json", "--source-images", src,
                         "--output-dir", out, "--size", 128, "--random-shift", 0.2,
                         "--retry-crops", "--no-rotation", "--quiet", *extra)
        assert rc in (0, 1), err
        trees.append(_tree(out))
    assert trees[0] == trees[1]


# ---- user mistakes: exit 2, one clear line ---------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, msg", [
    (["--executor", "dask"], "needs --scheduler ADDRESS"),
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler goes with --executor dask"),
    (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:{port}"], "cannot reach the Dask scheduler"),
    (["--executor", "dask", "--scheduler", "127.0.0.1"], "expected tcp://HOST:PORT"),
    (["--executor", "ray"], "invalid choice"),
])
def test_executor_usage_errors(tmp_path, cli, monkeypatch, argv, msg):
    pytest.importorskip("distributed")
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    import dask
    monkeypatch.setitem(dask.config.config, "scheduler-address", None)
    (tmp_path / "imgs").mkdir()
    argv = [a.format(port=_free_port()) for a in argv]
    rc, _, err = cli("detect", "--images", tmp_path / "imgs", "--out", tmp_path / "f.json",
                     "--quiet", *argv)
    assert rc == 2 and msg in err and "Traceback" not in err


def test_missing_dask_says_how_to_install(tmp_path, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (64, 64)).save(src / "a.png")
    j = tmp_path / "m.json"
    j.write_text("[]")
    for scheduler in (["--scheduler", "tcp://127.0.0.1:8786"], []):
        rc, _, err = cli("align", "--json", j, "--source-images", src, "--output-dir",
                         tmp_path / "o", "--executor", "dask", *scheduler)
        assert rc == 2 and "pip install 'metfaces-build[dask]'" in err


def test_help_mentions_the_executor(cli):
    for stage in ("detect", "align"):
        rc, out, _ = cli(stage, "--help")
        assert rc == 0 and "--executor {local,dask}" in out and "--scheduler ADDRESS" in out
