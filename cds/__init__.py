"""cds: clinical decision support for relapsed/refractory multiple myeloma.

Decision support, not decision making: every ranked option carries the rules
that fired, the evidence behind them, and the facts they were computed from.
"""

__version__ = "0.1.0"
