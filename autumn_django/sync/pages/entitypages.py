"""``entities.list`` pages as the full sync's entities pass reads them: bytes first, and not
decoded at all when they equal a page a completed pass read before (no Django here).

Equal bytes hold equal entities. An ``EntityPageMemo``, stored under the SHA-256 of a page's
bytes (``sync.memos``, ``SyncedEntityPage``), says where the crawl goes from that page and
names its entities: the key fingerprint of each (so that deletions can be judged without
decoding it) and the state fingerprint of each as the mirror stores it (its JSON's hash).
While the mirror still holds every one of those states, the same bytes again need no
decoding, hashing or lookup: their entities are as mirrored, and seen.

A memo also names each entity's bytes (``pagememo.raw_fingerprint``). ``entities.list``
is newest first, so one entity created or deleted shifts every page after it: their bytes
change, but their entities' do not. A changed page is sliced into each entity's bytes
(msgspec), and an entity whose bytes a stored memo showed, in a state the mirror holds,
is neither decoded nor hashed (``KnownEntity``): only its key fields are read.

Only pages the cursor gives at the crawl's limit are remembered: a page asked again
shorter (the null-cursor defect, ``entity_listing``) is read every time, and so is one
that ended the crawl early or came with a warning (the entities pass decides that).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ... import jsonlib, resources
from ...client import AutumnClient
from ...entity_listing import EntityCrawl, EntityStep, last_with_id
from .fingerprints import StateMemo
from .pagememo import raw_fingerprint
from .rawpages import list_envelope
from .timeforms import EPOCH


class EntityPageMemo(StateMemo):
    """What a page of ``entities.list`` held: enough to go on from it (``next_cursor``,
    ``count``, whether its last entity has an id), the oldest ``created_at`` on it (epoch
    ms: a resumed pass judges deletions below it), and the key and state fingerprints of
    its entities, with their bytes' (``raws``; 0: unknown)."""

    # Bytes stored by an older version lack it and are ignored: the page is simply read again.
    FORMAT = b"autumn_django entity page memo 2\n"

    def __init__(self, next_cursor: str | None, count: int, ends_on_id: bool, oldest: int | None,
                 keys: Iterable[int] = (), states: Iterable[int] = (), raws: Iterable[int] | None = None,
                 ) -> None:
        self.next_cursor, self.count, self.ends_on_id, self.oldest = next_cursor, count, ends_on_id, oldest
        super().__init__(keys, states, () if raws is None else raws)
        if raws is None:  # unknown: 0 for each entity
            self.raws = array("Q", bytes(8 * len(self.states)))

    def to_bytes(self) -> bytes:
        header = {"next_cursor": self.next_cursor, "count": self.count, "ends_on_id": self.ends_on_id,
                  "oldest": self.oldest}
        return self._packed(header)

    @classmethod
    def from_bytes(cls, data: bytes) -> EntityPageMemo | None:
        """The memo stored as ``data``; None for bytes of another format or damaged ones."""
        unpacked = cls._unpacked(data)
        if unpacked is None:
            return None
        header, (keys, states, raws) = unpacked
        try:
            if len(states) != header["count"]:
                return None
            return cls(header["next_cursor"], header["count"], bool(header["ends_on_id"]), header["oldest"],
                       keys, states, raws)
        except (KeyError, TypeError):
            return None


def entity_key_fingerprint(customer_id: Any, autumn_id: Any, created_at: datetime | None, name: Any) -> int:
    """64 bits naming an entity by its key (``entities.EntityKey``): its customer's Autumn
    id and its own, or, without an id, its customer's, ``created_at`` and name. Computed
    alike from a record and from a mirror row (``created_at`` aware, to the millisecond)."""
    if autumn_id is not None:
        text = f"{customer_id}\0{autumn_id}"
    else:
        ms = None if created_at is None else (created_at - EPOCH) // timedelta(milliseconds=1)
        text = f"{customer_id}\0\0{jsonlib.dumps_bytes([ms, name]).decode()}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class KnownEntity:
    """An entity of a page whose bytes a stored memo showed, in a state the mirror holds: not
    decoded. Its key fingerprint, state and bytes' fingerprints, and ``created_at`` (epoch ms)."""

    key: int
    state: int
    raw: int
    created_ms: int


@dataclass
class RawEntityPage:
    """A page of the entities pass's crawl: its entities as decoded, or none when it was
    recalled (``memo``: the bytes of a page the mirror holds, not decoded). Of a page that
    was not, the entities whose bytes the mirror holds are ``known`` instead of decoded."""

    entities: list[Any]
    step: EntityStep
    requested_at: datetime  # when its request was sent (aware UTC)
    # SHA-256 of the answer's bytes when the page may be remembered; None: it may not.
    digest: bytes | None = None
    memo: EntityPageMemo | None = None
    # The bytes' fingerprint of each of ``entities`` (0: unknown).
    raws: list[int] = field(default_factory=list)
    known: list[KnownEntity] = field(default_factory=list)
    ends_on_id: bool = False  # whether the page's last entity, decoded or known, has an id

    @property
    def next_cursor(self) -> str | None:
        return self.step.next_cursor

    @property
    def complete(self) -> bool:
        return self.step.complete

    @property
    def warnings(self) -> list[str]:
        return self.step.warnings


Recall = Callable[[bytes], EntityPageMemo | None]
# The state fingerprint of an entity's bytes (``raw_fingerprint``) if a stored memo showed
# them and the mirror holds that state; else None.
KnownBytes = Callable[[int], int | None]


class _Head(msgspec.Struct):
    """An entity's key fields: all an entity whose bytes the mirror holds needs read."""

    id: Any = None
    customer_id: Any = None
    created_at: Any = None
    name: Any = None


_head = msgspec.json.Decoder(_Head)
_any = msgspec.json.Decoder()


@dataclass
class DecodedPage:
    entities: list[Any]
    raws: list[int]
    known: list[KnownEntity]
    count: int
    last_with_id: int | None
    next_cursor: str | None


def decode_page(response: Any, known_bytes: KnownBytes | None) -> DecodedPage:
    """A page's entities: each decoded, or ``known`` when ``known_bytes`` knows its bytes.
    Every entities page the pass decodes goes through here."""
    try:
        envelope = list_envelope.decode(response.content)
    except msgspec.DecodeError:
        # Not the shape expected: the module's own decoding names what is wrong, or, if
        # the page is fine by it after all, it is read whole.
        answer = resources.entity_list_answer(response)
        entities = answer["list"]
        return DecodedPage(entities, [0] * len(entities), [], len(entities), last_with_id(entities),
                        answer["next_cursor"])
    decoded = DecodedPage([], [], [], len(envelope.items), None, envelope.next_cursor)
    for position, raw in enumerate(envelope.items):
        try:
            head = _head.decode(raw)
        except msgspec.DecodeError:  # not an object: decoded, and reported by the reader
            head = None
        if head is not None and head.id:  # ``entity_listing.has_id``
            decoded.last_with_id = position
        raw_print = raw_fingerprint(raw)
        state = known_bytes(raw_print) if known_bytes is not None and head is not None else None
        if state is not None:
            # The same bytes as an entity the mirror holds as it is, so its key fields are
            # as they were when it was read: valid.
            created = None if head.id is not None else EPOCH + timedelta(milliseconds=head.created_at)
            key = entity_key_fingerprint(head.customer_id, head.id, created, head.name)
            decoded.known.append(KnownEntity(key, state, raw_print, head.created_at))
        else:
            decoded.entities.append(_any.decode(raw))
            decoded.raws.append(raw_print)
    return decoded


def raw_entity_pages(client: AutumnClient, crawl: EntityCrawl, recall: Recall | None = None,
                     known_bytes: KnownBytes | None = None) -> Iterator[RawEntityPage]:
    """Every page of ``crawl``. With ``recall`` (the memo of bytes whose entities the mirror
    holds, or None), a page it knows is not decoded, unless only its entities can tell
    where the crawl goes. With ``known_bytes``, an entity whose bytes it knows is not
    decoded (``KnownEntity``)."""
    while not crawl.done:
        rememberable = recall is not None and not crawl.shortened
        response = client.entities.page_response(crawl)
        digest = memo = None
        if rememberable:
            digest = hashlib.sha256(response.content).digest()
            memo = recall(digest)  # type: ignore[misc]
        step = crawl.recognise(memo.count, memo.next_cursor, memo.ends_on_id) if memo is not None else None
        if step is not None:
            page = RawEntityPage([], step, response.requested_at, digest, memo)
        else:
            page_of = decode_page(response, known_bytes)
            step = crawl.advance(page_of.count, page_of.next_cursor, page_of.last_with_id)
            if step is None:
                continue  # the same cursor, asked again shorter: that answer is not remembered
            page = RawEntityPage(page_of.entities, step, response.requested_at, digest, raws=page_of.raws,
                                 known=page_of.known,
                                 ends_on_id=bool(page_of.count) and page_of.last_with_id == page_of.count - 1)
            del page_of
        del response
        yield page
        del page
