"""`metfaces-build align`: argparse -> AlignOptions -> stages.align.align -> exit code."""
from __future__ import annotations

from ...core.errors import UsageError
from ...infra.stage import default_of, options_from_args
from ..flags import add_common, add_executor, nonneg_float, positive_int, print_summary, zlib_level

from ...stages import align as stage

DESCRIPTION = stage.__doc__


def configure_parser(p) -> None:
    A = stage.AlignOptions
    g = p.add_argument_group("inputs and outputs (--work DIR, or NVIDIA's three flags)")
    g.add_argument("--work", metavar="DIR", default=None,
                   help="a work directory: its filtered.json, sources under it, crops into "
                        "its images/ (each of the three flags below overrides its part)")
    g.add_argument("--json", metavar="FILE",
                   help="metfaces.json-compatible face list (NVIDIA's, or faces.json / "
                        "filtered.json from our detect and filter stages)")
    g.add_argument("--source-images", metavar="DIR",
                   help="folder that each record's source_path is relative to")
    g.add_argument("--output-dir", metavar="DIR",
                   help="where {obj_id}-{face_idx:02d}.png crops and aligned.json go")
    g = p.add_argument_group("alignment (NVIDIA's flags; defaults give MetFaces)")
    g.add_argument("--random-shift", type=nonneg_float, default=default_of(A, "random_shift"), metavar="S",
                   help="shift each crop centre by S x crop size x N(0,1) (MetFaces-U: 0.2); "
                        "draws come from RandomState(12345) in JSON order")
    g.add_argument("--retry-crops", action="store_true",
                   help="redraw a shift until the crop lies inside the image (1000 tries, "
                        "then the face is recorded as rejected)")
    g.add_argument("--no-rotation", action="store_true",
                   help="keep the crop axis-aligned instead of levelling the eyes")
    g.add_argument("--no-padding", action="store_true",
                   help="do not reflect-pad and blur where the crop leaves the image "
                        "(the warp then fills with black)")
    g.add_argument("--size", type=positive_int, default=default_of(A, "size"), help="output side (default 1024)")
    g.add_argument("--supersampling", type=positive_int, default=default_of(A, "supersampling"), metavar="S",
                   help="warp at size x S, then downscale with Lanczos (default 4)")
    g = p.add_argument_group("output")
    g.add_argument("--png-level", type=zlib_level, default=default_of(A, "png_level"), metavar="N",
                   help="zlib level of the PNG crops, 0-9 (default %(default)s: about 2.5x "
                        "faster to write than Pillow's default 6, files about 5%% larger; the "
                        "pixels are the same at every level)")
    g = p.add_argument_group("robustness")
    g.add_argument("--max-pixels", type=positive_int, default=default_of(A, "max_pixels"), metavar="N",
                   help="refuse sources with more pixels (decompression bombs; default "
                        "%(default)s)")
    g.add_argument("--skip-bad", action="store_true",
                   help="record invalid JSON records as failed and go on (default: refuse "
                        "the file with exit 2)")
    add_common(p)
    add_executor(p)


def io_paths(args) -> dict:
    """json, source_images and output_dir from --work DIR (its layout, infra/workdir.py)
    and the explicit flags, which win; a UsageError when one is left unset."""
    paths = {"json": args.json, "source_images": args.source_images,
             "output_dir": args.output_dir}
    if args.work is not None:
        from ...infra.workdir import Work
        w = Work(args.work)
        defaults = {"json": w.filtered_json, "source_images": w.path, "output_dir": w.images_dir}
        paths = {k: v if v is not None else str(defaults[k]) for k, v in paths.items()}
    missing = [f"--{k.replace('_', '-')}" for k, v in paths.items() if v is None]
    if missing:
        raise UsageError("align needs --work DIR, or all of --json, --source-images and "
                         f"--output-dir (missing: {', '.join(missing)})")
    return paths


def main(args) -> int:
    opts = options_from_args(stage.AlignOptions, args, **io_paths(args))
    if args.work is not None and args.json is None and args.source_images is None \
            and args.output_dir is None:  # the work directory's own crops: its recipe too
        from ...infra.workdir import Work
        from ...stages.recipe import align_work
        return print_summary(align_work(Work(args.work), opts, getattr(args, "_explicit", None)))
    return print_summary(stage.align(opts))
