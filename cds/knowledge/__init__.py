"""The clinical knowledge as data: rule-file schema and loading, the evidence registry, site settings, the rule check and rule fixtures.

Reads the rule folder (YAML) into validated, immutable objects; knows nothing of the engine that runs them."""
