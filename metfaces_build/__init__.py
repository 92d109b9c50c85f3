"""metfaces-build: re-derive the MetFaces dataset from the Met Collection API.

The public API is small and imports nothing heavy until used (see metfaces_build.api)::

    from metfaces_build import Work, serve_emulator, fetch, detect, filter, align, report

    work = Work("my-work")
    with serve_emulator() as api:           # the sample collection, offline
        fetch(work, api=api.url, departments="European Paintings", limit=10)
    detect(work)                            # -> faces.json
    filter(work)                            # -> filtered.json
    align(work)                             # -> images/*.png, images/aligned.json
    report(work)                            # -> report/report.md

    from metfaces_build import detect_image, align_face, load_faces
    faces = detect_image("painting.jpg")    # FaceRecords, face_spec in the shrunk frame
    crop = align_face("painting.jpg", faces[0].face_spec, size=256)
"""
__version__ = "0.1.0"
PROJECT_URL = "https://github.com/metfaces-build/metfaces-build"

# public name -> module that defines it (imported on first use: `import metfaces_build`
# stays instant, no numpy/dlib/scipy/numba)
_EXPORTS = {
    "Work": "metfaces_build.infra.workdir",
    "UsageError": "metfaces_build.core.errors",
    "FaceRecord": "metfaces_build.core.records",
    "FaceSpec": "metfaces_build.core.records",
    **{name: "metfaces_build.api" for name in (
        "fetch", "detect", "filter", "align", "compare", "report", "review", "export", "verify",
        "run", "status",
        "load_faces", "detect_image", "align_face", "serve_emulator")},
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'metfaces_build' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
