"""The patient as data: the profile contract, the drug vocabulary, the fact catalogue and derived facts.

Pure: no engine, no report, no terminal. Everything above builds on these types."""
