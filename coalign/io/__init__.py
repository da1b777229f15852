"""Reading and writing: the only place that touches files or knows instruments."""
