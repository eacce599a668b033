"""The chunked-stage runner: chunk files, fingerprints, shards, merge, progress."""
