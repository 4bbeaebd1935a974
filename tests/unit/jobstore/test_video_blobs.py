"""jobstore.video_blobs: a clip read by range through a few cached blocks, probed and cut as from bytes."""

from __future__ import annotations

import io
from collections.abc import Callable
from fractions import Fraction

import av
import pytest

from jobstore.video_blobs import BlockReader, ClipGone, decode_info, encode_info, video_bytes_bound
from video.join import join_pieces
from video.probe import ClipInfo, probe
from video.segments import Segment, plan_segments, run_segment

Make = Callable[..., bytes]


def _reader(data: bytes, block: int = 4096) -> BlockReader:
    return BlockReader(len(data), lambda index: data[index * block : (index + 1) * block], block_bytes=block)


def test_reads_across_blocks_return_exactly_the_bytes_asked_for() -> None:
    data = bytes(range(256)) * 100
    reader = _reader(data, 1000)
    assert reader.read_at(0, 10) == data[:10]
    assert reader.read_at(995, 20) == data[995:1015]
    assert reader.read_at(25_590, 100) == data[25_590:]  # past the end: what there is
    assert reader.read_at(len(data), 10) == b""


def test_a_missing_block_raises_clip_gone() -> None:
    def gone(index: int) -> bytes:
        raise ClipGone(f"block {index}")

    with pytest.raises(ClipGone):
        BlockReader(10_000, gone).read_at(0, 10)


def test_a_clip_read_by_range_probes_runs_and_joins_as_from_bytes(clip: Make) -> None:
    data = clip(frames=36, gop=6, width=128, height=96)
    info = probe(data)
    assert probe(_reader(data)) == info
    plan = plan_segments(info.frames, Fraction(1, 3))
    pieces = [run_segment(_reader(data), s, lambda f: 255 - f, info=info) for s in plan]
    assert pieces == [run_segment(data, s, lambda f: 255 - f) for s in plan]
    assert join_pieces(pieces, _reader(data), info=info) == join_pieces(pieces, data)


@pytest.mark.parametrize("faststart", [True, False], ids=["index-first", "index-last"])
def test_a_segment_reads_the_index_and_its_own_range_only(clip: Make, faststart: bool) -> None:
    data = clip(frames=480, gop=15, width=320, height=240, audio=None, faststart=faststart)
    info = probe(data)
    plan = plan_segments(info.frames, Fraction(1, 2))
    for segment in (plan[len(plan) // 2], plan[-1]):
        reader = _reader(data)
        run_segment(reader, segment, lambda f: f, info=info)
        # The index, the packets from the keyframe before the segment to its end, what FFmpeg's reader
        # buffers around them (32 KiB a read), and block rounding.
        allowed = _moov_size(data) + _span(data, info, segment) + 4 * 32768 + 4 * 4096
        assert reader.fetched * 4096 <= allowed, (reader.fetched * 4096, allowed, len(data))
        assert reader.fetched * 4096 < len(data) / 2


def _span(data: bytes, info: ClipInfo, segment: Segment) -> int:
    """Bytes of the media data from the keyframe a segment decodes from to its last frame's packet."""
    first = info.frames.pts[segment.first_frame]
    last = info.frames.pts[segment.first_frame + segment.frames - 1]
    point = info.frames.seek_point(segment.first_frame)
    start_pts = point[0] if point else 0
    with av.open(io.BytesIO(data)) as media:
        packets = [(p.pts, p.pos, p.size) for p in media.demux(video=0) if p.size]
    positions = [pos for pts, pos, _ in packets if start_pts <= pts <= last or pts == first]
    ends = [pos + size for pts, pos, size in packets if start_pts <= pts <= last]
    return max(ends) - min(positions)


def _moov_size(data: bytes) -> int:
    offset = 0
    while offset < len(data):
        size, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        if kind == b"moov":
            return size
        offset += size
    raise AssertionError("no moov box")


def test_the_video_bound_holds_for_frames_of_noise(clip: Make) -> None:
    import numpy as np

    data = clip(frames=30, width=256, height=160, audio=None)
    info = probe(data)
    rng = np.random.default_rng(0)
    piece = run_segment(data, Segment(0, 0, 30), lambda f: rng.integers(0, 256, f.shape, dtype=np.uint8), info=info)
    assert len(piece) <= video_bytes_bound(info)
    assert len(piece) > video_bytes_bound(info) / 10  # the bound is not idly loose for the worst input


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"container": "mov", "rotation": 90},
        {"container": "mkv", "time_base": Fraction(1, 1000), "pts": [0, 40, 70, 150]},
    ],
    ids=["mp4", "rotated-mov", "vfr-mkv"],
)
def test_the_probe_kept_as_json_is_the_probe(clip: Make, fields: dict[str, object]) -> None:
    info = probe(clip(frames=len(fields.get("pts", range(12))), **fields))  # type: ignore[arg-type]
    assert decode_info(encode_info(info)) == info
