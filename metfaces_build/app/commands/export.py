"""`metfaces-build export`: argparse -> ExportOptions -> stages.export.export -> exit code."""
from __future__ import annotations

from ...infra.stage import default_of, options_from_args
from ..flags import add_common, positive_int, print_summary

from ...stages import export as stage
from ...stages import export_formats as formats

DESCRIPTION = stage.__doc__ + "\n" + formats.__doc__


def configure_parser(p) -> None:
    p.add_argument("--work", metavar="DIR", default=None,
                   help="work directory: crops and manifest from DIR/images, departments "
                        "from DIR/objects.jsonl (default: metfaces-work)")
    p.add_argument("--images", metavar="DIR", default=None,
                   help="align output folder (crops + aligned.json) to export instead of "
                        "DIR/images")
    p.add_argument("--out", metavar="PATH", required=True,
                   help="dataset.zip, or a folder (see --layout; other formats: a folder)")
    p.add_argument("--format", choices=stage.FORMATS,
                   default=default_of(stage.ExportOptions, "format"),
                   help="stylegan (default: StyleGAN2-ADA/StyleGAN3 zip or folder), "
                        "webdataset (tar shards), hf (Hugging Face dataset folder with a "
                        "dataset card) or folder (PNGs + metadata.jsonl)")
    p.add_argument("--layout", choices=("zip", "folder"), default=None,
                   help="--format stylegan: zip (default when --out ends in .zip) or folder "
                        "(otherwise)")
    p.add_argument("--shard-size", metavar="N|SIZE", default=None,
                   help="--format webdataset: samples per shard (default "
                        f"{formats.DEFAULT_SHARD_SAMPLES}), or a byte bound such as 500MB "
                        "or 1GiB")
    p.add_argument("--no-labels", action="store_true",
                   help="unconditional dataset: dataset.json has \"labels\": null")
    p.add_argument("--resolution", type=positive_int, metavar="N", default=None,
                   help="require every crop to be NxN (default: any one power-of-two size)")
    p.add_argument("--skip-bad", action="store_true",
                   help="export the crops that check out and list the others in the sidecar "
                        "(exit 1), instead of writing nothing")
    add_common(p, workers=False, force=False)


def main(args) -> int:
    from ...infra.workdir import Work
    work = Work(args.work) if args.work else None
    return print_summary(stage.export(work, options_from_args(stage.ExportOptions, args)))
