"""The watcher's frame parsing and cap accounting, frame by frame, without a sandbox behind it."""

from __future__ import annotations

import json
import struct

from acecoder_reward.sandbox_worker.watch import TestState as State
from acecoder_reward.sandbox_worker.watch import Watcher

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


def test_a_payload_must_be_exactly_one_frame() -> None:
    """A payload holding several frames, or wrapping the runner's own frames into one, is malformed."""
    for bad in (_json({"ev": "start", "i": 0}) + b"," + _json({"ev": "end", "i": 0}), b'{"ev": "loaded", "x": [0'):
        w = _watcher(1)
        end = w._on_result(_frames(bad, _json({"ev": "start", "i": 0}), b"0]}", _json({"ev": "done"})))
        assert end is not None and end.reason == "protocol_error", bad


def test_a_hostile_hole_index_is_a_protocol_error_not_a_crash() -> None:
    for j in (b"Infinity", b"1e400", b"-1", b"0.0", b'"0"', b"null"):
        w = _watcher(1)
        end = w._on_result(_frames(_json({"ev": "start", "i": 0}), b'{"ev": "hole", "i": 0, "j": ' + j + b', "v": 1}'))
        assert end is not None and end.reason == "protocol_error", j


def test_the_frames_that_fit_in_the_result_cap_count_before_it_is_exceeded() -> None:
    frames = [_json({"ev": "start", "i": 0}), _json({"ev": "end", "i": 0}), _json({"ev": "start", "i": 1})]
    fitting = sum(4 + len(f) for f in frames)
    w = Watcher(-1, -1, -1, [State(), State()], LIMITS, None, fitting + 10)  # type: ignore[arg-type]
    end = w._on_result(_frames(*frames, _json({"ev": "hole", "i": 1, "j": 0, "v": "x" * 100})))
    assert end is not None and end.reason == "result_exceeded"
    assert w.tests[0].state == "done" and end.current == 1  # the test that overflowed is the one blamed


def test_fixed_frames_read_without_a_parse_give_what_the_parse_gives() -> None:
    from acecoder_reward.sandbox_worker import runner
    from acecoder_reward.sandbox_worker.watch import _read_frame

    for payload in (runner.LOADED, runner.DONE, runner.START % 0, runner.START % 7, runner.END % 123456789):
        assert _read_frame(payload) == json.loads(payload)
    # Other spellings take the JSON path: still valid ones read the same, invalid ones still fail.
    assert _read_frame(b'{"ev": "start", "i": 1}') == {"ev": "start", "i": 1}
    assert _read_frame(b'{"i":1,"ev":"end"}') == {"ev": "end", "i": 1}
    for bad in (b'{"ev":"start","i":01}', b'{"ev":"start","i":1}x', b'{"ev":"done"} {"ev":"done"}'):
        try:
            _read_frame(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was read")
    w = _watcher(2)
    assert w._on_result(_frames(runner.START % 2)).reason == "protocol_error"  # the index is still checked
