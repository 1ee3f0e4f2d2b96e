"""Many patients at once: `cds batch` and `cds diff-rules` (streaming, worker processes)."""
