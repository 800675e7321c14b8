"""An ``entities.list`` page read for the writer: its entities keyed and hashed, the rows
built of those the mirror does not hold as they are, and a memo of the page (no Django:
in the prefetch child, or in the sync's own process).

``read_entity_pages`` is the whole of it, from requests to read pages: what the prefetch
child runs for the entities pass (``prefetch.read_entity_pages``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from ...client import AutumnClient
from ...entity_listing import EntityCrawl
from .ahead import PagesAhead
from .entitypages import EntityPageMemo, RawEntityPage, entity_key_fingerprint, raw_entity_pages
from .entityrecords import EntityKey, EntityRecord, read_entity
from .fingerprints import Fingerprints, state_fingerprint
from .pagememo import RawIndex
from .records import RecordError, RowForm


@dataclass(frozen=True)
class ReadEntityPage:
    page: RawEntityPage
    records: list[EntityRecord]
    problems: list[RecordError]
    seen: list[int]  # key fingerprints of every entity of the page that could be keyed
    memo: EntityPageMemo | None = None  # a new memo of the page, stored if the write bears it out

    def travel_light(self) -> ReadEntityPage:
        """Drop what the writer does not need before the page crosses the prefetch pipe:
        the decoded entities (the records hold what is written)."""
        self.page.entities, self.page.raws = [], []
        for record in self.records:
            record.travel_light()
        return self


class EntityPageReader:
    """What is done with a page before it is written: key and hash each entity, and build
    the child rows of those the mirror does not hold as they are (by ``known``, the state
    fingerprints of the stored entities when the pass began). The writer decides what is
    new or changed, in the page's transaction; a record the fingerprints took for
    unchanged but that the writer finds changed has its rows built there instead. A
    recalled page (not decoded) costs nothing here."""

    def __init__(self, form: RowForm, known: Fingerprints) -> None:
        self.form, self.known = form, known

    def read(self, page: RawEntityPage) -> ReadEntityPage:
        if page.memo is not None:
            return ReadEntityPage(page, [], [], [])
        records, problems = read_entities(page.entities, page.requested_at, page.raws)
        kept = []
        for record in records:
            if state_fingerprint(record.raw_hash) not in self.known:
                try:
                    record.parse_children(self.form)
                except RecordError as exc:
                    problems.append(exc)
                    continue
            kept.append(record)
        record_prints = [entity_key_print(record.key) for record in records]
        known_prints = [entity.key for entity in page.known]
        seen = record_prints + known_prints + [entity_key_print(problem.key) for problem in problems
                                               if problem.key is not None]
        memo = None
        # Never of a page that ended the crawl early or warned, nor of one with a record
        # that did not parse (reported every run), nor of an empty one. Without problems,
        # every record was kept: ``record_prints`` are the kept ones'.
        if (page.digest is not None and (kept or page.known) and not problems and page.complete
                and not page.warnings):
            undecoded = page.known
            memo = EntityPageMemo(
                page.next_cursor, len(kept) + len(undecoded), page.ends_on_id,
                min([record.created_ms for record in kept] + [entity.created_ms for entity in undecoded]),
                record_prints + known_prints,
                [state_fingerprint(record.raw_hash) for record in kept]
                + [entity.state for entity in undecoded],
                [record.raw_print for record in kept] + [entity.raw for entity in undecoded])
        return ReadEntityPage(page, kept, problems, seen, memo)


class MemoRecall:
    """For the crawl (on its fetching thread): the stored memo of a page's bytes, if the
    mirror (``known``, when the pass began) holds every entity on it as it showed them; and
    (``state_of_bytes``) the state of an entity's bytes a stored memo showed, if the mirror
    holds it."""

    def __init__(self, stored: dict[bytes, bytes], known: Fingerprints) -> None:
        self.stored, self.known = stored, known
        self._raws: RawIndex | None = None

    def __call__(self, digest: bytes) -> EntityPageMemo | None:
        data = self.stored.get(digest)
        memo = EntityPageMemo.from_bytes(data) if data is not None else None
        return memo if memo is not None and memo.held_by(self.known) else None

    def state_of_bytes(self, raw_print: int) -> int | None:
        if self._raws is None:  # made once, when a page is first decoded
            self._raws = RawIndex(memo for data in self.stored.values()
                                  if (memo := EntityPageMemo.from_bytes(data)) is not None)
        state = self._raws.state_of(raw_print)
        return state if state is not None and state in self.known else None


def read_entity_pages(client: AutumnClient, crawl: EntityCrawl, known: Fingerprints,
                      stored_memos: dict[bytes, bytes], form: RowForm, *,
                      lock: threading.Lock | None = None) -> Iterator[ReadEntityPage]:
    """Every page of ``crawl``, read for the writer: the next page is fetched on a thread
    while one is read (at 250 ms a request, reading a page on the fetching thread delays
    the next request). ``lock`` is held while that thread uses ``client``."""
    known.sort()  # the fetching thread and this one share it
    reader = EntityPageReader(form, known)
    recall = MemoRecall(stored_memos, known)
    with PagesAhead(raw_entity_pages(client, crawl, recall, recall.state_of_bytes), lock=lock) as pages:
        for page in pages:
            yield reader.read(page)
            del page


def read_next_entity_page(client: AutumnClient, crawl: EntityCrawl, known: Fingerprints,
                          stored_memos: dict[bytes, bytes], form: RowForm) -> ReadEntityPage | None:
    """The next page of ``crawl``, fetched and read on this thread, the crawl left after
    it (None: the crawl was done)."""
    known.sort()
    recall = MemoRecall(stored_memos, known)
    pages = raw_entity_pages(client, crawl, recall, recall.state_of_bytes)
    try:
        page = next(pages, None)
    finally:
        pages.close()
    return None if page is None else EntityPageReader(form, known).read(page)


def entity_key_print(key: EntityKey) -> int:
    """``entity_key_fingerprint`` of a record's key."""
    if key[1] is not None:
        return entity_key_fingerprint(key[0], key[1], None, None)
    return entity_key_fingerprint(key[0], None, key[2], key[3])


def read_entities(entities: list, read_at: datetime | None, raws: list[int] | None = None,
                  ) -> tuple[list[EntityRecord], list[RecordError]]:
    """``read_entity`` of each object of a page: the records, and the objects' errors.
    ``raws``: the fingerprint of each object's bytes, kept on its record."""
    records, problems = [], []
    for data, raw_print in zip(entities, raws or [0] * len(entities), strict=True):
        try:
            record = read_entity(data, read_at=read_at)
        except RecordError as exc:
            problems.append(exc)
            continue
        record.raw_print = raw_print
        records.append(record)
    return records, problems
