"""Matching rules against facts: the durable-rules engine (durable.py, the only module that imports durable-rules) and a pure-Python reference interpreter (reference.py) it is tested against."""
