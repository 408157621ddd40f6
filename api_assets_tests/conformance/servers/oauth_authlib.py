"""An OAuth2-protected Flask API: Authlib's authorization server (client credentials grant,
`client_secret_basic` or `client_secret_post`) issues bearer tokens that expire after
`--token-lifetime` seconds, and Authlib's `ResourceProtector` guards the data, which
Flask-Smorest pages (`LinkedBlueprint`: a `Link` header, one page after the other). Each page
takes `--page-delay` seconds, so that a run outlives several tokens.

`GET /_stats` (unprotected) counts the tokens issued, the pages served and the requests refused (401);
`GET /_truth` returns every reading unpaginated.

Run: `python -m api_assets_tests.conformance.servers.oauth_authlib --port N --client-id ID
--client-secret SECRET`.
"""

import argparse
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import marshmallow as ma
import waitress
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from flask import Flask, Response, jsonify
from flask_smorest import Api, Page

from api_assets_tests.conformance.servers.seed import make_records
from api_assets_tests.conformance.servers.smorest_links import LinkedBlueprint

SCOPE = "read"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return " ".join(s for s in (scope or SCOPE).split() if s == SCOPE)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


@dataclass
class Token(TokenMixin):
    client_id: str
    access_token: str
    scope: str
    expires_in: int
    issued_at: float = field(default_factory=time.time)

    def check_client(self, client: Client) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return False


class ReadingSchema(ma.Schema):
    id = ma.fields.Integer(required=True)
    name = ma.fields.String(required=True)
    price = ma.fields.Float(required=True)
    in_stock = ma.fields.Boolean(required=True)
    quantity = ma.fields.Integer(allow_none=True)
    tags = ma.fields.List(ma.fields.String())
    dimensions = ma.fields.Dict()
    updated_at = ma.fields.String(required=True)


def create_app(
    count: int, client_id: str, client_secret: str, token_lifetime: int, page_delay: float
) -> Flask:
    readings = make_records(count, seed=5)
    clients = {client_id: Client(client_id, client_secret)}
    tokens: dict[str, Token] = {}
    lock = threading.Lock()
    stats = {"tokens_issued": 0, "refused": 0, "served": 0}

    app = Flask(__name__)
    app.config.update(
        API_TITLE="readings",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OAUTH2_TOKEN_EXPIRES_IN={"client_credentials": token_lifetime},
    )

    def save_token(token: dict[str, Any], request: Any) -> None:
        with lock:
            tokens[token["access_token"]] = Token(
                request.client.get_client_id(),
                token["access_token"],
                token.get("scope", ""),
                token["expires_in"],
            )
            stats["tokens_issued"] += 1

    authorization = AuthorizationServer(app, query_client=clients.get, save_token=save_token)
    grants.ClientCredentialsGrant.TOKEN_ENDPOINT_AUTH_METHODS = [
        "client_secret_basic",
        "client_secret_post",
    ]
    authorization.register_grant(grants.ClientCredentialsGrant)

    class Validator(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Token | None:
            with lock:
                return tokens.get(token_string)

    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(Validator())

    @app.after_request
    def count_refusals(response: Response) -> Response:
        if response.status_code == 401:
            with lock:
                stats["refused"] += 1
        return response

    @app.post("/oauth/token")
    def issue_token() -> Response:
        return authorization.create_token_response()

    @app.get("/_stats")
    def get_stats() -> Response:
        with lock:
            return jsonify(stats)

    @app.get("/_truth")
    def truth() -> Response:
        return jsonify(readings)

    api = Api(app)
    blp = LinkedBlueprint("readings", __name__)

    @blp.route("/v1/readings")
    @blp.response(200, ReadingSchema(many=True))
    @blp.paginate(Page, page_size=20, max_page_size=100)
    @require_oauth(SCOPE)
    def list_readings() -> list[dict[str, Any]]:
        time.sleep(page_delay)  # a slow API: the run outlives its tokens
        with lock:
            stats["served"] += 1
        return readings

    api.register_blueprint(blp)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", default=None)
    parser.add_argument("--token-lifetime", type=int, default=2)
    parser.add_argument("--page-delay", type=float, default=0.4)
    args = parser.parse_args()
    secret = args.client_secret or secrets.token_urlsafe(16)
    app = create_app(args.count, args.client_id, secret, args.token_lifetime, args.page_delay)
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=4)


if __name__ == "__main__":
    main()
