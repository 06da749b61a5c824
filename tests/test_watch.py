"""The watcher's frame parsing: one JSON parse per batch of frames, and the frame-by-frame fallback."""

from __future__ import annotations

import json
import struct

from sandbox_worker.watch import TestState as State
from sandbox_worker.watch import Watcher

LIMITS = {"test_timeout_s": 1.0, "program_timeout_s": 2.0, "max_output_bytes": 1 << 16, "max_result_bytes": 1 << 16}


def _watcher(tests: int) -> Watcher:
    return Watcher(-1, -1, -1, [State() for _ in range(tests)], LIMITS, None, 1 << 16)  # type: ignore[arg-type]


def _frames(*payloads: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in payloads)


def _json(frame: dict) -> bytes:
    return json.dumps(frame).encode()


def test_a_batch_of_frames_is_read_in_order() -> None:
    w = _watcher(2)
    end = w._on_result(_frames(_json({"ev": "code", "code": "x = 1"}), _json({"ev": "loaded"}),
                               _json({"ev": "start", "i": 0}), _json({"ev": "hole", "i": 0, "j": 0, "v": {"i": "3"}}),
                               _json({"ev": "end", "i": 0}), _json({"ev": "start", "i": 1})))
    assert end is None
    assert w.code == "x = 1"
    assert w.tests[0].state == "done" and w.tests[0].holes == [[True, {"i": "3"}]]
    assert w.current == 1 and w.test_deadline is not None  # test 1 is running: its deadline is armed
    assert w._on_result(_frames(_json({"ev": "end", "i": 1}), _json({"ev": "done"}))).reason == "done"


def test_frames_split_across_reads_wait_for_their_rest() -> None:
    w = _watcher(1)
    data = _frames(_json({"ev": "start", "i": 0}), _json({"ev": "end", "i": 0}), _json({"ev": "done"}))
    assert w._on_result(data[:7]) is None
    assert w.current is None
    end = w._on_result(data[7:])
    assert end is not None and end.reason == "done" and w.tests[0].state == "done"


def test_frames_before_a_malformed_one_still_count() -> None:
    w = _watcher(1)
    end = w._on_result(_frames(_json({"ev": "start", "i": 0}), _json({"ev": "end", "i": 0}), _json({"ev": "done"}),
                               b"{not json"))
    assert end is not None and end.reason == "done"


def test_a_malformed_frame_is_a_protocol_error() -> None:
    for bad in (b"{not json", b"1", _json({"ev": "hole", "i": 5, "j": 0, "v": 1}), b"",
                _json({"ev": "start", "i": 0}) + b"],[" + _json({"ev": "done"})):
        w = _watcher(1)
        end = w._on_result(_frames(_json({"ev": "start", "i": 0}), bad, _json({"ev": "done"})))
        assert end is not None and end.reason == "protocol_error", bad
        assert w.tests[0].state == "not_run"  # nothing after the bad frame was taken


def test_a_payload_holding_several_frames_counts_as_those_frames() -> None:
    """The batch parse may read one payload as several frames; the run could have sent them one by one,
    so this gains it nothing: frames are untrusted either way, and only the judge decides a pass."""
    w = _watcher(1)
    smuggled = _json({"ev": "start", "i": 0}) + b"," + _json({"ev": "end", "i": 0})
    end = w._on_result(_frames(smuggled, _json({"ev": "done"})))
    assert end is not None and end.reason == "done" and w.tests[0].state == "done"
    assert w.tests[0].holes == []  # and a test without results is never a pass (the judge's rule)
