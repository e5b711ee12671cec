"""The prediction log: schema, store, statistics, tabular export and migrations."""
