"""The protocol channel: JSON lines from ciq on one descriptor, JSON lines to ciq on another."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


class ProtocolError(Exception):
    """ciq sent something that is not a protocol message."""


class ChannelClosed(Exception):
    """ciq closed its end of the channel while we were writing."""


class Channel:
    def __init__(self, in_fd: int, out_fd: int) -> None:
        # Buffered reading is fine: ciq sends one message and waits for the answer, so
        # whatever is read ahead stays in our own buffer until we ask for it.
        self._in = os.fdopen(in_fd, "rb")
        self._out_fd = out_fd

    @classmethod
    def take_over_stdio(cls) -> Channel:
        """Move the protocol off fds 0 and 1, so nothing else can read or write it.

        Must run before pytest starts capturing: pytest's fd capture saves fd 1 and puts it
        back when capture ends, so fd 1 has to be stderr by then, not the protocol pipe.
        """
        # Whatever Python buffered for the real stdout would land on the channel later.
        sys.stdout.flush()
        # os.dup gives non-inheritable descriptors: a subprocess started by a test never
        # holds the protocol pipes, so ciq sees EOF as soon as this process dies.
        out_fd = os.dup(1)
        in_fd = os.dup(0)
        # Stray output (print with capture off, C extensions, subprocesses, the terminal
        # reporter) goes to stderr, where ciq keeps it as the crash output.
        os.dup2(2, 1)
        # A test that reads stdin gets EOF instead of eating ciq's messages.
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        return cls(in_fd, out_fd)

    def receive(self) -> dict[str, Any] | None:
        """The next message from ciq, or None at EOF. Blank lines are skipped."""
        while True:
            line = self._in.readline()
            if not line:
                return None
            line = line.strip()
            if not line:
                continue
            try:
                message = json.loads(line.decode("utf-8"))
            except ValueError as e:  # UnicodeDecodeError is a ValueError too
                raise ProtocolError(f"not a JSON line: {line[:200]!r}: {e}") from None
            if not isinstance(message, dict):
                raise ProtocolError(f"not a JSON object: {line[:200]!r}")
            return message

    def send(self, message: dict[str, Any]) -> None:
        """Write one message as one line, unbuffered, so ciq sees it at once."""
        data = (json.dumps(_clean(message), ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            while data:
                data = data[os.write(self._out_fd, data) :]
        except BrokenPipeError:
            raise ChannelClosed() from None

    def close(self) -> None:
        self._in.close()
        try:
            os.close(self._out_fd)
        except OSError:
            pass


def _clean(value: Any) -> Any:
    """Make every string encodable as UTF-8.

    Captured output may hold lone surrogates (undecodable bytes, or a test printing them);
    they cannot be encoded as UTF-8 and strict JSON readers refuse them as escapes, so they
    are written as visible backslash escapes instead.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value
