"""A Flask-Smorest API (marshmallow schemas, `@blp.paginate(Page)`) served by waitress.

`GET /pets?page=&page_size=` is paged by Flask-Smorest: `X-Pagination` (JSON), and through
`LinkedBlueprint` the same metadata as `X-Total-Count` and a `Link` header. `GET /_truth` returns
every pet unpaginated (the server's own data, for the tests to compare).

Run: `python -m api_assets_tests.conformance.servers.smorest_pets --port N --count N`.
"""

import argparse
from typing import Any

import marshmallow as ma
import waitress
from flask import Flask
from flask_smorest import Api, Page

from api_assets_tests.conformance.servers.seed import make_records
from api_assets_tests.conformance.servers.smorest_links import LinkedBlueprint


class DimensionsSchema(ma.Schema):
    width_cm = ma.fields.Float(required=True)
    height_cm = ma.fields.Float(required=True)


class PetSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    price = ma.fields.Float(required=True)
    in_stock = ma.fields.Boolean(required=True)
    quantity = ma.fields.Integer(allow_none=True)
    tags = ma.fields.List(ma.fields.String())
    dimensions = ma.fields.Nested(DimensionsSchema)
    updated_at = ma.fields.String(required=True)


def create_app(count: int) -> Flask:
    pets = make_records(count, seed=3)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="pets", API_VERSION="1", OPENAPI_VERSION="3.0.3", JSON_SORT_KEYS=False
    )
    api = Api(app)
    blp = LinkedBlueprint("pets", __name__)

    @blp.route("/pets")
    @blp.response(200, PetSchema(many=True))
    @blp.paginate(Page, page_size=10, max_page_size=100)
    def list_pets() -> list[dict[str, Any]]:
        return pets

    @blp.route("/_truth")
    @blp.response(200, PetSchema(many=True))
    def truth() -> list[dict[str, Any]]:
        return pets

    api.register_blueprint(blp)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=263)
    args = parser.parse_args()
    waitress.serve(create_app(args.count), host="127.0.0.1", port=args.port, threads=4)


if __name__ == "__main__":
    main()
