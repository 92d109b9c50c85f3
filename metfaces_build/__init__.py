"""metfaces-build: re-derive the MetFaces dataset from the Met Collection API.

The public API is small and imports nothing heavy until used::

    from metfaces_build import load_faces, align_face
"""
__version__ = "0.1.0"
PROJECT_URL = "https://github.com/metfaces-build/metfaces-build"

__all__ = ["__version__", "load_faces", "align_face"]


def __getattr__(name):
    # Lazy re-exports: `import metfaces_build` stays instant (no numpy/dlib at import time).
    if name == "load_faces":
        from .core.records import load_faces
        return load_faces
    if name == "align_face":
        from .stages.align import align_face
        return align_face
    raise AttributeError(name)
