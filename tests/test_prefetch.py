"""The prefetch child's frame sender, over real OS pipes."""

import os
import threading

from autumn_django.sync.pages.prefetch import _FrameSender, _read_frame


def test_frames_arrive_whole_and_in_order_while_the_sender_runs_ahead():
    read_end, write_end = os.pipe()
    # Frames far larger than the pipe's buffer: each write blocks until the reader drains it.
    frames = [("page", bytes([i]) * 300_000) for i in range(5)]
    with os.fdopen(read_end, "rb") as source, os.fdopen(write_end, "wb") as sink:
        sender = _FrameSender(sink)
        received = []
        reader = threading.Thread(target=lambda: received.extend(_read_frame(source) for _ in frames))
        reader.start()
        for frame in frames:
            sender.send(frame)
        sender.close()
        reader.join(10)
    assert received == frames


def test_a_reader_that_went_away_fails_the_sender_without_hanging_it():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the parent stopped reading
    failures = []

    def prepare_and_send(sink):
        sender = _FrameSender(sink)
        try:
            for _ in range(6):
                sender.send(("page", b"x" * 100_000))
            sender.close()
        except BrokenPipeError as exc:
            failures.append(exc)

    # Unbuffered: closing it must not flush bytes into the broken pipe once more.
    with os.fdopen(write_end, "wb", buffering=0) as sink:
        preparing = threading.Thread(target=prepare_and_send, args=(sink,), daemon=True)
        preparing.start()
        preparing.join(10)
    # Frames after the failure are drained, never waited on for ever, and the failure
    # reaches the preparing thread (by a send, or at the latest by close).
    assert not preparing.is_alive()
    assert len(failures) == 1
