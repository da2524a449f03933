"""Incremental Server-Sent Events framing (pure; WHATWG EventSource parsing rules).

The proxy forwards upstream events unchanged (ids, `retry:`, comments), and only re-encodes an
event whose JSON-RPC payload it must rewrite (a filtered `tools/list`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_EVENT_BYTES = 16 * 1024 * 1024


class SseTooLarge(Exception):
    pass


@dataclass
class SseEvent:
    raw: bytes
    data: str | None = None
    event: str | None = None
    id: str | None = None
    retry: str | None = None
    comment_only: bool = False
    extra: list[str] = field(default_factory=list)

    def encode_with_data(self, data: str) -> bytes:
        lines: list[str] = []
        if self.event is not None:
            lines.append(f"event: {self.event}")
        if self.id is not None:
            lines.append(f"id: {self.id}")
        if self.retry is not None:
            lines.append(f"retry: {self.retry}")
        lines.extend(f"data: {part}" for part in data.split("\n"))
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _parse_block(block: bytes) -> SseEvent:
    text = block.decode("utf-8", errors="replace")
    data_lines: list[str] = []
    ev = SseEvent(raw=block)
    seen_field = False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            continue
        if line.startswith(":"):
            continue
        seen_field = True
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data_lines.append(value)
        elif name == "event":
            ev.event = value
        elif name == "id":
            ev.id = value
        elif name == "retry":
            ev.retry = value
        else:
            ev.extra.append(line)
    ev.comment_only = not seen_field
    ev.data = "\n".join(data_lines) if data_lines else None
    return ev


class SseParser:
    """Feed bytes, get complete events (each with its raw bytes including the blank line)."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buf.extend(chunk)
        events: list[SseEvent] = []
        while True:
            end, sep_len = _find_boundary(self._buf)
            if end < 0:
                if len(self._buf) > self._max:
                    raise SseTooLarge(f"an SSE event exceeded {self._max} bytes")
                return events
            block = bytes(self._buf[: end + sep_len])
            del self._buf[: end + sep_len]
            events.append(_parse_block(block))

    def flush(self) -> list[SseEvent]:
        if not self._buf.strip():
            self._buf.clear()
            return []
        block = bytes(self._buf) + b"\n\n"
        self._buf.clear()
        return [_parse_block(block)]


def _find_boundary(buf: bytearray) -> tuple[int, int]:
    best = (-1, 0)
    for sep in (b"\r\n\r\n", b"\n\n", b"\r\r"):
        idx = buf.find(sep)
        if idx >= 0 and (best[0] < 0 or idx < best[0]):
            best = (idx, len(sep))
    return best
