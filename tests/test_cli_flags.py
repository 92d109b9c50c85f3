"""Issue 19: no flag prefix matching, `--work` on align / compare / verify, "did you mean"
for a mistyped command."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from metfaces_build.infra.workdir import Work


def _record(obj_id, source):
    lm = [[100 + (i % 17) * 5, 100 + (i // 17) * 20] for i in range(68)]
    return {"obj_id": obj_id, "source_path": source, "face_idx": 0,
            "face_spec": {"rect": [90, 90, 200, 200], "landmarks": lm, "shrink": 1}}


def _work_with_filtered(tmp_path) -> Work:
    w = Work(tmp_path / "work")
    (w.path / "originals").mkdir(parents=True)
    rng = np.random.RandomState(0)
    small = rng.randint(0, 256, size=(20, 20, 3)).astype(np.uint8)
    Image.fromarray(small).resize((300, 300), Image.BILINEAR).save(w.path / "originals" / "1.png")
    w.filtered_json.write_text(json.dumps([_record("1", "originals/1.png")]))
    return w


def test_align_work_reads_filtered_json_and_writes_images(cli, tmp_path):
    w = _work_with_filtered(tmp_path)
    rc, out, err = cli("align", "--work", w.path, "--size", 64, "--supersampling", 1, "--quiet")
    assert rc == 0, err
    assert (w.images_dir / "1-00.png").is_file() and w.aligned_manifest.is_file()
    # an explicit flag overrides its part of the layout
    rc, _, err = cli("align", "--work", w.path, "--output-dir", tmp_path / "elsewhere",
                     "--size", 64, "--supersampling", 1, "--quiet")
    assert rc == 0, err
    assert (tmp_path / "elsewhere" / "1-00.png").is_file()


def test_align_needs_work_or_all_three_paths(cli, tmp_path):
    rc, _, err = cli("align", "--json", tmp_path / "x.json")
    assert rc == 2 and "--work DIR" in err and "--source-images, --output-dir" in err
    assert "Traceback" not in err


def test_flag_prefixes_are_not_expanded(cli, tmp_path):
    """`--work` used to become `--workers` (argparse's allow_abbrev) on the stages without
    --work; any prefix of a longer flag is now an unknown argument."""
    for argv in (("align", "--wor", tmp_path), ("detect", "--max-s", "512"),
                 ("verify", "--json", "x", "--imag", tmp_path), ("compare", "--regen", "x")):
        rc, _, err = cli(*argv)
        assert rc == 2 and "unrecognized arguments" in err, (argv, err)


def test_verify_and_compare_take_work(cli, tmp_path):
    w = _work_with_filtered(tmp_path)
    assert cli("align", "--work", w.path, "--size", 64, "--supersampling", 1, "--quiet")[0] == 0
    entry = json.loads(w.aligned_manifest.read_text())[0]
    ref = tmp_path / "metfaces.json"
    ref.write_text(json.dumps([{**_record("1", "originals/1.png"),
                                "image_path": "1-00.png", "image_md5": entry["file_md5"]}]))
    rc, out, err = cli("verify", "--json", ref, "--work", w.path, "--quiet")
    assert rc == 0, out + err
    assert out.startswith("verify: 1 crops") and "1 match" in out
    # compare --work: faces.json of the work dir against a stored list
    w.faces_json.write_text(w.filtered_json.read_text())
    rc, out, err = cli("compare", "--stored", w.filtered_json, "--work", w.path, "--quiet")
    assert rc == 0, out + err
    assert w.compare_json.is_file()
    rc, _, err = cli("verify", "--json", ref)
    assert rc == 2 and "--images" in err


def test_mistyped_command_suggests_the_closest(cli):
    rc, _, err = cli("algin", "--work", "x")
    assert rc == 2 and "did you mean align?" in err and "Traceback" not in err
    rc, _, err = cli("zzz")
    assert rc == 2 and "unknown command 'zzz'" in err and "did you mean" not in err


def test_top_level_help_lists_commands_and_examples(cli):
    """The top-level --help: every command with its one line, and examples (each
    command's own --help is checked in tests/test_help.py)."""
    from metfaces_build.app.cli import COMMANDS
    rc, out, _ = cli("--help")
    assert rc == 0 and "examples:" in out and "metfaces-build align --work W" in out
    for name, _, summary in COMMANDS:
        assert name in out and summary in out


def test_version_license_and_changelog_agree():
    import metfaces_build
    from conftest import REPO
    v = metfaces_build.__version__
    assert v == "0.2.0"
    pyproject = (REPO / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = {attr = "metfaces_build.__version__"}' in pyproject
    assert f"## {v}" in (REPO / "CHANGELOG.md").read_text()
    assert 'license = {text = "Apache-2.0"}' in pyproject
    lic = (REPO / "LICENSE").read_text()
    assert "Apache License" in lic and "Version 2.0, January 2004" in lic
    assert "END OF TERMS AND CONDITIONS" in lic


def test_version_says_which_copy_runs(capsys):
    from metfaces_build.app.cli import main
    import metfaces_build
    import os
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"metfaces-build {metfaces_build.__version__} (Python ")
    assert os.path.dirname(metfaces_build.__file__) in out
