"""The drivers of the split stages hold the lock of the folder they write (the packages'
shape is checked in test_code_shape.py, import cycles in test_api.py)."""
from __future__ import annotations

import pytest


def test_drivers_hold_the_lock_of_the_folder_they_write(tmp_path):
    """detect locks the folder of --out (not the image folder); filter its work directory;
    both before reading an image or a model, and a finished run leaves no lock behind."""
    from PIL import Image

    from metfaces_build.core.errors import UsageError
    from metfaces_build.infra.lock import LOCK_NAME, work_lock
    from metfaces_build.stages import detect, filter as flt
    images, out = tmp_path / "paintings", tmp_path / "out"
    images.mkdir()
    Image.new("RGB", (32, 32)).save(images / "1.png")
    opts = detect.DetectOptions(images=str(images), out=str(out / "faces.json"), quiet=True)
    with work_lock(out, command="align"):
        with pytest.raises(UsageError, match="in use by align"):
            detect.detect(None, opts)
    (tmp_path / "faces.json").write_text("[]")
    with work_lock(tmp_path, command="fetch"):
        with pytest.raises(UsageError, match="in use by fetch"):
            flt.filter(tmp_path, flt.FilterOptions(quiet=True))
    s = flt.filter(tmp_path, flt.FilterOptions(quiet=True))
    assert (s.kept, s.rejected, s.exit_code) == (0, 0, 0) and s.counts == {"kept": 0, "rejected": 0}
    assert s.outputs["filtered"] == tmp_path / "filtered.json" and not (tmp_path / LOCK_NAME).exists()
    again = flt.filter(tmp_path, flt.FilterOptions(quiet=True))
    assert again.up_to_date and again.line().endswith("(up to date; --force redoes it)")
