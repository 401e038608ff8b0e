class IngestionRejected(ValueError):
    """A file cannot be ingested; the message says why and is safe to show."""
