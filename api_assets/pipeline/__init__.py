"""One endpoint, one partition: pages in, a committed partition out.

- `ingest.py`: the run: pages → archive, table, schema, watermark → checks → commit → report;
- `normalize.py`: where a record becomes a row (a Polars DataFrame per partition);
- `schema.py`: the structural schema snapshot and its diff;
- `checks.py`: completeness, schema drift and page-count anomalies, from evidence alone;
- `report.py`: the run report.
"""
