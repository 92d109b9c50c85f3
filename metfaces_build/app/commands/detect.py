"""`metfaces-build detect`: argparse -> DetectOptions -> stages.detect.detect -> exit code."""
from __future__ import annotations

from ...infra.stage import default_of, options_from_args
from ..flags import add_common, add_executor, nonneg_int, positive_int, print_summary

from ...stages import detect as stage

DESCRIPTION = stage.__doc__


def configure_parser(p) -> None:
    D = stage.DetectOptions
    src = p.add_argument_group("input and output")
    src.add_argument("--work", metavar="DIR", default=None,
                     help="work directory: reads objects.jsonl + originals/, writes faces.json "
                          "and detect.jsonl (default: metfaces-work, unless --images is given)")
    src.add_argument("--images", metavar="DIR", help="detect in every image file in DIR instead")
    src.add_argument("--out", metavar="FILE", help="faces.json to write (required with --images)")
    det = p.add_argument_group("detection")
    det.add_argument("--detector", choices=stage.DETECTORS, default=default_of(D, "detector"),
                     help="hog (default), cnn or cascade; see above")
    det.add_argument("--upsample", type=nonneg_int, default=default_of(D, "upsample"), metavar="N",
                     help="HOG: upsample the shrunk image N times to find smaller faces "
                          "(default: %(default)s)")
    det.add_argument("--cnn-upsample", type=nonneg_int, default=default_of(D, "cnn_upsample"), metavar="N",
                     help="CNN: upsample N times (each ~4x the time; default: %(default)s)")
    det.add_argument("--cascade-score", type=float, default=default_of(D, "cascade_score"), metavar="S",
                     help="cascade: run the CNN when HOG's best score is below S "
                          "(default: %(default)s)")
    det.add_argument("--max-side", type=positive_int, default=default_of(D, "max_side"), metavar="PX",
                     help="shrink = ceil(long side / PX) (default: %(default)s)")
    det.add_argument("--min-face", type=nonneg_int, default=default_of(D, "min_face"), metavar="PX",
                     help="smallest crop side (original pixels) worth finding: faces too small "
                          "for the filter's resolution minimum (default: %(default)s = align's "
                          "--size) are not searched for, so large images need no upsampling "
                          "and the cascade's CNN runs on a reduced copy; 0: no minimum")
    det.add_argument("--max-pixels", type=positive_int, default=None, metavar="N",
                     help="refuse (too_large) images with more pixels (default: 250,000,000)")
    det.add_argument("--models-dir", metavar="DIR",
                     help="folder with the dlib .dat files (else $METFACES_MODELS, the "
                          "repository's models/, the face_recognition_models package)")
    add_common(p)
    add_executor(p)


def main(args) -> int:
    from ...infra.workdir import Work
    from ...stages.recipe import detect_work
    opts = options_from_args(stage.DetectOptions, args)
    if args.images:  # a plain folder: no work directory, no recipe
        return print_summary(stage.detect(Work(args.work) if args.work else None, opts))
    return print_summary(detect_work(Work(args.work or "metfaces-work"), opts,
                                     getattr(args, "_explicit", None)))
