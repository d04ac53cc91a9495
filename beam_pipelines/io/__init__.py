"""I/O helpers shared by the jobs and the publishers.

:mod:`beam_pipelines.io.sql` is the one connection layer to the SQL source
(SQLite locally, PostgreSQL / Cloud SQL in production): the catalog loader, the
orders API and the ``extract_dims`` job all open their connections through it.
"""
