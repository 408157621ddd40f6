"""A FastAPI app whose pages come from fastapi-pagination over SQLAlchemy (an in-memory SQLite
database), behind Starlette's `GZipMiddleware` (every answer gzip-compressed), served by uvicorn.

Every paginated route hands the same query to the library and lets it page:

| route | fastapi-pagination page | how the next page is found |
| --- | --- | --- |
| `/limit-offset` | `LimitOffsetPage` | `offset`/`limit`, `total` in the body |
| `/limit-offset-header` | `LimitOffsetPage` + `UseResponseHeaders`, `total` left out | `X-Total-Count` header |
| `/pages` | `Page` | `page`/`size`, `pages` in the body |
| `/links` | `fastapi_pagination.links.Page` | `links.next` (a URL) in the body |
| `/header-links` | `Page` + `UseHeaderLinks` | RFC 8288 `Link: <…>; rel="next"` |
| `/cursor` | `CursorPage` (SQLAlchemy extension → sqlakeyset) | `next_page` cursor in the body |

`/keyset?after=&limit=` is plain SQL (`id > after ORDER BY id LIMIT limit`), the since-id style.
`/_truth` returns every record unpaginated: the server's own data, for the tests to compare.

Run: `python -m api_assets_tests.conformance.servers.fastapi_pages --port N --count N`.
"""

import argparse
from collections.abc import Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Query
from fastapi.middleware.gzip import GZipMiddleware
from fastapi_pagination import LimitOffsetPage, Page, add_pagination
from fastapi_pagination.cursor import CursorPage
from fastapi_pagination.customization import (
    CustomizedPage,
    UseExcludedFields,
    UseResponseHeaders,
)
from fastapi_pagination.ext.sqlalchemy import paginate
from fastapi_pagination.links import Page as LinksPage
from fastapi_pagination.links import UseHeaderLinks
from sqlalchemy import JSON, Integer, Select, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import StaticPool

from api_assets_tests.conformance.servers.seed import make_records


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    doc: Mapped[dict[str, Any]] = mapped_column(JSON)


TotalInHeaderPage = CustomizedPage[
    LimitOffsetPage[Any],
    UseResponseHeaders(lambda page: {"X-Total-Count": str(page.total)}),
    UseExcludedFields("total"),
]
HeaderLinksPage = CustomizedPage[Page[Any], UseHeaderLinks()]


def docs(rows: Sequence[Any]) -> list[dict[str, Any]]:
    return [row.doc for row in rows]


def create_app(count: int) -> FastAPI:
    # One in-memory database on one connection, used only from the event loop's thread: the
    # routes are `async def`, so requests take their turn at it (SQLite objects stay in the
    # thread that made them).
    engine = create_engine(
        "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
    )
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all(Item(id=r["id"], doc=r) for r in make_records(count))
        session.commit()
    ordered = select(Item).order_by(Item.id)

    def page_of(query: Select[Item]) -> Any:
        """The page the route's declared page type and the request's params ask for."""
        with Session(engine) as session:
            return paginate(session, query, transformer=docs)

    app = FastAPI()
    app.add_middleware(GZipMiddleware, minimum_size=0)

    @app.get("/_truth")
    async def truth() -> list[dict[str, Any]]:
        with Session(engine) as session:
            return docs(session.scalars(ordered).all())

    @app.get("/limit-offset")
    async def limit_offset() -> LimitOffsetPage[Any]:
        return page_of(ordered)

    @app.get("/limit-offset-header")
    async def limit_offset_header() -> TotalInHeaderPage:
        return page_of(ordered)

    @app.get("/pages")
    async def pages() -> Page[Any]:
        return page_of(ordered)

    @app.get("/links")
    async def links() -> LinksPage[Any]:
        return page_of(ordered)

    @app.get("/header-links")
    async def header_links() -> HeaderLinksPage:
        return page_of(ordered)

    @app.get("/cursor")
    async def cursor() -> CursorPage[Any]:
        return page_of(ordered)

    @app.get("/keyset")
    async def keyset(
        after: int = Query(0), limit: int = Query(50, ge=1, le=100)
    ) -> list[dict[str, Any]]:
        with Session(engine) as session:
            query = ordered.where(Item.id > after).limit(limit)
            return docs(session.scalars(query).all())

    add_pagination(app)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=437)
    args = parser.parse_args()
    uvicorn.run(create_app(args.count), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
