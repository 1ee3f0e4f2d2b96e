"""Deterministic synthetic patient profiles for the benchmark and the batch tests.

`generate(n, seed)` yields `n` valid profiles (dicts) covering the input space:
every optional fact is sometimes given and sometimes unknown, prior lines mix
the drug classes of the vocabulary (with brand names and abbreviations), and
refractoriness is drawn per agent. Run as a script to write JSONL:

    python bench/profiles.py 100000 > cohort.jsonl
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator

CYTO = ("del(17p)", "t(4;14)", "t(14;16)", "t(11;14)", "gain(1q)", "amp(1q)", "del(1p)")

# Realistic regimens by era; names as clinicians write them (generic, brand, abbreviation).
REGIMENS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("VRd", ("bortezomib", "lenalidomide", "dexamethasone")),
    ("KRd", ("carfilzomib", "Revlimid", "dex")),
    ("DRd", ("dara", "lenalidomide", "dexamethasone")),
    ("D-VRd", ("daratumumab", "velcade", "len", "dexamethasone")),
    ("DKd", ("daratumumab", "carfilzomib", "dexamethasone")),
    ("DPd", ("Darzalex", "pomalidomide", "dexamethasone")),
    ("IsaPd", ("isatuximab", "pomalidomide", "dexamethasone")),
    ("IsaKd", ("isatuximab", "kyprolis", "dexamethasone")),
    ("EPd", ("elotuzumab", "pomalidomide", "dexamethasone")),
    ("Pd", ("pomalidomide", "dexamethasone")),
    ("Kd", ("carfilzomib", "dexamethasone")),
    ("IRd", ("ixazomib", "lenalidomide", "dexamethasone")),
    ("len maintenance", ("lenalidomide",)),
    ("ide-cel", ("ide-cel",)),
    ("cilta-cel", ("cilta-cel",)),
    ("teclistamab", ("teclistamab",)),
    ("elranatamab", ("elranatamab",)),
    ("talquetamab", ("talquetamab",)),
    ("belamaf", ("belantamab mafodotin",)),
    ("Sd", ("selinexor", "dexamethasone")),
    ("Vd + venetoclax", ("bortezomib", "venetoclax", "dexamethasone")),
    ("DCEP", ("dexamethasone", "cyclophosphamide", "etoposide", "cisplatin")),
)


def _maybe(rng: random.Random, p_known: float, value):
    return value if rng.random() < p_known else None


def profile(rng: random.Random, i: int) -> dict:
    n_lines = rng.choice((1, 1, 2, 2, 3, 3, 4, 5, 6, 8))
    lines = []
    for n in range(n_lines):
        label, agents = rng.choice(REGIMENS)
        agents = list(agents)
        refractory = [a for a in agents if a not in ("dexamethasone", "dex") and rng.random() < 0.45]
        lines.append(
            {
                "regimen": label,
                "agents": agents,
                "refractory_to": refractory,
                "autologous_transplant": n == 0 and rng.random() < 0.5,
            }
        )
    p: dict = {
        "patient_id": f"SYN-{i:07d}",
        "age": rng.randint(35, 90),
        "ecog": rng.choice((0, 0, 1, 1, 1, 2, 2, 3, 4)),
        "frailty": _maybe(rng, 0.7, rng.choice(("fit", "intermediate", "frail"))),
        "creatinine_clearance_ml_min": _maybe(rng, 0.8, round(rng.uniform(5, 130), 1)),
        "dialysis": _maybe(rng, 0.7, rng.random() < 0.07),
        "extramedullary_disease": _maybe(rng, 0.7, rng.random() < 0.15),
        "cytogenetics": _maybe(rng, 0.7, sorted(rng.sample(CYTO, rng.choice((0, 0, 1, 1, 2, 3))), key=CYTO.index)),
        "rapidly_progressive": _maybe(rng, 0.7, rng.random() < 0.2),
        "car_t_center_access": _maybe(rng, 0.7, rng.random() < 0.7),
        "organ_function_adequate": _maybe(rng, 0.7, rng.random() < 0.8),
        "active_serious_infection": _maybe(rng, 0.7, rng.random() < 0.05),
        "prior_allogeneic_transplant": _maybe(rng, 0.7, rng.random() < 0.03),
        "prior_lines": lines,
    }
    if rng.random() < 0.6:
        p["labs"] = {
            "soluble_bcma_ng_ml": _maybe(rng, 0.5, round(rng.uniform(10, 1500), 1)),
            "ferritin_ng_ml": _maybe(rng, 0.7, round(rng.uniform(20, 3000), 1)),
            "crp_mg_l": _maybe(rng, 0.7, round(rng.uniform(0, 150), 1)),
        }
    # absent and null both mean unknown: use both spellings
    return {k: v for k, v in p.items() if v is not None or rng.random() < 0.5}


def generate(n: int, seed: int = 6) -> Iterator[dict]:
    rng = random.Random(seed)
    for i in range(n):
        yield profile(rng, i)


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 1000
    seed = int(argv[1]) if len(argv) > 1 else 6
    out = sys.stdout
    for p in generate(n, seed):
        out.write(json.dumps(p, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
