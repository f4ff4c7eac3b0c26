"""Which PEFT methods people actually use: Hub model cards and adapter configs, classified and counted.

Sources (a local folder, a parquet card dump, the live Hub API) yield :class:`~hub_scan.records.CardRecord`;
:mod:`hub_scan.classify` reads each card; :mod:`hub_scan.stats` counts. Heavy imports (pyarrow,
huggingface_hub) stay inside the source that needs them.
"""
