"""The report: built from an evaluation, rendered as JSON, Markdown or HTML (templates only loop and branch)."""
