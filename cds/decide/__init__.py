"""From a patient to a decision: the evaluation pipeline (profile -> derived facts -> engine -> ranking -> unknown-fact analysis)."""
