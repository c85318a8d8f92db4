"""The metrics: one module per metric, or per small family sharing a formula.  Each module
registers its :class:`~xlspec.runtime.metrics.registry.MetricInfo` in ``METRICS`` at import;
the registry imports every module here (names starting with ``_`` excepted) on first use.

A metric module stays light to import: numpy and pandas through :mod:`xlspec.lazy`, the
table helpers (``..columns``, ``..aggregate``) inside the functions that use them."""
