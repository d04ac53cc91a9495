"""Apache Beam pipelines that unify e-commerce user activity into BigQuery.

Jobs: :mod:`beam_pipelines.streaming`, :mod:`beam_pipelines.hourly`,
:mod:`beam_pipelines.extract_orders`, :mod:`beam_pipelines.extract_dims`.
"""
