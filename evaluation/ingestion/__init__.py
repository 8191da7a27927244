"""Ingestion: where triplets come from and how their files are read — dataset configs and
partitions, manifests, hub datasets, image validation, file locations (local or object store)."""
