"""Flask-Smorest pagination, stated in headers a generic client reads.

Flask-Smorest pages a view's list itself (`@blp.paginate(Page)`: `page`/`page_size` query
arguments) and states the result as JSON in its `X-Pagination` header. `LinkedBlueprint` uses the
hook Flask-Smorest documents for "pagination data another way" (`_set_pagination_metadata`): it
keeps `X-Pagination` and adds the same metadata, as the library computed it, as `X-Total-Count`
and an RFC 8288 `Link` header (`first`, `last`, `next`, `prev`).
"""

from typing import Any

from flask import request, url_for
from flask_smorest import Blueprint

RELATIONS = (
    ("first", "first_page"),
    ("last", "last_page"),
    ("next", "next_page"),
    ("prev", "previous_page"),
)


class LinkedBlueprint(Blueprint):
    def _set_pagination_metadata(self, page_params: Any, result: Any, headers: Any) -> Any:
        result, headers = super()._set_pagination_metadata(page_params, result, headers)
        metadata = self._make_pagination_metadata(
            page_params.page, page_params.page_size, page_params.item_count
        )
        headers["X-Total-Count"] = str(metadata["total"])
        links = []
        for rel, key in RELATIONS:
            if (page := metadata.get(key)) is not None:
                target = url_for(
                    request.endpoint or "",
                    **{**request.args, "page": page, "page_size": page_params.page_size},
                    _external=True,
                )
                links.append(f'<{target}>; rel="{rel}"')
        if links:
            headers["Link"] = ", ".join(links)
        return result, headers
