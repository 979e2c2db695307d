"""The one network layer: ``http`` (session, retries, resume), ``deadline`` (time limits),
``download`` (verified downloads into the cache)."""
