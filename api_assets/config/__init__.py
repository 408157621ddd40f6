"""The sources file: what a user writes, read and checked before anything runs.

- `models.py`: one pydantic model per mapping (sources, auth, paginators, endpoints, webhooks,
  TLS), with their rules;
- `loader.py`: YAML with line numbers, `${VAR}` expansion (`env.py`), every mistake at once as
  `file:line: key.path: message` (`load_sources`);
- `cron.py`: `schedule:` expressions; `validate.py`: the `api-assets validate` command.
"""
