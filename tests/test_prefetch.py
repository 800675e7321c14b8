"""The prefetch child's frame sender, over real OS pipes."""

import os
import threading

import pytest

from autumn_django.sync.pages.prefetch import _FrameReader, _FrameSender


def _sent_through_a_pipe(frames: list) -> list:
    """``frames`` sent by a ``_FrameSender`` and read by one ``_FrameReader`` on a thread."""
    read_end, write_end = os.pipe()
    received: list = []
    with os.fdopen(read_end, "rb") as source, os.fdopen(write_end, "wb") as sink:
        sender, reader = _FrameSender(sink), _FrameReader(source)
        receiving = threading.Thread(target=lambda: received.extend(reader.read() for _ in frames))
        receiving.start()
        for frame in frames:
            sender.send(frame)
        sender.close()
        receiving.join(10)
    return received


def test_frames_arrive_whole_and_in_order_while_the_sender_runs_ahead():
    # Frames far larger than the pipe's buffer: each write blocks until the reader drains it.
    frames = [("page", bytes([i]) * 300_000) for i in range(5)]
    assert _sent_through_a_pipe(frames) == frames


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


def test_the_parents_reader_reuses_one_buffer_for_frames_of_any_size():
    """Frames larger, then smaller, then larger again than the last, through one reader:
    each arrives whole (a frame read into the buffer a larger one left must not keep that
    one's tail)."""
    frames = [("page", bytes([i]) * size) for i, size in enumerate((200_000, 10, 450_000, 3, 450_001))]
    assert _sent_through_a_pipe(frames) == frames


def test_a_frame_cut_short_is_the_end_of_the_stream():
    """A child killed half-way through a frame: the reader says so (EOFError, which the
    sync turns into its "stopped unexpectedly" error) rather than unpickling a part."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as source:
        with os.fdopen(write_end, "wb") as sink:
            sink.write((1000).to_bytes(8, "big") + b"x" * 10)
        with pytest.raises(EOFError):
            _FrameReader(source).read()
