"""The emulator's sample Met collection: realistic originals with faces whose landmarks we know.

Nothing third-party is committed: the images are composed at start-up from the two
public-domain face photos that registry packages ship (matplotlib's `grace_hopper.jpg`,
scikit-image's `astronaut.png`; install with `pip install .[demo]`). Each face is pasted
with a known similarity transform (scale, tilt, position), so the 68 landmarks dlib's
predictor finds on the source photo, pushed through the same transform, are the ground
truth for scoring detection. Whole canvases are then made painting-like (posterized,
oil-ish, grayscale drawings, sepia prints). Everything is deterministic and cached under
a version key, so only the first start pays the ~30 s build.
"""
from __future__ import annotations

import hashlib
import html
import importlib.util
import io
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import struct
import sys
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from ..core.records import FaceKey
from ..infra.files import atomic_write_bytes, atomic_write_text

VERSION = "sample-v2"
SEED = 20201102

# The departments the real API lists (id, display name); MET_API.md.
DEPARTMENTS = [
    (1, "American Decorative Arts"), (3, "Ancient Near Eastern Art"), (4, "Arms and Armor"),
    (5, "Arts of Africa, Oceania, and the Americas"), (6, "Asian Art"), (7, "The Cloisters"),
    (8, "The Costume Institute"), (9, "Drawings and Prints"), (10, "Egyptian Art"),
    (11, "European Paintings"), (12, "European Sculpture and Decorative Arts"),
    (13, "Greek and Roman Art"), (14, "Islamic Art"), (15, "The Robert Lehman Collection"),
    (16, "The Libraries"), (17, "Medieval Art"), (18, "Musical Instruments"), (19, "Photographs"),
    (21, "Modern Art"),
]
DEPT_NAME = dict(DEPARTMENTS)
# the name a record carries, where it differs from the /departments display name (as at the
# real Met: met/shapes.py)
DEPT_RECORD_NAME = {1: "The American Wing", 15: "Robert Lehman Collection", 21: "Modern and Contemporary Art"}
# department -> (image path code, styles used, medium, classification)
DEPT_STYLE = {
    11: ("ep", ("oil", "posterize"), "Oil on canvas", "Paintings"),
    15: ("rl", ("oil", "sepia"), "Tempera and oil on wood", "Paintings"),
    9: ("dp", ("drawing", "sepia"), "Red chalk on paper", "Drawings"),
    1: ("ad", ("posterize", "oil"), "Oil on canvas", "Paintings"),
    19: ("ph", ("photo", "sepia"), "Albumen silver print", "Photographs"),
}
ARTISTS = ["Jean-Baptiste Greuze", "Gilbert Stuart", "Rembrandt van Rijn", "Élisabeth Vigée Le Brun",
           "John Singer Sargent", "Hans Holbein the Younger", "Mary Cassatt", "Unknown artist",
           "Thomas Eakins", "Julia Margaret Cameron"]
SUBJECTS = ["Portrait of a Woman", "Portrait of a Man", "A Young Girl", "The Artist's Wife",
            "Two Sisters", "A Family Group", "Study of a Head", "Lady in White", "The Scholar",
            "Saint Catherine", "Madame X (study)", "A Sailor"]
EARTH_DARK = [(52, 38, 28), (70, 58, 40), (38, 44, 36), (90, 62, 38), (30, 30, 34), (84, 74, 56)]
EARTH_LIGHT = [(196, 178, 142), (170, 150, 112), (214, 200, 170), (150, 140, 120), (188, 160, 120)]
HUGE_SIZE = (20000, 15000)  # 300 Mpx: over the fetch default --max-pixels, ~40 kB as a 1-bit PNG


@dataclass
class PlacedFace:
    """One pasted face: its rect and 68 landmarks in the original's pixel frame."""
    rect: list           # [l, t, r, b] ints
    landmarks: list      # 68 [x, y] floats (pixel-index convention, centre of pixel i = i)
    source: str          # which photo


@dataclass
class SampleObject:
    """One object of the sample collection and the facts that decide its API record."""
    id: int
    department_id: int
    title: str
    artist: str
    begin: int
    end: int
    kind: str                  # faces | noface | no_image | not_pd | huge
    style: str = ""
    medium: str = ""
    classification: str = ""
    is_highlight: bool = False
    metadata_date: str = "2023-01-01T00:00:00Z"
    image_file: str = ""       # e.g. ep/DT436001.jpg ('' for none)
    width: int = 0
    height: int = 0
    faces: list = field(default_factory=list)  # list[PlacedFace]

    @property
    def department(self) -> str:
        return DEPT_NAME.get(self.department_id, "")

    @property
    def is_public_domain(self) -> bool:
        return self.kind != "not_pd"

    def record(self, base_url: str) -> dict:
        """The object as the Met API serves it (every field present; strings may be empty)."""
        code = self.image_file.split("/")[0] if self.image_file else ""
        name = self.image_file.split("/")[-1] if self.image_file else ""
        primary = f"{base_url}/CRDImages/{code}/original/{name}" if self.image_file else ""
        small = f"{base_url}/CRDImages/{code}/web-large/{name}" if self.image_file and self.kind != "huge" else ""
        # as the real records: constituents' names HTML-escaped, CRLF in dimensions, sizes
        # in measurements, the department under the name records use
        constituents = [{"constituentID": 160000 + sum(map(ord, self.artist)), "role": "Artist",
                         "name": html.escape(self.artist, quote=False), "constituentULAN_URL": "",
                         "constituentWikidata_URL": "", "gender": ""}] if self.artist else None
        h_cm, w_cm = round(self.height / 40, 1), round(self.width / 40, 1)
        dimensions = (f"{h_cm / 2.54:.1f} x {w_cm / 2.54:.1f} in. ({h_cm:g} x {w_cm:g} cm)\r\n"
                      f"Framed: {h_cm / 2.54 + 4:.1f} x {w_cm / 2.54 + 4:.1f} in.") if self.width else ""
        measurements = [{"elementName": "Overall", "elementDescription": None,
                         "elementMeasurements": {"Height": h_cm, "Width": w_cm}}] if self.width else None
        return {
            "objectID": self.id, "isHighlight": self.is_highlight, "accessionNumber": f"{self.begin}.{self.id % 1000}",
            "accessionYear": "1929", "isPublicDomain": self.is_public_domain,
            "primaryImage": primary, "primaryImageSmall": small, "additionalImages": [],
            "constituents": constituents,
            "department": DEPT_RECORD_NAME.get(self.department_id, self.department), "objectName": self.classification[:-1] or "Object",
            "title": self.title, "culture": "", "period": "", "dynasty": "", "reign": "", "portfolio": "",
            "artistRole": "Artist", "artistPrefix": "", "artistDisplayName": self.artist,
            "artistDisplayBio": "", "artistSuffix": "", "artistAlphaSort": self.artist,
            "artistNationality": "", "artistBeginDate": "", "artistEndDate": "", "artistGender": "",
            "artistWikidata_URL": "", "artistULAN_URL": "",
            "objectDate": f"ca. {self.begin}" if self.begin == self.end else f"{self.begin}-{self.end}",
            "objectBeginDate": self.begin, "objectEndDate": self.end, "medium": self.medium,
            "dimensions": dimensions, "measurements": measurements, "creditLine": "Sample collection (metfaces-build emulator)",
            "geographyType": "", "city": "", "state": "", "county": "", "country": "", "region": "",
            "subregion": "", "locale": "", "locus": "", "excavation": "", "river": "",
            "classification": self.classification,
            "rightsAndReproduction": "" if self.is_public_domain else "© Sample Estate",
            "linkResource": "", "metadataDate": self.metadata_date, "repository": "Metropolitan Museum of Art, New York, NY",
            "objectURL": f"https://www.metmuseum.org/art/collection/search/{self.id}",
            "tags": [{"term": "Portraits"}, {"term": "Women" if self.id % 2 else "Men"}] if self.faces else None,
            "objectWikidata_URL": "", "isTimelineWork": False, "GalleryNumber": "",
        }

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "SampleObject":
        faces = [PlacedFace(**f) for f in d.get("faces", [])]
        return cls(**{**d, "faces": faces})


# ---- where things are -----------------------------------------------------------------

def source_photos() -> dict:
    """{name: path} of the public-domain face photos, found without importing their packages."""
    wanted = {"grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
              "astronaut": ("skimage", "data/astronaut.png")}
    found = {}
    for name, (pkg, rel) in wanted.items():
        spec = importlib.util.find_spec(pkg)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            p = Path(loc) / rel
            if p.is_file():
                found[name] = p
                break
    missing = sorted(set(wanted) - set(found))
    if missing:
        pkgs = ", ".join(wanted[m][0] for m in missing)
        raise RuntimeError(f"the emulator's sample images need {pkgs}: pip install 'metfaces-build[demo]'")
    return found


def default_cache_dir() -> Path:
    env = os.environ.get("METFACES_EMULATOR_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metfaces-build"


# ---- the collection plan (pure) -------------------------------------------------------

def plan_collection(seed: int = SEED) -> list:
    """The 35 objects: 24 with faces, 2 without, 4 without image, 4 not public domain, 1 huge."""
    rng = random.Random(seed)
    depts = [11, 11, 15, 9, 1, 19]
    objs = []
    for i in range(35):
        oid = 436001 + i * 7
        dep = depts[i % len(depts)]
        code, styles, medium, cls = DEPT_STYLE[dep]
        if i < 24:
            kind = "faces"
        elif i < 26:
            kind = "noface"
        elif i < 30:
            kind = "no_image"
        elif i < 34:
            kind = "not_pd"
        else:
            kind = "huge"
        begin = rng.randrange(1480, 1900)
        o = SampleObject(
            id=oid, department_id=dep, title=rng.choice(SUBJECTS) if kind != "noface" else "Landscape with a River",
            artist=rng.choice(ARTISTS), begin=begin, end=begin + rng.choice((0, 0, 5, 10)), kind=kind,
            style=styles[(i // len(depts)) % len(styles)], medium=medium, classification=cls,
            is_highlight=(i % 5 == 0), metadata_date=f"20{18 + i % 6}-0{1 + i % 9}-15T08:30:00Z")
        if kind in ("faces", "noface"):
            o.image_file = f"{code}/DT{oid}.jpg"
        elif kind == "huge":
            o.image_file = f"{code}/DT{oid}.png"
        objs.append(o)
    return objs


def faces_per_object(index: int) -> int:
    return 3 if index % 7 == 3 else 2 if index % 5 == 2 else 1


# ---- building images ------------------------------------------------------------------

@dataclass
class SourceFace:
    """A source photo with an alpha mask around its face and dlib's 68 landmarks on it."""
    name: str
    image: object          # PIL RGBA
    rect: tuple            # dlib rect l, t, r, b
    landmarks: list        # 68 (x, y) ints
    center: tuple          # continuous coords of the head centre
    face_width: float


def load_source_faces(cache: Path) -> list:
    """Detect once with dlib (cached by photo checksum) and cut a feathered head mask."""
    out = []
    for name, path in sorted(source_photos().items()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        lm_file = cache / f"landmarks-{name}-{digest}.json"
        if lm_file.exists():
            info = json.loads(lm_file.read_text())
        else:
            info = _dlib_landmarks(path)
            atomic_write_text(lm_file, json.dumps(info))
        im = Image.open(path).convert("RGB")
        pts = info["landmarks"]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        fw = max(xs) - min(xs)
        cx, cy = sum(xs) / len(xs) + 0.5, sum(ys) / len(ys) + 0.5 - 0.15 * fw
        ax, ay = 0.95 * fw, 1.25 * fw
        mask = Image.new("L", im.size, 0)
        ImageDraw.Draw(mask).ellipse([cx - ax, cy - ay, cx + ax, cy + ay], fill=255)
        inset = int(0.04 * min(im.size))
        frame = Image.new("L", im.size, 0)
        ImageDraw.Draw(frame).rectangle([inset, inset, im.width - inset, im.height - inset], fill=255)
        mask = ImageChops.multiply(mask.filter(ImageFilter.GaussianBlur(0.12 * fw)),
                                   frame.filter(ImageFilter.GaussianBlur(inset / 2)))
        im.putalpha(mask)
        out.append(SourceFace(name, im, tuple(info["rect"]), pts, (cx, cy), fw))
    return out


def _dlib_landmarks(path: Path) -> dict:
    """dlib's best-scoring frontal face on the photo and the 68-point predictor's shape."""
    import dlib  # deferred: heavy; only on the first build of the sample cache
    import face_recognition_models
    img = np.asarray(Image.open(path).convert("RGB"))
    rects, scores, _ = dlib.get_frontal_face_detector().run(img, 1, 0)
    if not rects:
        raise RuntimeError(f"no face found in {path}")
    r = rects[max(range(len(rects)), key=lambda i: scores[i])]
    pred = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    shape = pred(img, r)
    return {"rect": [r.left(), r.top(), r.right(), r.bottom()],
            "landmarks": [[shape.part(i).x, shape.part(i).y] for i in range(68)]}


@dataclass(frozen=True)
class Similarity:
    """canvas = scale * R(angle) * (photo - src) + dst, in continuous coordinates."""
    scale: float
    angle: float  # radians
    src: tuple
    dst: tuple

    def apply(self, x: float, y: float) -> tuple:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.src[0], y - self.src[1]
        return (self.scale * (c * dx - s * dy) + self.dst[0], self.scale * (s * dx + c * dy) + self.dst[1])

    def apply_index(self, px: float, py: float) -> tuple:
        """The same map for pixel indices (pixel i covers [i, i+1), its centre is i + 0.5)."""
        x, y = self.apply(px + 0.5, py + 0.5)
        return x - 0.5, y - 0.5

    def inverse_affine(self, offset: tuple) -> tuple:
        """Pillow AFFINE data mapping a patch at `offset` on the canvas back into the photo."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        a, b, d, e = c / self.scale, s / self.scale, -s / self.scale, c / self.scale
        ox, oy = offset[0] - self.dst[0], offset[1] - self.dst[1]
        return (a, b, self.src[0] + a * ox + b * oy, d, e, self.src[1] + d * ox + e * oy)


def paste_face(canvas, face: SourceFace, tf: Similarity) -> PlacedFace:
    w, h = face.image.size
    corners = [tf.apply(x, y) for x, y in ((0, 0), (w, 0), (0, h), (w, h))]
    x0 = max(0, int(math.floor(min(p[0] for p in corners))))
    y0 = max(0, int(math.floor(min(p[1] for p in corners))))
    x1 = min(canvas.width, int(math.ceil(max(p[0] for p in corners))))
    y1 = min(canvas.height, int(math.ceil(max(p[1] for p in corners))))
    patch = face.image.transform((x1 - x0, y1 - y0), Image.AFFINE, tf.inverse_affine((x0, y0)),
                                 resample=Image.BILINEAR)
    canvas.paste(patch.convert("RGB"), (x0, y0), patch.getchannel("A"))
    lms = [[round(v, 2) for v in tf.apply_index(x, y)] for x, y in face.landmarks]
    l, t, r, b = face.rect
    rc = [tf.apply_index(x, y) for x, y in ((l, t), (r, t), (l, b), (r, b))]
    rect = [round(min(p[0] for p in rc)), round(min(p[1] for p in rc)),
            round(max(p[0] for p in rc)), round(max(p[1] for p in rc))]
    return PlacedFace(rect=rect, landmarks=lms, source=face.name)


def background(size: tuple, rng, dark: bool):
    """Low-frequency coloured wash plus fine canvas grain: cheap, deterministic."""
    w, h = size
    palette = np.array(EARTH_DARK if dark else EARTH_LIGHT, dtype=float)
    base = palette[rng.integers(0, len(palette), (5, 4))] * rng.uniform(0.75, 1.2, (5, 4, 1))
    wash = Image.fromarray(np.clip(base, 0, 255).astype("uint8"), "RGB").resize((w, h), Image.BICUBIC)
    # grain from the seeded rng (PIL's effect_noise has a process-global state)
    noise = np.clip(rng.normal(128, 12, (h // 2, w // 2)), 0, 255).astype("uint8")
    grain = Image.fromarray(noise, "L").resize((w, h), Image.BILINEAR)
    grain = Image.merge("RGB", [grain] * 3)
    return ImageChops.add(wash, grain, scale=1.0, offset=-128)


def stylize(im, style: str):
    """Painting-like looks; geometry is untouched so the landmarks stay exact."""
    if style == "posterize":
        return ImageOps.posterize(im.filter(ImageFilter.BoxBlur(1)), 4)
    if style == "oil":
        small = im.reduce(4).filter(ImageFilter.ModeFilter(3))
        return ImageOps.posterize(Image.blend(im, small.resize(im.size, Image.BICUBIC), 0.6), 5)
    if style == "drawing":
        g = ImageOps.autocontrast(im.convert("L"), cutoff=1)
        edges = ImageOps.invert(g.reduce(2).filter(ImageFilter.FIND_EDGES)).resize(g.size, Image.BILINEAR)
        paper = ImageChops.multiply(ImageOps.posterize(g, 4), edges)
        return ImageOps.colorize(paper, "#3a2418", "#f4ead8")
    if style == "sepia":
        return ImageOps.colorize(ImageOps.autocontrast(im.convert("L")), "#2b1a0e", "#f3e3c3")
    return im


def compose(obj: SampleObject, index: int, faces: list, seed: int):
    """Canvas + placed faces for one object; returns (PIL image, [PlacedFace])."""
    rng = np.random.default_rng([seed, obj.id])
    n = faces_per_object(index) if obj.kind == "faces" else 0
    w = int(rng.integers(3000, 4200))
    h = int(w * (rng.uniform(1.15, 1.35) if n < 2 else rng.uniform(0.7, 0.85)))
    canvas = background((w, h), rng, dark=obj.style in ("oil", "photo"))
    placed = []
    for k in range(n):
        face = faces[(index + k) % len(faces)]
        col_w = w / n
        target = float(rng.uniform(0.18, 0.42) * col_w if n > 1 else rng.uniform(0.12, 0.32) * w)
        scale = target / face.face_width
        angle = math.radians(float(rng.choice([0, 0, -8, 12, -20, 25])) if index % 3 else 0.0)
        reach = 1.5 * target
        cx = float(np.clip((k + 0.5) * col_w + rng.uniform(-0.15, 0.15) * col_w, reach, w - reach))
        cy = float(np.clip(rng.uniform(0.3, 0.55) * h, 1.6 * target, h - 1.6 * target))
        placed.append(paste_face(canvas, face, Similarity(scale, angle, face.center, (cx, cy))))
    return stylize(canvas, obj.style).convert("RGB"), placed


def tiny_huge_png(size: tuple) -> bytes:
    """A valid 1-bit PNG of `size` pixels that is only tens of kB: a pixel-limit test case."""
    w, h = size
    row = b"\x00" + b"\xff" * ((w + 7) // 8)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


# ---- build + cache --------------------------------------------------------------------

@dataclass
class Collection:
    """The built collection: objects and the folder their image files live in, plus an
    optional `overlay` folder (same layout, looked at first) holding images written after
    the build (re-shot or added objects), so the shared cache is never modified."""
    root: Path
    objects: list  # list[SampleObject]
    overlay: Optional[Path] = None

    def by_id(self) -> dict:
        return {o.id: o for o in self.objects}

    def image_path(self, code: str, size: str, name: str) -> Optional[Path]:
        folder = {"original": "original", "web-large": "small"}.get(size)
        if folder is None or "/" in name or name.startswith(".") or "/" in code or code.startswith("."):
            return None
        for base in ((self.overlay,) if self.overlay else ()) + (self.root,):
            p = base / folder / code / name
            if p.is_file():
                return p
        return None

    def original_path(self, obj: SampleObject) -> Path:
        code, name = obj.image_file.split("/")
        return self.image_path(code, "original", name) or self.root / "original" / code / name


def reshoot_files(collection: Collection, obj: SampleObject, overlay: Path, image_file: str) -> None:
    """Write a "re-shot" `obj` into `overlay` as `image_file` (original and web-large): the
    same composition, so its placed faces stay true, but another exposure, hence other
    pixels and other bytes, as when the Met photographs an object again."""
    if not obj.image_file or not obj.image_file.endswith(".jpg"):
        raise ValueError(f"object {obj.id} has no photographed image to re-shoot")
    code, name = image_file.split("/")
    with Image.open(collection.original_path(obj)) as src:
        im = ImageEnhance.Brightness(src.convert("RGB")).enhance(1.04)
    for folder, image, quality in (("original", im, 90), ("small", None, 85)):
        if image is None:
            image = im.copy()
            image.thumbnail((800, 800), Image.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality)
        atomic_write_bytes(overlay / folder / code / name, buf.getvalue())


def load_collection(cache_dir: Optional[Path] = None, log=None) -> Collection:
    """The cached collection, building it first if this version is not cached yet."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    root = cache / f"emulator-{VERSION}"
    manifest = root / "collection.json"
    if not manifest.exists():
        cache.mkdir(parents=True, exist_ok=True)
        if log:
            log(f"building the emulator's sample collection in {root} (first start only) ...")
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        try:
            _build(tmp, cache)
            try:
                os.rename(tmp, root)
            except OSError:  # another process finished first: use theirs
                if not manifest.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    data = json.loads(manifest.read_text())
    return Collection(root, [SampleObject.from_json(d) for d in data["objects"]])


def _build(root: Path, cache: Path) -> None:
    """Compose every original (in parallel processes: ~1 s each) and write the manifest."""
    faces = load_source_faces(cache)
    objs = plan_collection()
    jobs = [(root, o, i, faces) for i, o in enumerate(objs) if o.image_file]
    workers = min(4, os.cpu_count() or 1)
    if workers > 1 and sys.platform.startswith("linux"):
        with mp.get_context("fork").Pool(workers) as pool:
            built = pool.map(_build_one, jobs, chunksize=1)
    else:
        built = [_build_one(j) for j in jobs]
    by_id = {o.id: o for o in built}
    objs = [by_id.get(o.id, o) for o in objs]
    atomic_write_text(root / "collection.json",
                 json.dumps({"version": VERSION, "objects": [o.to_json() for o in objs]}, indent=1))


def _build_one(job) -> SampleObject:
    root, o, i, faces = job
    code, name = o.image_file.split("/")
    (root / "original" / code).mkdir(parents=True, exist_ok=True)
    (root / "small" / code).mkdir(parents=True, exist_ok=True)
    if o.kind == "huge":
        (root / "original" / code / name).write_bytes(tiny_huge_png(HUGE_SIZE))
        o.width, o.height = HUGE_SIZE
        return o
    im, placed = compose(o, i, faces, SEED)
    o.width, o.height, o.faces = im.width, im.height, placed
    im.save(root / "original" / code / name, "JPEG", quality=90)
    small = im.copy()
    small.thumbnail((800, 800), Image.LANCZOS)
    small.save(root / "small" / code / name, "JPEG", quality=85)
    return o


def png_md5(collection: Collection, obj: SampleObject) -> str:
    """md5 of the original saved as PNG with Pillow's defaults (what `source_md5` means);
    slow (~2 s per original), so computed on demand and cached beside the collection (or
    its overlay)."""
    path = collection.original_path(obj)
    in_overlay = collection.overlay is not None and collection.overlay in path.parents
    cache_file = (collection.overlay if in_overlay else collection.root) / "png-md5.json"
    try:
        known = json.loads(cache_file.read_text())
    except (FileNotFoundError, ValueError):
        known = {}
    # a built original never changes, so its id is its key; an overlay file may be replaced
    key = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() if in_overlay else str(obj.id)
    if key not in known:
        buf = io.BytesIO()
        with Image.open(path) as im:
            im.save(buf, "PNG")
        known[key] = hashlib.md5(buf.getvalue()).hexdigest()
        try:
            known = {**json.loads(cache_file.read_text()), **known}
        except (FileNotFoundError, ValueError):
            pass
        atomic_write_text(cache_file, json.dumps(known, indent=0, sort_keys=True))
    return known[key]


def truth(collection: Collection, base_url: str, with_md5: bool = False) -> list:
    """Ground truth as a metfaces.json-compatible list: one record per placed face, landmarks
    rounded to pixel indices at shrink 1, plus `truth_landmarks` (floats) and image size."""
    out = []
    for o in collection.objects:
        if not o.faces:
            continue
        rec = o.record(base_url)
        url = rec["primaryImage"]
        md5 = png_md5(collection, o) if with_md5 else ""
        for idx, f in enumerate(o.faces):
            out.append({
                "obj_id": str(o.id), "meta_url": rec["objectURL"], "source_url": url,
                "source_path": f"unprocessed/image-{o.id}.png", "source_md5": md5,
                "image_path": f"images/{FaceKey(str(o.id), idx).crop_name}", "image_md5": "",
                "title": o.title, "artist_display_name": o.artist,
                "face_spec": {"rect": f.rect, "landmarks": [[round(x), round(y)] for x, y in f.landmarks],
                              "shrink": 1},
                "face_idx": idx, "detector": "truth", "image_width": o.width, "image_height": o.height,
                "department": o.department, "truth_landmarks": f.landmarks, "truth_source": f.source,
                "is_public_domain": o.is_public_domain,
            })
    return out


