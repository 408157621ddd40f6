"""What lands on disk under the data root, and how it lands: the layout of paths (`layout.py`),
durable atomic writes (`durable.py`), the raw archive (`archive.py`) and the Parquet tables
(`tables.py`, with `read_table`).
"""
