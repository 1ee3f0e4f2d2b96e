"""The case form: its fields generated from the profile model, and the form <-> profile conversion.

Every input's name is the profile path it fills (``age``, ``labs.crp_mg_l``,
``prior_lines[1].regimen``, ``prior_lines[1].agents[0]``), so that a validation problem
(which names a profile path, exactly as the CLI prints it) lands beside its field. The
fields, their kinds (number, yes/no, choice, date, text) and their choices come from
`cds.model.profile.PatientProfile` / `PriorLine` / `Labs`; only the label (the name in the
README's profile table), the group a clinician looks for it in and a hint are written here.

Unknown is a choice of its own: an empty number, "Unknown" in every yes/no and choice, a
cytogenetics panel "not tested". The conversion never turns a blank into an answer: a blank
is left out of the profile, and the model reads an absent optional fact as unknown.
Values that are not numbers stay strings, so that the model's own message names the problem
(``age: expected an integer, got str "sixty"``), the same as for a profile file.
"""

from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from cds.api import Labs, PatientProfile, PriorLine

#: the label of every field: the "name" column of the README's profile tables (a test checks they agree)
LABELS: dict[str, str] = {
    "patient_id": "Patient ID",
    "age": "Age",
    "ecog": "ECOG performance status",
    "sex": "Sex",
    "evaluation_date": "Evaluation date",
    "frailty": "Frailty",
    "creatinine_clearance_ml_min": "Creatinine clearance (mL/min)",
    "dialysis": "Dialysis",
    "extramedullary_disease": "Extramedullary disease",
    "plasma_cell_leukemia": "Plasma cell leukemia",
    "cns_involvement": "CNS involvement",
    "r_iss": "R-ISS stage",
    "cytogenetics": "Cytogenetics",
    "cytogenetics_tested": "Probes tested (partial panel)",
    "rapidly_progressive": "Rapidly progressive disease",
    "car_t_center_access": "Access to a CAR-T centre",
    "organ_function_adequate": "Organ function adequate for CAR-T",
    "active_serious_infection": "Active serious infection",
    "prior_serious_infections": "Serious infections on earlier treatment",
    "prior_allogeneic_transplant": "Prior allogeneic transplant",
    "labs": "Labs",
    "prior_lines": "Prior lines",
    "notes": "Notes",
    # labs
    "soluble_bcma_ng_ml": "Soluble BCMA (ng/mL)",
    "ferritin_ng_ml": "Ferritin (ng/mL)",
    "crp_mg_l": "CRP (mg/L)",
    "neutrophils_10e9_l": "Neutrophils (10^9/L)",
    "platelets_10e9_l": "Platelets (10^9/L)",
    "igg_g_l": "IgG (g/L)",
    "ldh_u_l": "LDH (U/L)",
    # a prior line
    "regimen": "Regimen",
    "agents": "Agent",
    "refractory_to": "Refractory",
    "intolerant_to": "Intolerant",
    "autologous_transplant": "Autologous transplant (ASCT)",
    "transplant_date": "Transplant date",
    "start_date": "Start date",
    "infusion_date": "CAR-T infusion date",
    "end_date": "End date",
    "progression_date": "Progression date",
    "best_response": "Best response",
    "stop_reason": "Stop reason",
}

#: the groups of the form, in a clinician's order (prior lines come last, as their own section)
GROUPS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("patient", "Patient", ("patient_id", "age", "sex", "evaluation_date")),
    (
        "fitness",
        "Fitness",
        (
            "ecog",
            "frailty",
            "organ_function_adequate",
            "active_serious_infection",
            "prior_serious_infections",
            "prior_allogeneic_transplant",
        ),
    ),
    ("kidney", "Kidney", ("creatinine_clearance_ml_min", "dialysis")),
    ("disease", "Disease", ("r_iss", "extramedullary_disease", "plasma_cell_leukemia", "cns_involvement", "rapidly_progressive")),
    ("cytogenetics", "Cytogenetics", ("cytogenetics", "cytogenetics_tested")),
    ("labs", "Labs", tuple(f"labs.{k}" for k in Labs.model_fields)),
    ("cart", "CAR-T logistics", ("car_t_center_access",)),
)
LINE_SCALARS: tuple[str, ...] = (
    "regimen",
    "start_date",
    "infusion_date",
    "end_date",
    "progression_date",
    "best_response",
    "stop_reason",
    "autologous_transplant",
    "transplant_date",
)
HINTS: dict[str, str] = {
    "evaluation_date": "YYYY-MM-DD or YYYY-MM; blank: the evaluation time (today)",
    "start_date": "YYYY-MM-DD or YYYY-MM",
    "infusion_date": "a CAR-T line only; blank: the start date is the infusion",
    "transplant_date": "with an autologous transplant; blank: early relapse is counted from the start date",
    "end_date": "YYYY-MM-DD or YYYY-MM (last dose)",
    "progression_date": "YYYY-MM-DD or YYYY-MM",
    "regimen": "a known label (KRd, D-VRd, ...) stands for its agents; leave the agents blank to use them",
    "creatinine_clearance_ml_min": "blank: unknown",
    "car_t_center_access": "a certified CAR-T centre this patient can reach",
    "notes": "free text, printed in the report, never read by a rule",
}
BOOL_CHOICES = (("", "Unknown"), ("yes", "Yes"), ("no", "No"))
REFRACTORY_CHOICES = (("", "Unknown"), ("yes", "Refractory"), ("no", "Not refractory"))
DEFAULT_AGENT_SLOTS = 3
MAX_LINES = 40
MAX_AGENTS = 30


@dataclass(frozen=True)
class Spec:
    """One input of the form, as the model defines its field."""

    path: str  # profile path (``labs.crp_mg_l``) or line field name (``regimen``)
    name: str  # the model's field name
    kind: str  # int | float | bool | choice | date | text | textarea | cytogenetics
    required: bool
    choices: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return LABELS[self.name]

    @property
    def hint(self) -> str | None:
        return HINTS.get(self.name)


def _unwrap(annotation: Any) -> Any:
    """The annotation without `| None` and `Annotated[...]`."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
        return annotation
    if get_origin(annotation) is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    return annotation


def _spec(model: type[BaseModel], name: str, path: str) -> Spec:
    info = model.model_fields[name]
    t = _unwrap(info.annotation)
    required = info.is_required()
    choices: tuple[tuple[str, str], ...]
    if name in ("notes",):
        kind, choices = "textarea", ()
    elif name in ("cytogenetics", "cytogenetics_tested"):
        kind, choices = "cytogenetics", ()
    elif name.endswith("_date"):
        kind, choices = "date", ()
    elif t is bool:
        kind, choices = "bool", BOOL_CHOICES
    elif get_origin(t) is Literal:
        kind = "choice"
        choices = (("", "Unknown"), *((str(v), str(v)) for v in get_args(t)))
    elif t is int:
        bounds = [m for m in info.metadata if hasattr(m, "ge") or hasattr(m, "le")]
        ge = next((m.ge for m in bounds if getattr(m, "ge", None) is not None), None)
        le = next((m.le for m in bounds if getattr(m, "le", None) is not None), None)
        if ge is not None and le is not None and le - ge <= 4:  # a small scale (ECOG, R-ISS): a choice
            kind = "choice"
            first = ("", "Choose" if required else "Unknown")
            choices = (first, *((str(v), str(v)) for v in range(ge, le + 1)))
        else:
            kind, choices = "int", ()
    elif t is float:
        kind, choices = "float", ()
    else:
        kind, choices = "text", ()
    return Spec(path, name, kind, required, choices)


def top_specs() -> dict[str, Spec]:
    out = {}
    for name in PatientProfile.model_fields:
        if name in ("labs", "prior_lines"):
            continue
        out[name] = _spec(PatientProfile, name, name)
    for name in Labs.model_fields:
        out[f"labs.{name}"] = _spec(Labs, name, f"labs.{name}")
    return out


def line_specs() -> dict[str, Spec]:
    return {name: _spec(PriorLine, name, name) for name in LINE_SCALARS}


TOP = top_specs()
LINE = line_specs()
#: the profile fields the form shows: every field of the model (a test checks none is missing)
COVERED: frozenset[str] = frozenset(
    {p for _, _, paths in GROUPS for p in paths}
    | {"notes", "labs", "prior_lines"}
    | {f"prior_lines[].{n}" for n in (*LINE_SCALARS, "agents", "refractory_to", "intolerant_to")}
)


# --------------------------------------------------------------------------- the form's state


@dataclass
class Agent:
    name: str = ""
    refractory: str = ""  # "" unknown | yes | no
    intolerant: bool = False
    from_label: bool = False
    drug_class: str = ""  # a trial agent the vocabulary does not name: its class (then name is its name or code)
    target: str = ""  # and, optionally, its target

    def entry(self) -> str | dict[str, str]:
        """The agent as the profile writes it: a name, or an investigational agent object."""
        if not self.drug_class.strip():
            return self.name.strip()
        out = {"investigational": self.name.strip(), "class": self.drug_class.strip()}
        if self.target.strip():
            out["target"] = self.target.strip()
        return out


@dataclass
class Line:
    values: dict[str, str] = field(default_factory=dict)  # regimen, dates, best_response, ...
    agents: list[Agent] = field(default_factory=list)
    expanded: list[str] = field(default_factory=list)  # the agents a regimen label stood for (after submit)

    def blank(self) -> bool:
        return not any(v.strip() for v in self.values.values()) and not any(a.name.strip() for a in self.agents)


@dataclass
class Form:
    values: dict[str, str] = field(default_factory=dict)  # top-level path -> text as entered
    cytogenetics: list[str] = field(default_factory=list)  # ticked abnormalities
    cytogenetics_tested: list[str] = field(default_factory=list)  # ticked probes of a partial panel (none: the whole list)
    lines: list[Line] = field(default_factory=list)
    board_date: str = ""
    site: str = ""
    case_id: str = ""
    imported: set[str] = field(default_factory=set)  # input names whose value came from an upload
    import_note: str | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)  # input id -> problems
    error_labels: dict[str, str] = field(default_factory=dict)  # input id -> where it is, in words ("Line 2, agent 1: Agent")
    general_errors: list[tuple[str, str]] = field(default_factory=list)  # (path, problem) with no input of its own

    @classmethod
    def empty(cls) -> Form:
        return cls(lines=[Line(agents=[Agent() for _ in range(DEFAULT_AGENT_SLOTS)])])

    @property
    def problem_count(self) -> int:
        return sum(len(v) for v in self.errors.values()) + len(self.general_errors)


def input_id(name: str) -> str:
    """An HTML id for an input name (``prior_lines[1].agents[0]`` -> ``f-prior_lines-1-agents-0``)."""
    return "f-" + re.sub(r"[^A-Za-z0-9_]+", "-", name).strip("-")


def line_name(i: int, key: str) -> str:
    return f"prior_lines[{i}].{key}"


def agent_name(i: int, j: int, key: str | None = None) -> str:
    base = f"prior_lines[{i}].agents[{j}]"
    return f"{base}.{key}" if key else base


_LINE_KEY = re.compile(r"^prior_lines\[(\d+)\]\.(\w+)$")
_AGENT_KEY = re.compile(r"^prior_lines\[(\d+)\]\.agents\[(\d+)\](?:\.(\w+))?$")


def from_submission(items: list[tuple[str, str]]) -> tuple[Form, str]:
    """The form as submitted (FormData.multi_items()) and the action asked ("evaluate", "add_line", ...)."""
    form = Form()
    action = "evaluate"
    lines: dict[int, Line] = {}
    agents: dict[tuple[int, int], Agent] = {}
    n_lines = 0
    for key, raw in items:
        value = raw if isinstance(raw, str) else ""
        if key == "action":
            action = value
        elif key == "board_date":
            form.board_date = value.strip()
        elif key == "site":
            form.site = value.strip()
        elif key == "case_id":
            form.case_id = value.strip()
        elif key == "imported":
            form.imported.update(v for v in value.split(",") if v)
        elif key == "cytogenetics[]":
            form.cytogenetics.append(value)
        elif key == "cytogenetics_tested[]":
            form.cytogenetics_tested.append(value)
        elif key == "lines":
            n_lines = _small_int(value, MAX_LINES)
        elif m := _AGENT_KEY.match(key):
            i, j, sub = int(m.group(1)), int(m.group(2)), m.group(3)
            if i >= MAX_LINES or j >= MAX_AGENTS:
                continue
            a = agents.setdefault((i, j), Agent())
            if sub is None:
                a.name = value
            elif sub == "refractory":
                a.refractory = value if value in ("yes", "no") else ""
            elif sub == "intolerant":
                a.intolerant = value == "yes"
            elif sub == "from_label":
                a.from_label = value == "yes"
            elif sub == "class":
                a.drug_class = value
            elif sub == "target":
                a.target = value
        elif m := _LINE_KEY.match(key):
            i = int(m.group(1))
            if i < MAX_LINES and m.group(2) in LINE:
                lines.setdefault(i, Line()).values[m.group(2)] = value
        elif key in TOP or key == "cytogenetics_status":
            form.values[key] = value
    n_lines = max([n_lines, *(i + 1 for i in lines), *(i + 1 for i, _ in agents)])
    for i in range(n_lines):
        line = lines.get(i, Line())
        slots = max([j + 1 for (li, j) in agents if li == i], default=0)
        line.agents = [agents.get((i, j), Agent()) for j in range(slots)]
        form.lines.append(line)
    if not form.lines:
        form.lines.append(Line(agents=[Agent() for _ in range(DEFAULT_AGENT_SLOTS)]))
    return form, action


def _small_int(text: str, cap: int) -> int:
    return min(int(text), cap) if text.strip().isdigit() and len(text.strip()) < 4 else 0


def apply_action(form: Form, action: str) -> bool:
    """Add or remove a line or an agent row; True when the action was one of those (re-render the form)."""
    if action == "add_line" and len(form.lines) < MAX_LINES:
        form.lines.append(Line(agents=[Agent() for _ in range(DEFAULT_AGENT_SLOTS)]))
        return True
    if m := re.fullmatch(r"remove_line:(\d+)", action):
        i = int(m.group(1))
        if 0 <= i < len(form.lines):
            del form.lines[i]
        if not form.lines:
            form.lines.append(Line(agents=[Agent() for _ in range(DEFAULT_AGENT_SLOTS)]))
        return True
    if m := re.fullmatch(r"add_agent:(\d+)", action):
        i = int(m.group(1))
        if 0 <= i < len(form.lines) and len(form.lines[i].agents) < MAX_AGENTS:
            form.lines[i].agents.append(Agent())
        return True
    return action in ("add_line",)


# --------------------------------------------------------------------------- form -> profile


_INT = re.compile(r"^[+-]?\d{1,9}$")
_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _number(spec_kind: str, text: str) -> Any:
    """A number when the text is one; else the text itself (the model names the problem)."""
    t = text.strip()
    if spec_kind == "int" or spec_kind == "choice":
        return int(t) if _INT.match(t) else t
    if _INT.match(t):
        return int(t) if spec_kind == "int" else float(int(t))
    if _FLOAT.match(t):
        value = float(t)
        return value if math.isfinite(value) else t
    return t


def _scalar(spec: Spec, text: str) -> tuple[bool, Any]:
    """(present, value) for one input: blank is absent (unknown), never a value."""
    if spec.kind == "textarea":
        return (True, text) if text.strip() else (False, None)
    t = text.strip()
    if not t:
        return False, None
    if spec.kind == "bool":
        return True, {"yes": True, "no": False}.get(t, t)
    if spec.kind == "int" or (spec.kind == "choice" and all(v.isdigit() for v, _ in spec.choices if v)):
        return True, _number("int", t)
    if spec.kind == "float":
        return True, _number("float", t)
    return True, t


@dataclass
class Converted:
    profile: dict[str, Any]
    where: dict[str, str]  # profile path -> input name it came from (for problems of list items)
    problems: list[tuple[str, str]]  # problems of the form itself (input name, problem)


def to_profile(form: Form) -> Converted:
    """The profile dict the form stands for (what the CLI would read from a file), and where each part came from."""
    data: dict[str, Any] = {}
    where: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    labs: dict[str, Any] = {}
    for path, spec in TOP.items():
        if spec.kind == "cytogenetics":
            continue
        present, value = _scalar(spec, form.values.get(path, ""))
        if not present:
            continue
        if path.startswith("labs."):
            labs[path.split(".", 1)[1]] = value
        else:
            data[path] = value
    if labs:
        data["labs"] = labs
    status = form.values.get("cytogenetics_status", "")
    if form.cytogenetics or status == "tested":
        data["cytogenetics"] = list(form.cytogenetics)
        for j in range(len(form.cytogenetics)):
            where[f"cytogenetics[{j}]"] = "cytogenetics"
    if form.cytogenetics_tested:  # a partial panel (without a result the validation says what is missing)
        data["cytogenetics_tested"] = list(form.cytogenetics_tested)
        where["cytogenetics_tested"] = "cytogenetics"
        for j in range(len(form.cytogenetics_tested)):
            where[f"cytogenetics_tested[{j}]"] = "cytogenetics"
    lines: list[dict[str, Any]] = []
    for i, line in enumerate(form.lines):
        if line.blank():
            continue
        k = len(lines)
        out: dict[str, Any] = {}
        for key, spec in LINE.items():
            present, value = _scalar(spec, line.values.get(key, ""))
            if present:
                out[key] = value
                where[f"prior_lines[{k}].{key}"] = line_name(i, key)
        named = [(j, a) for j, a in enumerate(line.agents) if a.name.strip() and not a.from_label]
        if named:
            out["agents"] = [a.entry() for _, a in named]
            for n, (j, _) in enumerate(named):
                where[f"prior_lines[{k}].agents[{n}]"] = agent_name(i, j)
                where[f"prior_lines[{k}].agents[{n}].investigational"] = agent_name(i, j)
                where[f"prior_lines[{k}].agents[{n}].class"] = agent_name(i, j, "class")
                where[f"prior_lines[{k}].agents[{n}].target"] = agent_name(i, j, "target")
        recorded = [(j, a) for j, a in named if a.refractory]
        if recorded and len(recorded) < len(named):
            for j, a in named:
                if not a.refractory:
                    problems.append(
                        (
                            agent_name(i, j, "refractory"),
                            f"refractoriness is recorded for other agents of line {i + 1} but not for {a.name.strip()!r}: "
                            "choose Refractory or Not refractory for every agent of the line, or leave all of them Unknown "
                            "(the profile records refractoriness per line)",
                        )
                    )
        elif recorded:
            refractory = [(j, a) for j, a in named if a.refractory == "yes"]
            out["refractory_to"] = [a.name.strip() for _, a in refractory]
            for n, (j, _) in enumerate(refractory):
                where[f"prior_lines[{k}].refractory_to[{n}]"] = agent_name(i, j, "refractory")
        intolerant = [(j, a) for j, a in named if a.intolerant]
        if intolerant:
            out["intolerant_to"] = [a.name.strip() for _, a in intolerant]
            for n, (j, _) in enumerate(intolerant):
                where[f"prior_lines[{k}].intolerant_to[{n}]"] = agent_name(i, j, "intolerant")
        where[f"prior_lines[{k}]"] = f"prior_lines[{i}]"
        where[f"prior_lines[{k}].agents"] = f"prior_lines[{i}].agents"
        where[f"prior_lines[{k}].refractory_to"] = f"prior_lines[{i}].agents"
        lines.append(out)
    data["prior_lines"] = lines
    return Converted(data, where, problems)


def place_problems(form: Form, converted: Converted, problems: list[tuple[str, str]]) -> None:
    """Put each (profile path, problem) beside the input it concerns (or its nearest group)."""
    known = _input_names(form)
    placed = list(converted.problems)
    for path, problem in problems:
        target = _target(path, converted.where, known)
        if target is None:
            form.general_errors.append((path, problem))
        else:
            placed.append((target, problem))
    for name, problem in sorted(placed, key=lambda p: _position(p[0])):  # in the order of the form
        form.errors.setdefault(input_id(name), []).append(problem)
        form.error_labels[input_id(name)] = describe(name)


_TOP_ORDER = ["board_date", *(p for _, _, paths in GROUPS for p in paths)]
_LINE_ORDER = ["regimen", "agents", *(k for k in LINE if k != "regimen")]
_AGENT_ORDER = [None, "refractory", "class", "target", "intolerant"]


def _position(name: str) -> tuple[int, ...]:
    if m := _AGENT_KEY.match(name):
        sub = m.group(3)
        return (1000, int(m.group(1)), 1, int(m.group(2)), _AGENT_ORDER.index(sub) if sub in _AGENT_ORDER else 9)
    if m := _LINE_KEY.match(name):
        key = m.group(2)
        return (
            1000,
            int(m.group(1)),
            0 if key in ("regimen", "agents") else 2,
            _LINE_ORDER.index(key) if key in _LINE_ORDER else 99,
        )
    if m := re.fullmatch(r"prior_lines\[(\d+)\]", name):
        return (1000, int(m.group(1)), -1)
    if name in _TOP_ORDER:
        return (_TOP_ORDER.index(name),)
    if name == "notes":
        return (2000,)
    return (999,)  # prior_lines, labs, cytogenetics as a whole


_AGENT_WORDS = {
    None: "Agent",
    "refractory": "Refractory",
    "intolerant": "Intolerant",
    "class": "Trial agent class",
    "target": "Trial agent target",
}


def describe(name: str) -> str:
    """Where an input is, in the words of the form ("Age", "Line 2: Start date", "Line 2, agent 1: Refractory")."""
    if m := _AGENT_KEY.match(name):
        return f"Line {int(m.group(1)) + 1}, agent {int(m.group(2)) + 1}: {_AGENT_WORDS.get(m.group(3), m.group(3))}"
    if m := _LINE_KEY.match(name):
        return f"Line {int(m.group(1)) + 1}: " + (LABELS.get(m.group(2), m.group(2)) if m.group(2) != "agents" else "agents")
    if m := re.fullmatch(r"prior_lines\[(\d+)\]", name):
        return f"Line {int(m.group(1)) + 1}"
    if name == "board_date":
        return "Tumor-board date"
    return LABELS.get(name.removeprefix("labs."), name)


def _target(path: str, where: dict[str, str], known: set[str]) -> str | None:
    p = path
    while p:
        if p in where:
            return where[p]
        if p in known:
            return p
        cut = max(p.rfind("."), p.rfind("["))
        if cut <= 0:
            break
        p = p[:cut]
    return None


def _input_names(form: Form) -> set[str]:
    names = set(TOP) | {"cytogenetics", "prior_lines", "labs"}
    for i in range(len(form.lines)):
        names.add(f"prior_lines[{i}]")
        names.add(f"prior_lines[{i}].agents")
        names.update(line_name(i, k) for k in LINE)
    return names


# --------------------------------------------------------------------------- profile -> form (upload, edit)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)


def from_profile(data: dict[str, Any], *, imported: bool = False) -> Form:
    """A form filled from a profile dict (an uploaded profile, a FHIR import, a stored case to edit).

    Values the form cannot hold (an investigational agent object) are kept as text of their name."""
    form = Form()
    for path, spec in TOP.items():
        if spec.kind == "cytogenetics":
            continue
        if path.startswith("labs."):
            labs = data.get("labs")
            value = labs.get(path.split(".", 1)[1]) if isinstance(labs, dict) else None
        else:
            value = data.get(path)
        if value is not None:
            form.values[path] = _text(value)
            if imported:
                form.imported.add(path)
    cyto = data.get("cytogenetics")
    if isinstance(cyto, list):
        form.cytogenetics = [str(c) for c in cyto]
        form.values["cytogenetics_status"] = "tested"
        if imported:
            form.imported.add("cytogenetics")
    tested = data.get("cytogenetics_tested")
    if isinstance(tested, list):
        form.cytogenetics_tested = [str(c) for c in tested]
    for i, line in enumerate(data.get("prior_lines") or []):
        if not isinstance(line, dict):
            continue
        row = Line()
        for key in LINE:
            if line.get(key) is not None:
                row.values[key] = _text(line[key])
                if imported:
                    form.imported.add(line_name(i, key))
        entries = [a for a in line.get("agents") or [] if isinstance(a, (str, dict))]
        refractory = line.get("refractory_to")
        intolerant = {str(x).lower() for x in line.get("intolerant_to") or []}
        for j, entry in enumerate(entries):
            name = entry if isinstance(entry, str) else str(entry.get("investigational", ""))
            a = Agent(name=name, intolerant=name.lower() in intolerant)
            if isinstance(entry, dict):
                a.drug_class, a.target = str(entry.get("class") or ""), str(entry.get("target") or "")
            if isinstance(refractory, list):
                a.refractory = "yes" if name.lower() in {str(x).lower() for x in refractory} else "no"
            row.agents.append(a)
            if imported:
                form.imported.update({agent_name(i, j), agent_name(i, j, "refractory")})
        while len(row.agents) < DEFAULT_AGENT_SLOTS:
            row.agents.append(Agent())
        form.lines.append(row)
    if not form.lines:
        form.lines.append(Line(agents=[Agent() for _ in range(DEFAULT_AGENT_SLOTS)]))
    return form
