"""Ready pipelines, one file per task: a Config dataclass and build / train / sample / inspect."""
