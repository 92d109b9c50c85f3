# The README's notebook example: the whole pipeline from Python, offline, on the built-in
# Met API emulator (tests/test_api.py runs this file exactly as written).
from metfaces_build import (Work, align, align_face, detect, detect_image, fetch, filter,
                            load_faces, report, serve_emulator)

work = Work("notebook-work")

with serve_emulator() as api:                       # the sample collection on loopback
    fetched = fetch(work, api=api.url, departments="European Paintings", rate=50)
print(fetched.line())                               # fetch: 10 ok, 2 not_public_domain

found = detect(work, detector="hog")                # -> faces.json
print(found.line(), found.counts)
kept = filter(work)                                 # -> filtered.json, rejected.jsonl
print(kept.line())
crops = align(work)                                 # -> images/*.png, images/aligned.json
print(crops.line(), "->", crops.outputs["manifest"])
print("report:", report(work).outputs["markdown"])

faces = load_faces(work.filtered_json)              # FaceRecords, NVIDIA's keys
first = faces[0]
print(first.obj_id, first.face_idx, first.title)

# one image by hand: the same detection as the stage, then a small aligned crop
original = work.path / first.source_path
again = detect_image(original)                      # same shrink rule as `detect`
assert again[first.face_idx].face_spec == first.face_spec
crop = align_face(original, again[first.face_idx].face_spec, size=256)
crop.save(work.path / "first-face.png")
print(crop.size)                                    # (256, 256)
