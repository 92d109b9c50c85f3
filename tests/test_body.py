"""Unit: met.client.iter_body, the one reader of response bodies (bounded decoding, caps,
deadline), against a fake streamed response: no server, no sleeping."""
import gzip
import io
import os
import zlib

import pytest

from metfaces_build.met.client import CHUNK, BodyCount, FetchFailure, Transient, iter_body


class FakeRaw:
    """What iter_body uses of urllib3's response: read1 and release_conn."""

    def __init__(self, body: bytes, step: int = 4096, fail_after: int = -1):
        self.f, self.step, self.fail_after = io.BytesIO(body), step, fail_after
        self.released = False

    def read1(self, n, decode_content=True):
        assert decode_content is False  # iter_body decodes itself
        if self.fail_after >= 0 and self.f.tell() >= self.fail_after:
            raise ConnectionResetError("peer reset")
        return self.f.read(min(n, self.step))

    def release_conn(self):
        self.released = True


class FakeResponse:
    def __init__(self, body: bytes, encoding: str = "", deadline=None, **raw):
        self.headers = {"Content-Encoding": encoding} if encoding else {}
        self.raw = FakeRaw(body, **raw)
        if deadline is not None:
            self.deadline, self.time_allowed = deadline, 5.0


def test_plain_body_is_read_whole_and_the_connection_released():
    body = os.urandom(10_000)
    r, count = FakeResponse(body, step=3000), BodyCount()
    assert b"".join(iter_body(r, limit=len(body), count=count)) == body
    assert (count.raw, count.decoded) == (len(body), len(body)) and r.raw.released


@pytest.mark.parametrize("encoding, pack", [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_encoded_body_is_decoded_and_counted_on_the_wire(encoding, pack):
    body = b"metfaces " * 5000
    wire = pack(body)
    r, count = FakeResponse(wire, encoding, step=100), BodyCount()
    assert b"".join(iter_body(r, limit=len(body), count=count)) == body
    assert (count.raw, count.decoded) == (len(wire), len(body)) and r.raw.released


def test_decoded_limit_is_final_and_too_large():
    with pytest.raises(FetchFailure) as e:
        b"".join(iter_body(FakeResponse(b"x" * 5000), limit=4999))
    assert e.value.status == "too_large" and "exceeds 4999 bytes decoded" in e.value.reason


def test_a_compression_bomb_stops_at_the_expansion_cap_not_the_limit():
    wire = gzip.compress(b"\0" * (40 * CHUNK))  # ~40 KB on the wire, 40 MiB decoded
    count = BodyCount()
    with pytest.raises(FetchFailure) as e:
        for _ in iter_body(FakeResponse(wire, "gzip", step=1024), limit=1 << 30,
                           max_expansion=32, count=count):
            pass
    assert e.value.status == "too_large" and "compression bomb" in e.value.reason
    assert count.decoded <= 32 * count.raw + 2 * CHUNK  # stopped one step past the cap


def test_without_an_expansion_cap_a_compressible_body_is_fine():
    body = b"\0" * (4 * CHUNK)
    assert b"".join(iter_body(FakeResponse(gzip.compress(body), "gzip"), limit=len(body))) == body


@pytest.mark.parametrize("wire, words", [(gzip.compress(b"y" * 100_000)[:-20], "cut short"),
                                         (gzip.compress(b"")[:10] + b"\xff" * 50, "corrupt")])
def test_cut_or_corrupt_encoding_is_retried_as_bad_content(wire, words):
    with pytest.raises(Transient) as e:
        b"".join(iter_body(FakeResponse(wire, "gzip"), limit=1 << 20))
    assert e.value.status == "bad_content" and words in e.value.reason


def test_unknown_encoding_is_refused_before_reading():
    r = FakeResponse(b"abc", "br")
    with pytest.raises(FetchFailure) as e:
        next(iter_body(r, limit=100))
    assert e.value.status == "bad_content" and "'br'" in e.value.reason
    assert r.raw.f.tell() == 0


def test_a_cut_connection_is_a_retried_http_error():
    with pytest.raises(Transient) as e:
        b"".join(iter_body(FakeResponse(b"z" * 10_000, step=1000, fail_after=3000), limit=1 << 20))
    assert e.value.status == "http_error" and "cut short after 3000 bytes" in e.value.reason
    assert "ConnectionResetError" in e.value.reason


def test_past_the_deadline_a_trickling_answer_fails():
    r = FakeResponse(b"slow" * 100, deadline=0.0)  # monotonic time is past 0 already
    with pytest.raises(Transient) as e:
        next(iter_body(r, limit=1 << 20))
    assert e.value.status == "http_error" and "incomplete after 5 s" in e.value.reason
