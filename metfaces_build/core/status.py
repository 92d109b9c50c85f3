"""Every status a stage records, by name: the one spelling of each.

Statuses are plain strings in the work directory's files (objects.jsonl, the detect
journal, aligned.json, compare.json, verify's report), so these are str constants, not
an Enum: a record read back compares equal to them and JSON needs no converter. Code
tests `rec.status == OK`, never a literal.
"""
from __future__ import annotations

# ---- shared -----------------------------------------------------------------------------
OK = "ok"
FAILED = "failed"
BAD_RECORD = "bad_record"          # a malformed input record (kept verbatim, not processed)
MISSING_SOURCE = "missing_source"  # the source image a record names is not there
BAD_CONTENT = "bad_content"        # bytes that are not what they claim (corrupt, HTML, bomb)

# ---- fetch (objects.jsonl) --------------------------------------------------------------
CHANGED = "changed"                # an image whose md5 differs from metfaces.json's
NO_IMAGE = "no_image"
NOT_PUBLIC_DOMAIN = "not_public_domain"
NOT_FOUND = "not_found"
TOO_LARGE = "too_large"
REFUSED = "refused"                # a host outside the allow-list
HTTP_ERROR = "http_error"
FETCH_STATUSES = (OK, CHANGED, NO_IMAGE, NOT_PUBLIC_DOMAIN, NOT_FOUND, TOO_LARGE, REFUSED,
                  HTTP_ERROR, BAD_CONTENT)
# settled: a rerun does not retry them (unless --recheck / --force)
FETCH_SETTLED = frozenset({OK, CHANGED, NO_IMAGE, NOT_PUBLIC_DOMAIN, NOT_FOUND, TOO_LARGE,
                           REFUSED})
FETCH_FAILED = frozenset({NOT_FOUND, TOO_LARGE, REFUSED, HTTP_ERROR, BAD_CONTENT})

# ---- detect (journal) -------------------------------------------------------------------
NO_FACE = "no_face"
DETECT_DONE = (OK, NO_FACE)

# ---- align (aligned.json) ---------------------------------------------------------------
BAD_PATH = "bad_path"
ERROR = "error"                    # a face that cannot be cropped or written (reason says why)
# entries for crops that no longer exist (not failures): a face gone from an image that
# changed, or every face of an object that left the input
SUPERSEDED = "superseded"
WITHDRAWN = "withdrawn"
ALIGN_RETIRED = (SUPERSEDED, WITHDRAWN)

# ---- filter -----------------------------------------------------------------------------
KEPT = "kept"
REJECTED = "rejected"
OVERRIDE = "override"              # the reason of a face a person rejected
KEEP = "keep"                      # a person's decisions in overrides.json
REJECT = "reject"

# ---- compare (compare.json) -------------------------------------------------------------
MATCHED = "matched"
MISSED = "missed"
EXTRA = "extra"
# compare --crops (compare_crops.jsonl), besides OK and UNREADABLE
ONLY_IN_A = "only_in_a"
ONLY_IN_B = "only_in_b"
SIZE_MISMATCH = "size_mismatch"

# ---- export (its counts: crops written OK, or BAD: missing or not matching the manifest)
BAD = "bad"

# ---- verify -----------------------------------------------------------------------------
MATCH = "match"
SAME_PIXELS = "same_pixels"
PIXELS_DIFFER = "pixels_differ"
SIZE_DIFFERS = "size_differs"
MD5_DIFFERS = "md5_differs"
NO_MD5 = "no_md5"
MISSING = "missing"
UNREADABLE = "unreadable"

# ---- status (the command) ---------------------------------------------------------------
CURRENT = "current"
STALE = "stale"
