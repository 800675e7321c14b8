"""``entities.list`` pages as the full sync's entities pass reads them: bytes first, and not
decoded at all when they equal a page a completed pass read before (no Django here).

Equal bytes hold equal entities. An ``EntityPageMemo``, stored under the SHA-256 of a page's
bytes (``sync.memos``, ``SyncedEntityPage``), says where the crawl goes from that page and
names its entities: the key fingerprint of each (so that deletions can be judged without
decoding it) and the state fingerprint of each as the mirror stores it (its JSON's hash).
While the mirror still holds every one of those states, the same bytes again need no
decoding, hashing or lookup: their entities are as mirrored, and seen.

Only pages the cursor gives at the crawl's limit are remembered: a page asked again
shorter (the null-cursor defect, ``entity_listing``) is read every time, and so is one
that ended the crawl early or came with a warning (the entities pass decides that).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ... import jsonlib, resources
from ...client import AutumnClient
from ...entity_listing import EntityCrawl, EntityStep, last_with_id
from .fingerprints import Fingerprints, pack_memo, unpack_memo
from .timeforms import EPOCH

# Bytes stored by an older version lack it and are ignored: the page is simply read again.
_FORMAT = b"autumn_django entity page memo 1\n"


class EntityPageMemo:
    """What a page of ``entities.list`` held: enough to go on from it (``next_cursor``,
    ``count``, whether its last entity has an id), the oldest ``created_at`` on it (epoch
    ms: a resumed pass judges deletions below it), and the key and state fingerprints of
    its entities."""

    def __init__(self, next_cursor: str | None, count: int, ends_on_id: bool, oldest: int | None,
                 keys: Iterable[int] = (), states: Iterable[int] = ()) -> None:
        self.next_cursor, self.count, self.ends_on_id, self.oldest = next_cursor, count, ends_on_id, oldest
        self.keys, self.states = array("Q", keys), array("Q", states)

    def held_by(self, mirror: Fingerprints) -> bool:
        """Whether the mirror holds every entity of the page as the page shows it."""
        return all(state in mirror for state in self.states)

    def __len__(self) -> int:
        return len(self.states)

    def to_bytes(self) -> bytes:
        header = {"next_cursor": self.next_cursor, "count": self.count, "ends_on_id": self.ends_on_id,
                  "oldest": self.oldest}
        return pack_memo(_FORMAT, header, self.keys, self.states)

    @classmethod
    def from_bytes(cls, data: bytes) -> EntityPageMemo | None:
        """The memo stored as ``data``; None for bytes of another format or damaged ones."""
        unpacked = unpack_memo(data, _FORMAT, 2)
        if unpacked is None:
            return None
        header, (keys, states) = unpacked
        try:
            if len(states) != header["count"]:
                return None
            return cls(header["next_cursor"], header["count"], bool(header["ends_on_id"]), header["oldest"],
                       keys, states)
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


@dataclass
class RawEntityPage:
    """A page of the entities pass's crawl: its entities as decoded, or none when it was
    recalled (``memo``: the bytes of a page the mirror holds, not decoded)."""

    entities: list[Any]
    step: EntityStep
    requested_at: datetime  # when its request was sent (aware UTC)
    # SHA-256 of the answer's bytes when the page may be remembered; None: it may not.
    digest: bytes | None = None
    memo: EntityPageMemo | None = None

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


def raw_entity_pages(client: AutumnClient, crawl: EntityCrawl, recall: Recall | None = None
                     ) -> Iterator[RawEntityPage]:
    """Every page of ``crawl``. With ``recall`` (the memo of bytes whose entities the mirror
    holds, or None), a page it knows is not decoded, unless only its entities can tell
    where the crawl goes."""
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
            # Through the module, so that what decodes every entities page is one name.
            answer = resources.entity_list_answer(response)
            entities = answer["list"]
            step = crawl.advance(len(entities), answer["next_cursor"], last_with_id(entities))
            if step is None:
                continue  # the same cursor, asked again shorter: that answer is not remembered
            page = RawEntityPage(entities, step, response.requested_at, digest)
        del response
        yield page
        del page
