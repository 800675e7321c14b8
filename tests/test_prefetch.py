"""The prefetch child's frame sender, over real OS pipes."""

import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import pytest

from autumn_django.sync.pages.prefetch import UnreadableFrame, _FrameReader, _FrameSender


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


@pytest.mark.parametrize(("frame", "says"), [
    ((1 << 62).to_bytes(8, "big"), "a frame of 4,611,686,018,427,387,904 bytes"),
    ((8).to_bytes(8, "big") + b"\x80\x05garbage", "UnpicklingError"),
    ((3).to_bytes(8, "big") + b"\x80\x05\x95", "truncated"),  # a pickle cut short, in a whole frame
    ((0).to_bytes(8, "big"), "EOFError: Ran out of input"),  # a frame of nothing
], ids=["absurd-length", "garbage", "truncated-pickle", "empty"])
def test_a_frame_that_cannot_be_one_is_named_not_allocated_or_taken_for_the_end(frame, says):
    """A stream out of step (as a write cut short left it) used to have the reader ask for
    whatever its next 8 bytes said, or raise whatever unpickling garbage raised, EOFError
    included, which the sync took for the child's end."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as source:
        with os.fdopen(write_end, "wb") as sink:
            sink.write(frame)
        with pytest.raises(UnreadableFrame, match=says):
            _FrameReader(source).read()


@pytest.mark.parametrize(("sends", "error"), [
    (b"", r"stopped unexpectedly \(exit code 0\)"),
    ((8).to_bytes(8, "big") + b"\x80\x05garbage",
     r"could not read what its prefetch process sent \(UnpicklingError: .*\)\. Pages saved so far"),
], ids=["nothing", "garbage"])
def test_a_child_that_sends_nothing_readable_fails_the_sync_with_a_clear_error(tmp_path, monkeypatch,
                                                                              sends, error):
    """A real process in the child's place, writing ``sends`` and exiting."""
    from autumn_django.client import AutumnClient
    from autumn_django.exceptions import AutumnError
    from autumn_django.sync.pages import prefetch
    from autumn_django.sync.pages.fingerprints import Fingerprints
    from autumn_django.sync.pages.windows import Window

    stand_in_child = tmp_path / "child.py"
    stand_in_child.write_text(f"import sys\nsys.stdin.buffer.read()\nsys.stdout.buffer.write({sends!r})\n")
    real = prefetch.subprocess.Popen
    monkeypatch.setattr(prefetch.subprocess, "Popen",
                        lambda command, **kwargs: real([sys.executable, str(stand_in_child)], **kwargs))
    client = AutumnClient(api_url="http://127.0.0.1:9", secret_key="am_sk_test_" + "0" * 24)
    pages = prefetch.prepared_pages(client, [Window(0, None, None)], 1, 10, Fingerprints, dict)
    with pytest.raises(AutumnError, match=error):
        next(pages)


# A prefetch child's sender, alone: ``frames`` frames of ``size`` bytes to its real stdout.
CHILD_SENDING = """
import sys
from autumn_django.sync.pages.prefetch import _FrameSender
sender = _FrameSender(sys.stdout.buffer)
for i in range({frames}):
    sender.send(("page", bytes([i]) * {size}))
sender.close()
"""


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED=1", "buffered"])
def test_a_child_paused_while_it_writes_loses_no_frame(unbuffered):
    """A child stopped and continued again and again (Ctrl-Z and ``fg``; a profiler
    attaching does the same) while the parent reads slowly, so the stops land on writes
    that wait for it: every frame arrives whole. Under ``PYTHONUNBUFFERED=1``, as most
    Django containers run, the child's stdout is the raw file: before, such a stop cut the
    frame it was writing short (the first one, every time) and the next read unpickled
    garbage."""
    frames, size = 30, 1_000_000  # each far larger than the pipe's buffer
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered,
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # this autumn_django, as the sync does
    child = subprocess.Popen([sys.executable, "-c", CHILD_SENDING.format(frames=frames, size=size)],
                             stdout=subprocess.PIPE, env=env)
    pauses = 0

    def pause_again_and_again():
        nonlocal pauses
        while child.poll() is None:
            try:
                child.send_signal(signal.SIGTSTP)
                time.sleep(0.002)
                child.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                return
            pauses += 1
            time.sleep(0.003)

    pausing = threading.Thread(target=pause_again_and_again, daemon=True)
    pausing.start()
    received = []
    try:
        reader = _FrameReader(child.stdout)
        for _ in range(frames):
            time.sleep(0.01)  # the parent is busy writing the page before
            try:
                received.append(reader.read())
            except (EOFError, pickle.UnpicklingError, UnicodeDecodeError, MemoryError, OverflowError):
                break  # a frame came short: what follows is no frame
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        pausing.join(5)
    assert pauses > 20, "the child was paused while it wrote"
    whole = [i for i, frame in enumerate(received) if frame == ("page", bytes([i]) * size)]
    assert whole == list(range(frames)), f"frames that arrived whole: {whole}"
