"""The result log keeps what a resumed client needs, within its bounds, in real memory too."""

from __future__ import annotations

import tracemalloc

from tether.core.resume import ResultLog
from tether.protocol import encode_error, encode_result


def test_the_log_keeps_the_newest_frames_within_its_count_and_byte_bounds() -> None:
    log = ResultLog(max_count=3, max_bytes=1 << 20)
    for i in range(5):
        log.record(i, encode_result(i, [i]))
    assert list(log.frames) == [2, 3, 4]
    small = ResultLog(max_count=100, max_bytes=60)
    for i in range(5):
        small.record(i, encode_result(i, ["x" * 10]))
    assert sum(map(len, small.frames.values())) <= 60


def test_a_resumed_log_answers_each_re_sent_id_once() -> None:
    log = ResultLog(max_count=10, max_bytes=1 << 20)
    log.record(1, encode_result(1, ["a"]))
    log.resumed({2})
    assert log.replaying
    assert log.answer(1) == encode_result(1, ["a"])
    assert log.answer(1) is None
    assert log.still_running(2) and not log.still_running(2)
    assert not log.replaying


def test_kept_frames_hold_about_their_own_size_not_the_encoders_buffer() -> None:
    # orjson hands back bytes with a buffer of at least 4 KiB; a log of small
    # frames must not hold that much per frame, or its byte bound means nothing.
    log = ResultLog(max_count=10_000, max_bytes=1 << 30)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(2000):
            log.record(i, encode_error(i, "queue_full", "chat has 10 submits waiting"))
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_frame = (after - before) / 2000
    assert per_frame < 512, f"{per_frame:.0f} bytes held per kept frame"
