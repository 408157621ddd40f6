"""Where each page goes: the archive, the table, the schema and the watermark, one sink each.

A sink does its work on a page in two halves. `prepare(page)` runs in the thread that fetched
the page, as soon as it arrives: the costly, thread-safe part (gzip and sha256 of the body, the
page's DataFrame, its field tree; zlib, hashlib and Polars' parser release the GIL, so this
overlaps with fetching other pages). `add(page, prepared)` runs in the one consuming thread, in
page order: the cheap part that needs order (appending). `prepared` is None when the fetching
thread's work failed; `add` then does the work itself, where the error is reported.
"""

from typing import Any, Protocol

from api_assets.pages import Page
from api_assets.pipeline.normalize import PageFrame, TableBuilder, page_table
from api_assets.pipeline.schema import PageTree, SchemaBuilder, page_tree
from api_assets.storage.archive import ArchiveWriter, Packed, pack_body


class PageSink(Protocol):
    def prepare(self, page: Page) -> Any:
        """The thread-safe part of the work on `page` (in the fetching thread)."""

    def add(self, page: Page, prepared: Any) -> None:
        """The ordered part (in the consuming thread); `prepared` is what `prepare` made, or
        None."""


class ArchiveSink:
    """Every body as fetched, into the partition's archive (`storage/archive.py`)."""

    def __init__(self, writer: ArchiveWriter):
        self.writer = writer

    def prepare(self, page: Page) -> Packed:
        return pack_body(page.body)

    def add(self, page: Page, prepared: Packed | None) -> None:
        self.writer.write(page, prepared)


class TableSink:
    """Records become rows (`normalize.py`)."""

    def __init__(self, builder: TableBuilder):
        self.builder = builder

    def prepare(self, page: Page) -> PageFrame:
        return page_table(page.records, page.parent)

    def add(self, page: Page, prepared: PageFrame | None) -> None:
        self.builder.add(page.records, page.parent, frame=prepared)


class SchemaSink:
    """The structural schema of the records (`schema.py`)."""

    def __init__(self, builder: SchemaBuilder):
        self.builder = builder

    def prepare(self, page: Page) -> PageTree:
        return page_tree(page.records)

    def add(self, page: Page, prepared: PageTree | None) -> None:
        self.builder.add(page.records, tree=prepared)


class Preparer:
    """The hook the fetch runs on each page in its own thread (`series.fetch(prepare=)`), and
    the hand-over of each page to the sinks, in order, in the consuming thread."""

    def __init__(self, sinks: tuple[PageSink, ...]):
        self.sinks = sinks
        # page id -> what each sink prepared; a page lives until it is delivered, so its id
        # stays unique meanwhile (dict updates are atomic under the GIL)
        self._made: dict[int, tuple[Any, ...]] = {}

    def __call__(self, page: Page) -> None:
        try:
            self._made[id(page)] = tuple(sink.prepare(page) for sink in self.sinks)
        except Exception:  # RecursionError included: `add` redoes it and reports the page's URL
            pass

    def deliver(self, page: Page) -> None:
        """Hand `page` to every sink with what was prepared for it (None where nothing was)."""
        prepared = self._made.pop(id(page), None) or (None,) * len(self.sinks)
        for sink, made in zip(self.sinks, prepared, strict=True):
            sink.add(page, made)
