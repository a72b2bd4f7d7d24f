"""Stream entry ids ↔ the browsers' ``seq``.

A Redis Stream entry id is ``<ms>-<n>``: the Redis server's clock in milliseconds when the
entry was added, and a counter within that millisecond. The relay's ``seq`` is the same
position as one integer::

    seq = ms * SEQ_PER_MS + n        "1796163016920-3"  ↔  1796163016920003

so ``seq`` increases with the stream, and its first 13 digits read as the entry's time. The
append script never lets ``n`` reach :data:`SEQ_PER_MS` (it moves to the next millisecond
instead), so the mapping is one-to-one and ordered.

Why 1,000 and not a power of two: ``seq`` must stay an exact JavaScript number (the page
script compares it and sends it back as ``since``), i.e. at most
:data:`~flask_thrillconnect.limits.MAX_SEQ`; with 1,000 per millisecond that holds until the
year 2255. ``2**20`` per millisecond would already be past it today.
"""

from __future__ import annotations

from typing import Final

from ...limits import MAX_SEQ

__all__ = ["MAX_SEQ", "SEQ_PER_MS", "entry_id", "seq_of"]

#: Entries one millisecond of stream ids may hold (the append script keeps ``n`` below it).
SEQ_PER_MS: Final = 1000


def seq_of(entry: str | bytes) -> int:
    """The ``seq`` of stream entry id ``entry`` (``"<ms>-<n>"``).

    :raises ValueError: not an entry id of this stream's shape (``n`` too large, or a
        ``seq`` past :data:`MAX_SEQ`).
    """
    text = entry.decode("ascii") if isinstance(entry, bytes) else entry
    ms_text, dash, n_text = text.partition("-")
    if not (dash and ms_text.isdigit() and n_text.isdigit()):
        raise ValueError(f"not a stream entry id: {text[:40]!r}")
    ms, n = int(ms_text), int(n_text)
    if n >= SEQ_PER_MS:
        raise ValueError(f"entry id {text!r} has more than {SEQ_PER_MS} entries in its ms")
    seq = ms * SEQ_PER_MS + n
    if seq > MAX_SEQ:
        raise ValueError(f"entry id {text!r} is past the largest seq")
    return seq


def entry_id(seq: int) -> str:
    """The stream entry id of ``seq`` (``0`` → ``"0-0"``, before every entry).

    :raises ValueError: ``seq`` is negative or past :data:`MAX_SEQ`.
    """
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"seq out of range: {seq!r}")
    ms, n = divmod(seq, SEQ_PER_MS)
    return f"{ms}-{n}"
