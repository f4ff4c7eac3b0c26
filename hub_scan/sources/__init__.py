"""Where cards come from: a local folder, a parquet card dump, the live Hub API. Each yields CardRecords."""
