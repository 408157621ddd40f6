"""One request to one `Page`: where a request is built, sent and read.

- `client.py`: `SourceClient`, one per source per process: the keep-alive connection pool, the
  auth flow, the rate limiter, the retry policy; `get_page` sends one page request and turns the
  answer into a `Page`.
- `connection.py`: TLS, proxy and HTTP/2 settings as httpx arguments.
- `decoding.py`: the body decoded once (gzip, deflate, br, zstd), in bounded steps.
- `auth.py` (+ `credentials.py`): one `httpx.Auth` flow per auth type, built from a registry.
- `ratelimit.py`, `headers.py`: the shared limiter and the headers it reads.
- `retry.py`: which answers are retried and how long to wait; `redact.py`: secrets out of every
  text that leaves memory.
"""
