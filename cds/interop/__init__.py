"""Ways in from other systems (FHIR import)."""
